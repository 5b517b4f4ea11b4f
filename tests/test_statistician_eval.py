"""Specification of npkit.evaluation.statistician, npkit.plot.sets and the statistician's data presets
and CLI: posterior means, silhouettes, few-shot accuracy, summaries, figures, `npkit train|eval|plot`."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn
from torch.distributions import Independent, Normal

from npkit.cli import main
from npkit.data import make_sampler, preset_options
from npkit.data.sets import ClassSets, DistributionSets, PointSets
from npkit.evaluation.statistician import (
    evaluate_sets,
    few_shot_accuracy,
    knn_accuracy,
    mean_item,
    occupancy_histogram,
    posterior_means,
    sample_moments,
    silhouette,
    summary_points,
)
from npkit.models import build_model

NUM_CLASSES = 10


class StubStatistic(nn.Module):
    """A "model" whose q(c | D) is N(f(D), 0.1^2 I) for a fixed f of the set x [B, N, D]."""

    def __init__(self, mean_of) -> None:
        super().__init__()
        self.mean_of = mean_of

    def statistic(self, x):
        mean = self.mean_of(x)
        return Independent(Normal(mean, torch.full_like(mean, 0.1)), 1)


def one_column_per_class() -> PointSets:
    """Images [40, 1, 1, 10] whose class k has ink in column k only: every point of a set lies in
    [k / 10, (k + 1) / 10) along the columns."""
    labels = torch.arange(NUM_CLASSES).repeat(4)
    images = torch.zeros(len(labels), 1, 1, NUM_CLASSES)
    images[torch.arange(len(labels)), 0, 0, labels] = 1.0
    return PointSets(images, labels, num_points=5)


def one_hot_of_the_class(x):
    return nn.functional.one_hot((x[:, 0, 1] * NUM_CLASSES).long(), NUM_CLASSES).double()


def test_silhouette_is_one_for_separated_groups_and_zero_for_shuffled_labels():
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(4).repeat_interleave(50)
    centres = 10.0 * torch.eye(3, dtype=torch.float64)[[0, 1, 2, 0]] * torch.tensor([[1.0], [1.0], [1.0], [-1.0]])
    means = centres[labels] + 0.01 * torch.randn(200, 3, generator=generator, dtype=torch.float64)
    assert silhouette(means, labels) > 0.99
    shuffled = labels[torch.randperm(200, generator=generator)]
    assert abs(silhouette(means, shuffled)) < 0.1


def test_knn_accuracy_reads_labels_off_sheets_that_the_silhouette_misses():
    # each label is a thin sheet (y = label) spread far along x: neighbours share labels, balls overlap
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(3).repeat_interleave(100)
    sheets = torch.stack([20 * torch.rand(300, generator=g), labels.double()], -1)
    assert knn_accuracy(sheets, labels) > 0.95
    assert silhouette(sheets, labels) < 0.2
    noise = torch.randn(300, 2, generator=g)
    assert knn_accuracy(noise, labels) < 0.5  # chance is 1/3


def test_sample_moments_match_scipy_and_the_families_closed_forms():
    from scipy import stats

    x = torch.tensor([[1.0, 2.0, 3.0, 4.0, 10.0], [0.0, 0.5, 1.0, 1.5, 2.0]]).unsqueeze(-1)
    moments = sample_moments(x)
    for row, values in zip(moments, x[..., 0].double().numpy()):
        expected = [values.mean(), values.std(), stats.skew(values), stats.kurtosis(values, fisher=False)]
        assert torch.allclose(row, torch.tensor(expected, dtype=torch.float64))
    sets = DistributionSets(num_items=20000, families=("exponential", "uniform")).sample(6, torch.Generator())
    assert set(sets.labels.tolist()) == {0, 1}
    closed_forms = torch.tensor([[2.0, 9.0], [0.0, 1.8]], dtype=torch.float64)  # exponential, uniform
    # the exponential's sample kurtosis converges slowly (its own variance grows with the 8th moment)
    assert torch.allclose(sample_moments(sets.x)[:, 2:], closed_forms[sets.labels], rtol=0.15, atol=0.15)
    with pytest.raises(ValueError, match=r"x must be 1D sets"):
        sample_moments(torch.zeros(2, 5, 2))


def test_posterior_means_are_seeded_and_labelled_by_the_sampler():
    model = StubStatistic(lambda x: x.mean(1).double())
    sampler = DistributionSets(num_items=30)
    means, labels = posterior_means(model, sampler, num_datasets=70, seed=3, batch_size=32)
    again, _ = posterior_means(model, sampler, num_datasets=70, seed=3, batch_size=32)
    expected = sampler.sample(32, torch.Generator().manual_seed(3))
    assert means.shape == (70, 1) and labels.shape == (70,) and torch.equal(means, again)
    assert torch.allclose(means[:32], expected.x.mean(1).double()) and torch.equal(labels[:32], expected.labels)


def test_few_shot_is_perfect_when_the_posterior_names_the_class():
    scores = few_shot_accuracy(
        StubStatistic(one_hot_of_the_class), one_column_per_class(), shots=(1, 2), queries=2, episodes=10
    )
    assert set(scores) == {1, 2}
    assert all(s["accuracy"] == 1.0 and s["stderr"] == 0.0 and s["episodes"] == 10 for s in scores.values())


def test_few_shot_is_at_chance_when_the_posterior_is_constant():
    constant = StubStatistic(lambda x: torch.zeros(x.shape[0], 2, dtype=torch.float64))
    scores = few_shot_accuracy(constant, one_column_per_class(), shots=(1,), ways=5, queries=2, episodes=20)
    assert scores[1]["accuracy"] == pytest.approx(1 / 5)


def test_occupancy_histogram_counts_points_per_cell_and_scores_few_shot_as_features():
    x = torch.tensor([[[0.05, 0.05], [0.05, 0.06], [0.99, 0.51], [1.0, 1.0]]])
    histogram = occupancy_histogram(x, bins=2)  # cells (row, column): (0, 0) twice, (1, 1) twice
    assert torch.equal(histogram, torch.tensor([[0.5, 0.0, 0.0, 0.5]], dtype=torch.float64))
    # one column of ink per class (points spread over every row): the column marginal of a 10-bin
    # histogram names the class, a 1-bin histogram cannot
    columns = lambda x: occupancy_histogram(x, 10).view(-1, 10, 10).sum(1)
    perfect = few_shot_accuracy(columns, one_column_per_class(), (1,), queries=2, episodes=9)
    blind = few_shot_accuracy(lambda x: occupancy_histogram(x, 1), one_column_per_class(), (1,), queries=2, episodes=20)
    assert perfect[1]["accuracy"] == 1.0 and blind[1]["accuracy"] == pytest.approx(1 / 5)
    with pytest.raises(ValueError, match="2D point sets"):
        occupancy_histogram(torch.zeros(2, 5, 1))


def test_few_shot_refuses_more_ways_than_classes():
    with pytest.raises(ValueError, match="ways"):
        few_shot_accuracy(StubStatistic(one_hot_of_the_class), one_column_per_class(), ways=11)


def test_summary_points_are_distinct_items_whose_mean_is_the_set_mean():
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    chosen = summary_points(StubStatistic(lambda sets: sets.mean(1)), x, k=6)
    assert chosen.shape == (6,) and len(set(chosen.tolist())) == 6
    random_subsets = torch.stack([x[torch.randperm(50)[:6]].mean(0) for _ in range(200)])
    gap = (x[chosen].mean(0) - x.mean(0)).norm()
    assert gap < 0.05 and gap < (random_subsets - x.mean(0)).norm(dim=1).min()


def test_set_presets_build_and_sample_without_loading_for_their_options():
    assert preset_options("spatial-mnist") == (PointSets, ("root", "split", "classes", "num_points"))
    assert preset_options("mnist-sets") == (ClassSets, ("root", "split", "classes", "set_size", "binarize"))
    class_sets = make_sampler("digit-sets", split="test", classes=[5, 6], set_size=3, binarize=True)
    batch = class_sets.sample(4, torch.Generator().manual_seed(0))
    assert batch.x.shape == (4, 3, 64) and set(batch.labels.tolist()) <= {5, 6} and class_sets.binarize
    assert class_sets.source == "digits:test" and set(class_sets.labels.tolist()) == {5, 6}
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['num_points'\] for data preset 'digit-sets'"):
        make_sampler("digit-sets", num_points=3)
    digits = make_sampler("spatial-digits", split="test", classes=[5, 6], num_points=7)
    batch = digits.sample(3, torch.Generator().manual_seed(0))
    assert batch.x.shape == (3, 7, 2) and set(batch.labels.tolist()) <= {5, 6}
    distributions = make_sampler("distributions", num_items=11, std_range=[0.5, 1.0])
    assert distributions.std_range == (0.5, 1.0) and distributions.sample(2).x.shape == (2, 11, 1)
    with pytest.raises(ValueError, match="labels"):
        make_sampler("spatial-digits", labels=[0])


def pixel_per_class(noise: float = 0.1, per_class: int = 8, seed: int = 0) -> ClassSets:
    """Images [10 * per_class, 1, 4, 4] in [0, 1]: class k has pixel k at 1, every other pixel
    uniform in [0, ``noise``)."""
    labels = torch.arange(NUM_CLASSES).repeat(per_class)
    images = noise * torch.rand(len(labels), 1, 4, 4, generator=torch.Generator().manual_seed(seed))
    images.view(len(labels), 16)[torch.arange(len(labels)), labels] = 1.0
    return ClassSets(images, labels, set_size=3)


def test_mean_item_names_the_class_of_sets_of_images_and_a_constant_feature_is_at_chance():
    sets = pixel_per_class()
    assert torch.equal(mean_item(torch.ones(2, 3, 4)), torch.ones(2, 4, dtype=torch.float64))
    perfect = few_shot_accuracy(mean_item, sets, shots=(1, 3), queries=3, episodes=10)
    assert all(s["accuracy"] == 1.0 and s["stderr"] == 0.0 for s in perfect.values())
    constant = lambda x: torch.zeros(x.shape[0], 2, dtype=torch.float64)
    blind = few_shot_accuracy(constant, sets, shots=(1, 3), ways=4, queries=3, episodes=10)
    assert all(s["accuracy"] == 0.25 and s["stderr"] == 0.0 for s in blind.values())  # ties: one class, always
    # only the nearest class MEAN succeeds here: the noise makes one class's images differ a little
    heavy = few_shot_accuracy(mean_item, pixel_per_class(noise=0.9), shots=(1, 5), queries=3, episodes=30)
    assert heavy[5]["accuracy"] > heavy[1]["accuracy"]
    with pytest.raises(ValueError, match="x must be sets"):
        mean_item(torch.zeros(2, 4))


def test_few_shot_on_class_sets_embeds_each_class_support_as_one_dataset_and_queries_alone():
    seen: list[tuple[int, ...]] = []

    def record(x):
        seen.append(tuple(x.shape))
        # every item of a set shares the set's class (the bright pixel), so it names it
        classes = x.argmax(-1)
        assert (classes == classes[:, :1]).all()
        return mean_item(x)

    few_shot_accuracy(record, pixel_per_class(), shots=(3,), ways=4, queries=2, episodes=2)
    assert seen == [(4, 3, 16), (8, 1, 16)] * 2
    seen.clear()
    few_shot_accuracy(lambda x: seen.append(tuple(x.shape)) or x.mean(1), one_column_per_class(), (2,), 4, 1, 1)
    assert seen == [(8, 5, 2), (4, 5, 2)]  # point sets: one set per support image


def test_a_statistician_trains_on_class_sets_and_evaluates_few_shot_on_the_unseen_classes():
    from npkit.objectives import statistician_elbo
    from npkit.train import fit

    torch.manual_seed(0)
    options = dict(hidden_dim=16, c_dim=4, z_dim=4, num_stochastic_layers=1, encoder_layers=1, decoder_layers=1)
    model = build_model("statistician", x_dim=64, normalization="batch", **options)
    train = make_sampler("digit-sets", classes=[0, 1, 2], set_size=3)
    rows = fit(model, train, statistician_elbo, steps=5, batch_size=4, progress=False, accelerator="cpu")
    assert len(rows) > 0 and all(math.isfinite(row["train/loss"]) for row in rows)
    sets = make_sampler("digit-sets", split="test", classes=[0, 1, 2], set_size=3)
    every = make_sampler("digit-sets", split="test", set_size=3)
    text, results = evaluate_sets(model, sets, 16, seed=0, every_class=every, shots=(1, 2), episodes=3)
    assert results["few_shot_classes"] == [3, 4, 5, 6, 7, 8, 9] and set(results["few_shot"]) == {1, 2}
    assert all(0.0 <= s["accuracy"] <= 1.0 for s in results["few_shot"].values())
    assert "each query a set of one" in text and math.isfinite(results["elbo"]["elbo"])


TINY = (
    "model.hidden_dim=8",
    "model.z_dim=2",
    "model.num_stochastic_layers=1",
    "model.encoder_layers=1",
    "model.decoder_layers=1",
    "train.progress=false",
    "train.batch_size=4",
    "eval.num_batches=2",
    "eval.batch_size=16",
)


def npkit(*args, sets=()) -> int:
    return main([str(a) for a in args] + [f"--set={s}" for s in sets])


@pytest.mark.parametrize(
    ("preset", "figures", "extra"),
    [
        ("statistician-synthetic", ["posterior-means.png"], ("data.num_items=20",)),
        ("statistician-digits", ["posterior-means.png", "spatial-summaries.png"], ("plot.num_tasks=2",)),
        ("statistician-digit-sets", ["posterior-means.png", "class-samples.png"], ("plot.num_tasks=2",)),
    ],
)
def test_train_eval_plot_a_statistician_run(tmp_path, capsys, preset, figures, extra):
    run = tmp_path / "run"
    assert npkit("train", preset, "--run-dir", run, sets=("train.steps=5", *TINY, *extra)) == 0
    assert (run / "model").is_dir()
    assert npkit("eval", run) == 0
    metrics = json.loads((run / "metrics.json").read_text())["results"]
    assert {"elbo", "silhouette"} <= set(metrics) and {"log_lik", "kl_c", "kl_z"} <= set(metrics["elbo"])
    if preset in ("statistician-digits", "statistician-digit-sets"):
        assert metrics["few_shot_classes"] == [5, 6, 7, 8, 9] and set(metrics["few_shot"]) == {"1", "5"}
    assert npkit("plot", run) == 0
    for figure in figures:
        assert (run / "figures" / figure).stat().st_size > 0
    assert "silhouette" in capsys.readouterr().out


def test_a_statistician_run_resumes(tmp_path):
    run = tmp_path / "run"
    common = ("train.checkpoint_every=2", *TINY, "data.num_items=20")
    assert npkit("train", "statistician-synthetic", "--run-dir", run, sets=("train.steps=2", *common)) == 0
    assert npkit("train", "--resume", "--extend", "--run-dir", run, sets=("train.steps=4",)) == 0
    assert (run / "checkpoints").is_dir() and (run / "model").is_dir()


def test_eval_every_is_refused_for_the_statistician(tmp_path, capsys):
    run = tmp_path / "run"
    assert npkit("train", "statistician-synthetic", "--run-dir", run, sets=("train.eval_every=2", *TINY)) == 2
    assert "train.eval_every" in capsys.readouterr().err and not run.exists()


def test_untrained_statistician_builds_from_every_statistician_preset():
    from npkit.config import load_config, presets

    for name in (p for p in presets() if p.startswith("statistician-")):
        options = dict(load_config(name)["model"])
        assert build_model(options.pop("name"), **options).name == "statistician"
