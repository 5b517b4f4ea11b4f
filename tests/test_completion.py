"""Image-completion metrics: context-fraction tasks, the metrics of every method on them, sample
diversity, and ``npkit eval`` / ``npkit plot`` on an image run."""

import json

import numpy as np
import pytest
import torch

from npkit import build_model
from npkit.cli import main
from npkit.data import ImageSampler, make_sampler
from npkit.evaluation.completion import (
    context_count,
    digit_classifier,
    evaluate_fractions,
    format_fraction_table,
    fraction_tasks,
    mean_pairwise_distance,
    sample_diversity,
)
from npkit.evaluation.metrics import evaluate, evaluate_knn

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _sampler(channels: int = 1, n: int = 6, size: int = 5, **options) -> ImageSampler:
    images = torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(3))
    return ImageSampler(images, source="random", num_context=(1, 2), **options)


def _model(name: str, channels: int = 1):
    torch.manual_seed(0)
    latent = {"z_dim": 4} if name != "cnp" else {}
    return build_model(name, x_dim=2, y_dim=channels, hidden_dim=8, r_dim=8, **latent)


# --------------------------------------------------------------------------- tasks


def test_context_count_rounds_and_keeps_one_pixel():
    assert [context_count(f, 784) for f in (0.01, 0.05, 0.1, 0.2, 0.5, 1.0)] == [8, 39, 78, 157, 392, 784]
    assert context_count(0.001, 64) == 1
    with pytest.raises(ValueError, match=r"in \(0, 1\], got 0"):
        context_count(0, 64)


@pytest.mark.parametrize("coords, values", [("unit", "unit"), ("centered", "centered")])
def test_fraction_tasks_observe_nested_pixels_of_the_same_images_and_target_every_pixel(coords, values):
    sampler = _sampler(channels=3, coords=coords, values=values)
    tasks = fraction_tasks(sampler, (0.1, 0.5, 1.0), num_images=5, batch_size=2, seed=4)
    assert [len(t) for t in tasks.values()] == [3, 3, 3]  # batches of 2, 2, 1
    previous = None
    for fraction, evalset in tasks.items():
        xc, yc = torch.cat([b.xc for b in evalset]), torch.cat([b.yc for b in evalset])
        xt, yt = torch.cat([b.xt for b in evalset]), torch.cat([b.yt for b in evalset])
        assert xc.shape == (5, context_count(fraction, 25), 2) and xt.shape == (5, 25, 2)
        image, observed = sampler.to_image(xt, yt)  # every pixel, in the sampler's conventions
        assert observed.all()
        if previous is None:
            picks = [int((sampler.images - im).abs().flatten(1).sum(1).argmin()) for im in image]
            assert len(set(picks)) == 5  # drawn without replacement
        assert torch.allclose(image, sampler.images[picks])  # the same images at every fraction
        context_image, seen = sampler.to_image(xc, yc)
        assert torch.allclose(context_image * seen[:, None], image * seen[:, None])  # context values are the pixels
        if previous is not None:
            assert (seen | ~previous).all()  # nested: a larger fraction keeps the smaller's pixels
        previous = seen
    again = fraction_tasks(sampler, (0.1, 0.5, 1.0), num_images=5, batch_size=2, seed=4)
    assert torch.equal(again[0.5][1].xc, tasks[0.5][1].xc)
    assert not torch.equal(fraction_tasks(sampler, (0.5,), 5, 2, seed=5)[0.5][0].xc, tasks[0.5][0].xc)


def test_fraction_tasks_refuse_bad_arguments():
    sampler = _sampler()
    with pytest.raises(ValueError, match="num_images=7 exceeds the 6 images of random"):
        fraction_tasks(sampler, num_images=7)
    with pytest.raises(ValueError, match=r"fractions must lie in \(0, 1\], got 1.5"):
        fraction_tasks(sampler, (0.5, 1.5), num_images=2)
    with pytest.raises(TypeError, match="needs an ImageSampler"):
        fraction_tasks(make_sampler("gp1d"), num_images=2)
    with pytest.raises(ValueError, match=r"context must be \[2, n\] pixel indices in \[0, 25\)"):
        sampler.tasks(torch.tensor([0, 1]), torch.tensor([[0, 25], [1, 2]]), torch.zeros(2, 1, dtype=torch.long))


# --------------------------------------------------------------------------- metrics


def test_evaluate_fractions_scores_every_method_on_the_same_tasks():
    sampler = _sampler()
    tasks = fraction_tasks(sampler, (0.2, 1.0), num_images=4, batch_size=2)
    model = _model("np")
    results = evaluate_fractions({"np": model}, tasks, num_samples=3, knn_k=1, fit_steps=2, fit_restarts=1, seed=7)
    assert list(results) == ["np", "kNN (k=1)", "GP (RBF, fitted)"]
    assert all(list(per) == [0.2, 1.0] for per in results.values())
    torch.manual_seed(7)
    assert results["np"][0.2] == evaluate(model, tasks[0.2], num_samples=3)  # the model's own evaluation
    assert results["kNN (k=1)"][0.2] == evaluate_knn(tasks[0.2], k=1)
    # every pixel observed: the nearest neighbour of each target is itself, so 1-NN is exact
    assert results["kNN (k=1)"][1.0]["mse"] == 0 and results["kNN (k=1)"][0.2]["mse"] > 0
    assert results["GP (RBF, fitted)"][1.0]["mse"] < results["GP (RBF, fitted)"][0.2]["mse"]
    assert "GP (RBF, fitted)" not in evaluate_fractions({}, tasks, gp=False)


def test_format_fraction_table_has_a_column_per_fraction_and_se_for_tar_ll():
    results = {"a": {0.01: {"tar_ll": 1.5, "tar_ll_se": 0.25, "mse": 0.125}, 1.0: {"tar_ll": 2.0, "mse": 0.0}}}
    ll, mse = format_fraction_table(results, "tar_ll").splitlines(), format_fraction_table(results, "mse").splitlines()
    assert ll[0].split() == ["tar_ll", "1%", "100%"] and ll[2].split() == ["a", "1.500", "±", "0.250", "2.0000"]
    assert mse[2].split() == ["a", "0.1250", "0.0000"]


# --------------------------------------------------------------------------- diversity


def test_mean_pairwise_distance_is_the_rms_distance_over_pairs():
    base = torch.rand(1, 2, 10, 3)
    assert torch.equal(mean_pairwise_distance(base.expand(4, -1, -1, -1)), torch.zeros(2))
    shifted = torch.cat([base, base + 0.3, base + 0.6])  # pair distances 0.3, 0.6, 0.3
    assert torch.allclose(mean_pairwise_distance(shifted), torch.full((2,), 0.4))
    with pytest.raises(ValueError, match=r"\[S >= 2, B, N, C\]"):
        mean_pairwise_distance(base)


class _ByPosition:
    """A 'classifier' that labels the k-th image it is given with k % 3."""

    def predict(self, flat):
        return np.arange(len(flat)) % 3


def test_sample_diversity_measures_samples_and_counts_classes():
    sampler = _sampler(n=20)
    model = _model("np")
    result = sample_diversity(model, sampler, (3, None), num_images=16, num_samples=4, classifier=_ByPosition())
    assert list(result) == ["3", "all"]
    assert all(d["pairwise_rms"] > 0 for d in result.values())  # an untrained NP's z changes its output
    # sample s of image i is the (s * 16 + i)-th input: label (s + i) % 3, so 3 classes per image
    assert result["3"]["distinct_classes"] == 3
    # the real image i is labelled i % 3: samples s = 0 and 3 of the 4 agree with it
    assert result["3"]["true_class"] == 0.5
    with pytest.raises(TypeError, match="needs a latent model"):
        sample_diversity(_model("cnp"), sampler)
    with pytest.raises(ValueError, match=r"context sizes must lie in \[1, 25\]"):
        sample_diversity(model, sampler, (30,))


def test_digit_classifier_recognises_held_out_digits():
    train, test = make_sampler("digits"), make_sampler("digits", split="test")
    from npkit.data.image_datasets import load_digits

    _, labels = load_digits()
    clf = digit_classifier(train.images, labels[:-360])
    flat = test.images.permute(0, 2, 3, 1).reshape(len(test.images), -1).numpy()
    assert (clf.predict(flat) == labels[-360:].numpy()).mean() > 0.85


# --------------------------------------------------------------------------- command line


def test_npkit_eval_on_an_image_run_scores_fractions_on_the_test_split(tmp_path, capsys):
    run = tmp_path / "run"
    tiny = [f"--set={s}" for s in ("train.steps=3", "train.progress=false", "model.hidden_dim=8", "model.r_dim=8")]
    main(["train", "digits-np", "--run-dir", str(run), *tiny, "--set=model.z_dim=4"])
    sets = ("eval.num_images=4", "eval.batch_size=2", "eval.fractions=[0.1, 1.0]", "eval.fit_steps=2")
    assert main(["eval", str(run), *(f"--set={s}" for s in (*sets, "eval.num_samples=3", "eval.fit_restarts=1"))]) == 0
    out = capsys.readouterr().out
    assert "digits:test: 4 images" in out and "sample diversity" in out
    metrics = json.loads((run / "metrics.json").read_text())
    assert sorted(metrics["results"]) == ["GP (RBF, fitted)", "kNN (k=5)", "np"]
    assert list(metrics["results"]["np"]) == ["0.1", "1.0"]
    assert metrics["results"]["np"]["1.0"]["num_tasks"] == 4
    assert sorted(metrics["sample_diversity"]) == ["10", "all"]
    assert (run / "figures" / "context-fractions.png").read_bytes()[:8] == PNG_SIGNATURE
    assert main(["eval", str(run), *(f"--set={s}" for s in sets), "--set=eval.data={split: train}"]) == 0
    assert "digits:train: 4 images" in capsys.readouterr().out


def test_npkit_eval_refuses_bad_image_settings(tmp_path, capsys):
    run = tmp_path / "run"
    tiny = [f"--set={s}" for s in ("train.steps=1", "train.progress=false", "model.hidden_dim=8", "model.r_dim=8")]
    main(["train", "digits-cnp", "--run-dir", str(run), *tiny])
    assert main(["eval", str(run), "--set=eval.fractions=[0.5, 2]"]) == 2
    assert "fractions must be a non-empty list of context fractions in (0, 1]" in capsys.readouterr().err
    assert main(["eval", str(run), "--set=eval.data={split: valid}"]) == 2
    assert "unknown digits split 'valid'" in capsys.readouterr().err
