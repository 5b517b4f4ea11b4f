from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import torch

import npkit
import npkit.plot.figures
from npkit.baselines.gp import gp_posterior
from npkit.cli import main
from npkit.data import make_sampler
from npkit.data.gp import TrueGP
from npkit.models import build_model
from npkit.plot.figures import (
    ORACLE_CHUNK,
    RAW_ALPHA,
    _oracle_marginals,
    default_smoothing,
    ema,
    oracle_grid_size,
    plot_predictions,
    plot_prior_samples,
    plot_training_curves,
    predictions_figure,
    prior_figure,
    read_metrics,
    training_curves_figure,
)

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


# ------------------------------------------------------------------ titles, labels, oracle grid, smoothing


def visible_axes(fig):
    return [ax for ax in fig.axes if ax.get_visible()]


def one(value: float) -> torch.Tensor:
    return torch.tensor([value], dtype=torch.float64)


def gp(kernel: str, length: float, period: float | None = None) -> TrueGP:
    """A one-task TrueGP."""
    return TrueGP(kernel, one(1.0), one(length), None if period is None else one(period), 0.02)


@pytest.fixture(scope="module")
def periodic():
    """A batch of periodic GP tasks and the GP that generated it."""
    return make_sampler("gp1d", kernel="periodic").sample_with_truth(2, torch.Generator().manual_seed(0))


def test_predictions_figure_has_the_given_title_legend_label_and_axis_labels(model, periodic):
    batch, truth = periodic
    title = "anp after 1,234 training steps on gp1d/rbf: predictions on periodic GP tasks"
    fig = predictions_figure(model, batch, num_tasks=2, num_samples=3, grid_size=40, gp=truth, title=title, label="my")
    assert fig.get_suptitle() == title
    assert "my mean ± 2 std" in [t.get_text() for t in fig.legends[0].get_texts()]
    for ax in visible_axes(fig):
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("x", "y")


def test_predictions_figure_title_defaults_to_the_model_name(model, batch):
    fig = predictions_figure(model, batch, num_tasks=1, num_samples=2, grid_size=20)
    assert model.name in fig.get_suptitle()


def test_oracle_grid_is_denser_for_short_length_scales_and_periods():
    x_range = (-2.0, 2.0)
    smooth = oracle_grid_size(gp("rbf", 2.0), x_range)
    rough = oracle_grid_size(gp("rbf", 0.1), x_range)
    periodic = oracle_grid_size(gp("periodic", 0.6, period=0.3), x_range)
    assert smooth == 200  # the minimum
    assert rough == 8 * 4 / 0.1 + 1  # ORACLE_POINTS_PER_FEATURE per length scale
    assert periodic > rough  # a period of 0.3 varies over 0.3 * 0.6 / (2 pi) = 0.029
    assert oracle_grid_size(gp("periodic", 0.1, period=0.1), x_range) == npkit.plot.figures.MAX_ORACLE_GRID


def test_the_oracle_is_drawn_on_its_dense_grid_thinner_than_the_model(model, periodic):
    batch, truth = periodic
    fig = predictions_figure(model, batch, num_tasks=2, num_samples=2, grid_size=50, x_range=(-2, 2), gp=truth)
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    oracle, model_mean = lines["GP oracle"], lines[f"{model.name} mean ± 2 std"]
    assert len(oracle.get_xdata()) == oracle_grid_size(truth, (-2, 2), minimum=50) > len(model_mean.get_xdata())
    assert oracle.get_linewidth() < model_mean.get_linewidth()
    assert oracle.get_zorder() < model_mean.get_zorder()  # drawn under the model


def test_oracle_marginals_in_chunks_equal_the_full_posterior(periodic):
    batch, truth = periodic
    grid = torch.linspace(-2, 2, 2 * ORACLE_CHUNK + 7, dtype=torch.float64)
    mean, std = _oracle_marginals(truth, batch.xc, batch.yc, grid)
    full = gp_posterior(truth, batch.xc, batch.yc, grid[None, :, None].expand(batch.batch_size, -1, -1))
    torch.testing.assert_close(mean, full.mean.float())
    torch.testing.assert_close(std, full.variance.sqrt().float())


def test_prior_figure_has_the_given_title_and_axis_labels(model):
    fig = prior_figure(model, num_samples=3, grid_size=20, title="np prior, untrained")
    assert fig.get_suptitle() == "np prior, untrained"
    (ax,) = visible_axes(fig)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("x", "y")
    assert len(ax.get_lines()) == (3 if model.is_latent else 1)  # function samples, or the mean


def test_ema_by_hand():
    assert ema([1.0, 3.0, 5.0], 0.5) == [1.0, 2.0, 3.5]
    assert ema([2.0, 4.0], 0.0) == [2.0, 4.0]
    with pytest.raises(ValueError, match="smoothing"):
        ema([1.0], 1.0)


def test_training_curves_are_smoothed_over_faint_raw_values(tmp_path):
    losses = [float((-1) ** i + 10 - i / 5) for i in range(30)]
    rates = [1.0 - i / 30 for i in range(30)]  # a schedule: monotone, not noise
    rows = [f"{10 * i},{loss},,{lr}" for i, (loss, lr) in enumerate(zip(losses, rates))]
    rows += ["100,,0.5,", "200,,0.7,", "290,,0.8,"]
    csv_path = write_csv(tmp_path / "metrics.csv", "step,train/loss,eval/tar_ll,lr\n" + "\n".join(rows) + "\n")
    fig = training_curves_figure(csv_path, title="np training curves: 290 steps on gp1d/rbf", smoothing=0.8)
    assert fig.get_suptitle() == "np training curves: 290 steps on gp1d/rbf"
    loss_ax, eval_ax, lr_ax = visible_axes(fig)
    raw, smooth = loss_ax.get_lines()
    assert list(raw.get_ydata()) == losses and raw.get_alpha() == RAW_ALPHA < 0.5
    expected = [losses[0]]
    for loss in losses[1:]:
        expected.append(0.8 * expected[-1] + 0.2 * loss)
    assert list(smooth.get_ydata()) == pytest.approx(expected)
    assert smooth.get_alpha() is None and list(smooth.get_xdata()) == [10 * i for i in range(30)]
    (evals,) = eval_ax.get_lines()  # 3 evaluations: too few to smooth
    assert list(evals.get_ydata()) == [0.5, 0.7, 0.8]
    (lr,) = lr_ax.get_lines()  # a schedule is drawn as it is
    assert list(lr.get_ydata()) == rates
    assert [(ax.get_xlabel(), ax.get_ylabel()) for ax in (loss_ax, eval_ax, lr_ax)] == [
        ("step", "train/loss"),
        ("step", "eval/tar_ll"),
        ("step", "lr"),
    ]


def test_default_smoothing_averages_the_same_share_of_short_and_long_runs(tmp_path):
    assert default_smoothing(400) == pytest.approx(0.95)  # a window of 20 points = 5%
    assert default_smoothing(40) == 0.6 and default_smoothing(10**6) == 0.99  # the bounds
    losses = [float(i % 3) for i in range(400)]
    rows = "\n".join(f"{i},{loss}" for i, loss in enumerate(losses))
    fig = training_curves_figure(write_csv(tmp_path / "metrics.csv", "step,loss\n" + rows + "\n"))
    assert list(fig.axes[0].get_lines()[1].get_ydata()) == pytest.approx(ema(losses, 0.95))


def test_training_curves_title_defaults_to_the_last_step(tmp_path):
    csv_path = write_csv(tmp_path / "metrics.csv", "step,loss\n0,1.0\n1500,0.5\n")
    assert "1,500 steps" in training_curves_figure(csv_path).get_suptitle()


def test_cli_plot_titles_name_the_model_kernel_and_steps(tmp_path, monkeypatch):
    run = tmp_path / "run"
    train = ["train.steps=3", "train.progress=false", "train.eval_every=null", "model.name=anp"]
    train += ["model.hidden_dim=8", "model.r_dim=8", "model.z_dim=4"]
    assert main(["train", "quickstart", "--run-dir", str(run)] + [f"--set={s}" for s in train]) == 0
    figures, save = {}, npkit.plot.figures._save

    def keep(fig, path):
        figures[Path(path).name] = fig
        return save(fig, path)

    monkeypatch.setattr(npkit.plot.figures, "_save", keep)
    assert main(["plot", str(run), "--set=eval.kernels=[periodic]", "--set=plot.num_tasks=1"]) == 0
    titles = {name: fig.get_suptitle() for name, fig in figures.items()}
    assert sorted(titles) == [
        "predictions-periodic.png",
        "prior-trained.png",
        "prior-untrained.png",
        "training-curves.png",
    ]
    assert all("anp" in title for title in titles.values())
    assert "periodic" in titles["predictions-periodic.png"] and "3 training steps" in titles["predictions-periodic.png"]
    assert "untrained" in titles["prior-untrained.png"] and "3 training steps" not in titles["prior-untrained.png"]
    assert "after 3 training steps" in titles["prior-trained.png"] and "untrained" not in titles["prior-trained.png"]
    assert "3 steps on gp1d/rbf" in titles["training-curves.png"]


# --- image completion figures ---------------------------------------------------------------


def _image_model(name: str, channels: int = 1):
    torch.manual_seed(0)
    latent = {"z_dim": 8} if name != "cnp" else {}
    return build_model(name, x_dim=2, y_dim=channels, hidden_dim=8, r_dim=8, **latent)


def _image_sampler(channels: int = 1, size: int = 4, **options):
    from npkit.data import ImageSampler

    images = torch.rand(3, channels, size, size, generator=torch.Generator().manual_seed(1))
    return ImageSampler(images, source="random", num_context=(1, 2), **options)


def _image_axes(fig) -> list:
    return [ax for ax in fig.axes if ax.get_images()]


@pytest.mark.parametrize("name, columns", [("cnp", 3), ("np", 3 + 2)])
def test_completion_figure_has_one_row_per_context_size_and_its_columns(name, columns):
    from npkit.plot.figures import completion_figure

    sampler = _image_sampler()
    fig = completion_figure(_image_model(name), sampler, sampler.images[0], (2, 5, 100, None), num_samples=2, title="T")
    axes = _image_axes(fig)
    assert len(axes) == 3 * columns  # 2, 5 and all pixels: 100 is clipped to the 16 of None, one row
    labels = [ax.get_ylabel().split("\n") for ax in axes if ax.get_ylabel()]
    assert [ax.get_ylabel().split("\n") for ax in axes[::columns]] == labels
    assert [label[0] for label in labels] == ["2 pixels", "5 pixels", "all 16 pixels"]
    if name == "np":  # the samples' mean pairwise distance, as npkit.evaluation.completion computes it
        draws = [ax.get_images()[0].get_array().data for ax in axes[3:5]]  # the 2 samples of the first row
        spread = float(np.sqrt(((draws[0] - draws[1]) ** 2).mean()))
        assert labels[0][1] == f"sample spread {spread:.3f}"
    else:
        assert all(len(label) == 1 for label in labels)  # no samples, no spread
    assert fig.get_suptitle() == "T"


def test_completion_figure_rows_and_titles():
    from npkit.plot.figures import completion_figure

    sampler = _image_sampler()
    fig = completion_figure(_image_model("np"), sampler, sampler.images[0], (1, 4, None), num_samples=3)
    axes = _image_axes(fig)
    assert len(axes) == 3 * (3 + 3)
    assert [ax.get_ylabel().split("\n")[0] for ax in axes[:: 3 + 3]] == ["1 pixels", "4 pixels", "all 16 pixels"]
    assert [ax.get_title() for ax in axes[:6]][3:] == ["sample 1", "sample 2", "sample 3"]
    assert "np" in fig.get_suptitle() and "random" in fig.get_suptitle()


@pytest.mark.parametrize("channels", [1, 3])
def test_completion_context_panel_shows_unobserved_pixels_in_blue(channels):
    from npkit.plot.figures import completion_figure

    sampler = _image_sampler(channels, size=3)
    image = sampler.images[0]
    fig = completion_figure(_image_model("cnp", channels), sampler, image, (4, None), seed=3)
    context = _image_axes(fig)[0].get_images()[0].get_array()  # [3, 3, 3] RGB
    assert context.shape == (3, 3, 3)
    blue = (context == torch.tensor([0.0, 0.0, 1.0]).numpy()).all(-1)
    assert blue.sum() == 9 - 4
    truth = image.expand(3, -1, -1).permute(1, 2, 0).numpy()  # grey shown as RGB grey
    assert (context[~blue] == truth[~blue]).all()
    full = _image_axes(fig)[3].get_images()[0].get_array()  # the "all pixels" row
    assert (full == truth).all()


@pytest.mark.parametrize("coords, values", [("unit", "unit"), ("centered", "centered")])
def test_completion_mean_panel_is_the_models_predictive_mean(coords, values):
    from npkit.data import pixel_grid
    from npkit.plot.figures import completion_figure
    from npkit.predictive import predict

    sampler = _image_sampler(size=4, coords=coords, values=values)
    image, model = sampler.images[0], _image_model("cnp")
    fig = completion_figure(model, sampler, image, (16,))
    shift = 0.5 if values == "centered" else 0.0
    grid = pixel_grid(4, 4, coords)[None]
    yc = image.reshape(1, 16).T[None] - shift
    with torch.no_grad():
        mean = predict(model.eval(), grid, yc, grid).mean[0, :, 0] + shift
    shown = _image_axes(fig)[1].get_images()[0].get_array()
    assert shown.shape == (4, 4)
    assert torch.allclose(torch.as_tensor(shown), mean.clamp(0, 1).reshape(4, 4), atol=1e-6)
    std = _image_axes(fig)[2].get_images()[0]
    assert std.get_clim()[0] == 0 and std.get_cmap().name == npkit.plot.figures.STD_CMAP


def test_completion_rgb_panels_are_rgb(tmp_path):
    from npkit.plot.figures import plot_completion

    sampler = _image_sampler(3, size=4)
    out = plot_completion(_image_model("np", 3), sampler, sampler.images[1], tmp_path / "c.png", (3, None), 2)
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    fig = npkit.plot.figures.completion_figure(_image_model("np", 3), sampler, sampler.images[1], (3, None), 2)
    arrays = [ax.get_images()[0].get_array() for ax in _image_axes(fig)]
    assert [a.shape for a in arrays[:5]] == [(4, 4, 3), (4, 4, 3), (4, 4), (4, 4, 3), (4, 4, 3)]
    assert all(a.min() >= 0 and a.max() <= 1 for a in arrays)


def test_completion_rejects_bad_inputs():
    from npkit.plot.figures import completion_figure

    sampler = _image_sampler()
    with pytest.raises(ValueError, match="y_dim = 3"):
        completion_figure(_image_model("cnp"), sampler, torch.rand(3, 4, 4))
    with pytest.raises(ValueError, match=r"\[C, H, W\]"):
        completion_figure(_image_model("cnp"), sampler, torch.rand(4, 4))
    with pytest.raises(ValueError, match="context sizes"):
        completion_figure(_image_model("cnp"), sampler, sampler.images[0], (-1,))


def test_completion_context_sizes():
    from npkit.plot.figures import completion_context_sizes

    assert completion_context_sizes(784) == (10, 100, 300, None)
    assert completion_context_sizes(64) == (3, 10, 32, None)


def test_npkit_plot_on_an_image_run_writes_completions(tmp_path, capsys):
    run = tmp_path / "run"
    tiny = ["--set", "train.steps=3", "--set", "train.progress=false", "--set", "model.hidden_dim=8"]
    main(["train", "digits-cnp", "--run-dir", str(run), *tiny, "--set", "model.r_dim=8"])
    main(["plot", str(run), "--set", "plot.num_tasks=2"])
    figures = sorted(p.name for p in (run / "figures").iterdir())
    assert figures == ["completion-0.png", "completion-1.png", "training-curves.png"]
    assert (run / "figures" / "completion-0.png").read_bytes()[:8] == PNG_SIGNATURE
    assert "completion-1.png" in capsys.readouterr().out


def test_npkit_plot_draws_tasks_without_a_generating_gp_over_plot_x_range(tmp_path, capsys):
    run = tmp_path / "run"
    main(["train", "sine5-critique", "--run-dir", str(run), "--set=train.steps=3", "--set=train.progress=false"])
    assert main(["plot", str(run), "--set=plot.num_samples=3"]) == 0  # the preset's x_range [-4, 4]
    figures = sorted(p.name for p in (run / "figures").iterdir())
    assert "predictions-sine5.png" in figures and "prior-trained.png" in figures
    assert main(["plot", str(run), "--set=plot.x_range=[2, 1]"]) == 2
    assert "plot.x_range must be [low, high] with low < high" in capsys.readouterr().err


def test_predictions_figure_draws_autoregressive_samples_of_a_deterministic_model(batch):
    """Each of the num_samples lines is one ar_sample draw on the figure's grid, in grid order."""
    torch.manual_seed(0)
    model = build_model("cnp", hidden_dim=16, r_dim=16)
    fig = predictions_figure(model, batch, num_tasks=1, num_samples=3, autoregressive=12, x_range=(-2, 2))
    ax = visible_axes(fig)[0]
    lines = [line for line in ax.get_lines() if len(line.get_xdata()) == 12]
    assert len(lines) == 3
    for line in lines:
        np.testing.assert_allclose(line.get_xdata(), np.linspace(-2, 2, 12), rtol=0, atol=1e-6)
    assert "autoregressive samples" in [t.get_text() for t in fig.legends[0].get_texts()]
    torch.manual_seed(0)  # as the figure draws them: a random order, then the draws in that order
    order = torch.randperm(12)
    xq = torch.linspace(-2, 2, 12, dtype=batch.xc.dtype)[order][None, :, None]
    with torch.no_grad():
        draws = npkit.ar_sample(model.eval(), batch.xc[:1], batch.yc[:1], xq, num_samples=3)[:, 0, :, 0]
    expected = draws[:, order.argsort()].numpy()  # back in grid order
    np.testing.assert_allclose(np.stack([line.get_ydata() for line in lines]), expected, rtol=1e-5, atol=1e-6)
    assert expected.std(0).mean() > 0  # draws, not the mean thrice
