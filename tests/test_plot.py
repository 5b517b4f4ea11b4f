from pathlib import Path

import matplotlib.image
import pytest
import torch

from npkit.data import make_sampler
from npkit.models import build_model
from npkit.plot import plot_predictions, plot_prior_samples, plot_training_curves, read_metrics

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def check_png(path: Path, width: int, height: int) -> None:
    """A valid PNG of width x height pixels (100 dpi, 4 x 3 inch panels)."""
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert matplotlib.image.imread(path).shape[:2] == (height, width)


@pytest.fixture(scope="module")
def batch():
    return make_sampler("gp1d").sample(3, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module", params=["cnp", "np"])
def model(request):
    torch.manual_seed(0)
    latent = {"z_dim": 16} if request.param != "cnp" else {}
    return build_model(request.param, hidden_dim=16, r_dim=16, **latent)


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_plot_predictions(model, batch, tmp_path):
    model.train()
    rng = torch.get_rng_state()
    out = plot_predictions(model, batch, tmp_path / "sub" / "pred.png", num_tasks=2, num_samples=4, grid_size=50)
    assert out == tmp_path / "sub" / "pred.png"
    check_png(out, width=800, height=300)
    assert torch.equal(torch.get_rng_state(), rng)  # the caller's RNG is untouched
    assert model.training  # the training mode is restored


def test_plot_predictions_more_tasks_than_batch_without_oracle(model, batch, tmp_path):
    out = plot_predictions(model, batch, tmp_path / "pred.png", num_tasks=5, grid_size=20, x_range=(-3, 3))
    check_png(out, width=1200, height=300)


def test_plot_prior_samples(model, tmp_path):
    out = plot_prior_samples(model, tmp_path / "prior.png", num_samples=3, grid_size=30)
    check_png(out, width=400, height=300)


def test_plots_reject_non_1d_models(batch, tmp_path):
    model = build_model("cnp", x_dim=2, hidden_dim=16, r_dim=16)
    with pytest.raises(ValueError, match="x_dim = y_dim = 1"):
        plot_predictions(model, batch, tmp_path / "pred.png")
    with pytest.raises(ValueError, match="x_dim = y_dim = 1"):
        plot_prior_samples(model, tmp_path / "prior.png")


def test_read_metrics_keeps_last_value_per_step_and_skips_empty_cells(tmp_path):
    csv_path = write_csv(
        tmp_path / "metrics.csv",
        (
            "step,train/loss,eval/tar_ll,lr,phase\n"
            "0,2.0,,0.1,train\n"
            "10,1.5,,0.1,train\n"
            "20,1.0,-0.5,0.05,eval\n"
            "10,1.25,,0.1,train\n"  # a resumed run re-logs step 10
            "20,0.75,,0.05,train\n"
            "30,,-0.25,,\n"
        ),
    )
    assert read_metrics(csv_path) == {
        "train/loss": ([0, 10, 20], [2.0, 1.25, 0.75]),
        "eval/tar_ll": ([20, 30], [-0.5, -0.25]),
        "lr": ([0, 10, 20], [0.1, 0.1, 0.05]),
    }


def test_plot_training_curves(tmp_path):
    csv_path = write_csv(
        tmp_path / "metrics.csv",
        ("step,train/loss,train/log_lik,eval/tar_ll,lr\n1,2.0,-2.0,,0.001\n2,1.0,-1.0,,0.001\n2,0.9,-0.9,0.3,0.001\n"),
    )
    out = plot_training_curves(csv_path, tmp_path / "curves.png")
    check_png(out, width=1200, height=600)  # 4 panels in rows of 3


@pytest.mark.parametrize(
    "text, message",
    [
        ("epoch,loss\n0,1.0\n", "no 'step' column"),
        ("step,loss\n", "no rows"),
        ("step,phase\n0,train\n", "no numeric metric"),
        ("step,loss\nfirst,1.0\n", "not a number"),
    ],
)
def test_plot_training_curves_rejects_bad_csv(tmp_path, text, message):
    csv_path = write_csv(tmp_path / "metrics.csv", text)
    with pytest.raises(ValueError, match=message):
        plot_training_curves(csv_path, tmp_path / "curves.png")
