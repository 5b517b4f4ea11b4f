"""What a trained Neural Statistician has learnt about datasets (Edwards & Storkey 2017, section 5).

- `posterior_means`, `silhouette`, `knn_accuracy`: the means of q(c | D) of many
  datasets, how well they cluster by the family or class each dataset came from, and how well
  that label can be read off them; `sample_moments`: the reference features (mean, std,
  skewness, kurtosis of each 1D set) to read the same labels from;
- `few_shot_accuracy`: classes never seen in training told apart by the nearest posterior
  mean of c, from k examples per class, on point sets (each image one set; reference features:
  `occupancy_histogram`) or on sets of images (the k images of a class one set, each query a
  set of one image; reference features: `mean_item`, the nearest class-mean image);
- `summary_points`: the few items of a set that best stand for all of it;
- `elbo_on`: the ELBO terms on held-out datasets.

Shapes: a set is x [n_items, x_dim], a batch of sets x [batch, n_items, x_dim]. Every function
runs the model in eval mode (restoring its mode after), as batch normalisation needs.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import statistics
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch
from torch import Tensor
from torch.distributions import kl_divergence

from npkit.data.sets import ClassSets, PointSets
from npkit.objectives import statistician_elbo_terms

_Fn = TypeVar("_Fn", bound=Callable)


def _float_dtype(model) -> torch.dtype:
    return next(model.parameters(), torch.empty(0)).dtype


def in_eval_mode(fn: _Fn) -> _Fn:
    """Run ``fn(model, ...)`` with the model in eval mode, then restore its mode: a batch-normalised
    statistician (``normalization="batch"``) then encodes each set with the running statistics,
    independently of the other sets, and evaluation leaves those statistics untouched."""

    @functools.wraps(fn)
    def wrapped(model, *args, **kwargs):
        if not isinstance(model, torch.nn.Module):
            return fn(model, *args, **kwargs)
        was_training = model.training
        model.eval()
        try:
            return fn(model, *args, **kwargs)
        finally:
            model.train(was_training)

    return wrapped  # type: ignore[return-value]


@in_eval_mode
@torch.no_grad()
def statistic_means(model, x: Tensor) -> Tensor:
    """The means of q(c | D) of the sets x [batch, n_items, x_dim] -> [batch, c_dim] (float64, CPU)."""
    return model.statistic(x.to(_float_dtype(model))).mean.double().cpu()


def posterior_means(model, sampler, num_datasets: int, seed: int, batch_size: int = 256) -> tuple[Tensor, Tensor]:
    """Means of q(c | D), the statistic's posterior, for sets drawn from a sampler.

    Args:
        model (NeuralStatistician): the trained statistician.
        sampler (Any): a set sampler (`npkit.data.sets`: sample(n, generator) -> sets with ``x``
            [n, n_items, x_dim] and ``labels`` [n]).
        num_datasets: sets to draw.
        seed: seeds the generator the sets are drawn with.
        batch_size: sets encoded at once.

    Returns:
        (means [num_datasets, c_dim] float64, labels [num_datasets]).

    Examples:
        >>> means, labels = npkit.posterior_means(model, sets, num_datasets=500, seed=0)  # doctest: +SKIP
    """
    generator = torch.Generator().manual_seed(seed)
    means, labels = [], []
    for start in range(0, num_datasets, batch_size):
        batch = sampler.sample(min(batch_size, num_datasets - start), generator)
        means.append(statistic_means(model, batch.x))
        labels.append(batch.labels)
    return torch.cat(means), torch.cat(labels)


def silhouette(means: Tensor, labels: Tensor) -> float:
    """The silhouette coefficient (scikit-learn, Euclidean) of points grouped by labels.

    Args:
        means: points [N, c_dim], e.g. from `posterior_means`.
        labels: their groups [N] (at least two).

    Returns:
        The mean silhouette in [-1, 1]: 1 for tight, far-apart groups, about 0 for groups that
            overlap.
    """
    from sklearn.metrics import silhouette_score

    return float(silhouette_score(means.numpy(), labels.numpy()))


def knn_accuracy(features: Tensor, labels: Tensor, k: int = 5, folds: int = 5) -> float:
    """Accuracy of a k-nearest-neighbour classifier (scikit-learn) of labels [N] from features
    [N, D], by ``folds``-fold cross-validation: how well the label can be read off the features,
    which the silhouette misses when each group is spread over a sheet rather than a ball."""
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    scores = cross_val_score(KNeighborsClassifier(k), features.numpy(), labels.numpy(), cv=folds)
    return float(scores.mean())


def sample_moments(x: Tensor) -> Tensor:
    """Mean, std, skewness and kurtosis (population moments, as ``scipy.stats`` computes them) of
    each 1D set x [batch, n_items, 1] -> [batch, 4] (float64): the classical summary statistics a
    learnt c can be compared with."""
    if x.dim() != 3 or x.shape[-1] != 1 or x.shape[1] < 2:
        raise ValueError(f"x must be 1D sets [batch, n_items >= 2, 1], got {list(x.shape)}")
    x = x[..., 0].double()
    mean, std = x.mean(1, keepdim=True), x.std(1, keepdim=True, correction=0)
    standard = (x - mean) / std
    return torch.stack([mean[:, 0], std[:, 0], standard.pow(3).mean(1), standard.pow(4).mean(1)], -1)


def occupancy_histogram(x: Tensor, bins: int = 8) -> Tensor:
    """The fraction of each point set's points in every cell of a ``bins`` x ``bins`` grid over
    [0, 1]^2, x [batch, n_items, 2] -> [batch, bins * bins] (float64): the plain features a learnt c
    of spatial sets can be compared with (``few_shot_accuracy(occupancy_histogram, ...)``)."""
    if x.dim() != 3 or x.shape[-1] != 2:
        raise ValueError(f"x must be 2D point sets [batch, n_items, 2], got {list(x.shape)}")
    cell = (x.double().clamp(0.0, 1.0 - 1e-9) * bins).long()  # [B, N, 2]
    index = cell[..., 0] * bins + cell[..., 1]
    counts = torch.zeros(x.shape[0], bins * bins, dtype=torch.float64)
    return counts.scatter_add_(1, index, torch.ones_like(index, dtype=torch.float64)) / x.shape[1]


def mean_item(x: Tensor) -> Tensor:
    """The mean item of each set: the plain baseline a learnt statistic c is compared with.

    On sets of a class's images it is their mean image, so ``few_shot_accuracy(mean_item, ...)``
    is the nearest class-mean in pixel space.

    Args:
        x: sets [batch, n_items, D].

    Returns:
        [batch, D] float64.
    """
    if x.dim() != 3:
        raise ValueError(f"x must be sets [batch, n_items, x_dim], got {list(x.shape)}")
    return x.double().mean(1)


def few_shot_accuracy(
    model,
    sets: PointSets | ClassSets,
    shots: Sequence[int] = (1, 5),
    ways: int = 5,
    queries: int = 5,
    episodes: int = 100,
    seed: int = 0,
) -> dict[int, dict[str, float]]:
    """Few-shot classification by the nearest posterior mean of c, per number of ``shots``.

    Each episode draws ``ways`` classes of ``sets`` and, per class, ``shots + queries`` distinct
    images; ``sets.support_sets`` and ``sets.query_sets`` turn them into datasets. Point sets:
    every image is one point set and a class's prototype is the centroid of the means of q(c | D)
    of its ``shots`` sets. Class sets (the paper's section 5.4): the ``shots`` images of a class
    are ONE dataset, whose mean of q(c | D) is the prototype, and each query image is a dataset of
    one item. Each query takes the class of the nearest prototype (scikit-learn's
    1-nearest-neighbour classifier, Euclidean; ties go to the first class of the episode).

    Args:
        model (Any): a statistician, or any callable x [B, N, D] -> features [B, F] to score
            instead (a reference such as `mean_item`).
        sets (PointSets | ClassSets): labelled images and how they become datasets.
        shots: the numbers of support images per class to score.
        ways: classes per episode.
        queries: query images per class and episode.
        episodes: episodes per number of shots.
        seed: seeds the episodes (the same episodes for every model).

    Returns:
        {shots: {"accuracy": mean over episodes, "stderr": its standard error, "episodes": ...}}.
    """
    from sklearn.neighbors import KNeighborsClassifier

    embed = (lambda x: statistic_means(model, x)) if hasattr(model, "statistic") else model
    classes = sorted(set(sets.labels.tolist()))
    if ways < 2 or ways > len(classes):
        raise ValueError(f"ways must lie in [2, {len(classes)}] (the classes of {sets.source}), got {ways}")
    results = {}
    for k in shots:
        generator = torch.Generator().manual_seed(seed)
        accuracies = []
        for _ in range(episodes):
            picked = torch.randperm(len(classes), generator=generator)[:ways]
            support, query = [], []
            for c in picked.tolist():
                images = torch.nonzero(sets.labels == classes[c]).squeeze(1)
                if len(images) < k + queries:
                    raise ValueError(f"shots={k} + queries={queries} exceed the {len(images)} images of class {c}")
                images = images[torch.randperm(len(images), generator=generator)[: k + queries]]
                support.append(images[:k])
                query.append(images[k:])
            support_sets = sets.support_sets(torch.stack(support), generator)  # ways * k sets, or ways
            query_sets = sets.query_sets(torch.cat(query), generator)
            features = embed(support_sets.x)
            prototypes = features.view(ways, -1, features.shape[-1]).mean(1)  # [ways, c_dim]
            names = support_sets.labels.view(ways, -1)[:, 0]
            nearest = KNeighborsClassifier(n_neighbors=1).fit(prototypes.numpy(), names.numpy())
            predicted = torch.from_numpy(nearest.predict(embed(query_sets.x).numpy()))
            accuracies.append((predicted == query_sets.labels).double().mean().item())
        spread = statistics.stdev(accuracies) / math.sqrt(episodes) if episodes > 1 else math.nan
        results[k] = {"accuracy": statistics.fmean(accuracies), "stderr": spread, "episodes": episodes}
    return results


@in_eval_mode
@torch.no_grad()
def summary_points(model, x: Tensor, k: int = 6) -> Tensor:
    """Indices [k] of the k items of the set x [n_items, x_dim] that best explain it: greedily, one
    item at a time, the item whose addition to the chosen subset S brings q(c | S) closest to
    q(c | whole set) in KL(q(c | D) || q(c | S))."""
    if x.dim() != 2 or not 1 <= k <= x.shape[0]:
        raise ValueError(f"x must be one set [n_items, x_dim] with at least k={k} items, got {list(x.shape)}")
    x = x.to(_float_dtype(model))
    whole = model.statistic(x.unsqueeze(0))
    chosen: list[int] = []
    for _ in range(k):
        candidates = torch.tensor([i for i in range(x.shape[0]) if i not in chosen])
        subsets = torch.cat([x[chosen].expand(len(candidates), -1, -1), x[candidates].unsqueeze(1)], 1)
        distance = kl_divergence(whole, model.statistic(subsets))  # [candidates]
        chosen.append(int(candidates[distance.argmin()]))
    return torch.tensor(chosen)


@in_eval_mode
@torch.no_grad()
def elbo_on(model, sampler, num_datasets: int = 512, batch_size: int = 64, seed: int = 0) -> dict[str, float]:
    """The statistician's ELBO and its terms per item, averaged over sets from a sampler.

    Args:
        model (NeuralStatistician): the model (scored in eval mode).
        sampler (Any): a set sampler, as for `posterior_means`.
        num_datasets: sets to draw.
        batch_size: sets scored at once.
        seed: seeds the sets and the latent samples.

    Returns:
        {"elbo", "log_lik", "kl_c", "kl_z"} (nats per item; kl_z summed over the layers).
    """
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    totals = dict.fromkeys(("log_lik", "kl_c", "kl_z"), 0.0)
    for start in range(0, num_datasets, batch_size):
        batch = sampler.sample(min(batch_size, num_datasets - start), generator).to("cpu", _float_dtype(model))
        terms = statistician_elbo_terms(model, batch)
        for name in totals:
            totals[name] += terms[name].sum().item() * batch.batch_size / num_datasets
    return {"elbo": totals["log_lik"] - totals["kl_c"] - totals["kl_z"], **totals}


def evaluate_sets(
    model, sets, num_datasets: int, seed: int, every_class: PointSets | ClassSets | None = None, **few_shot
) -> tuple[str, dict]:
    """``npkit eval`` of a statistician: the held-out ELBO terms (`elbo_on`) and the silhouette
    of the posterior means by label (`silhouette`) on ``num_datasets`` sets of ``sets``, and,
    given ``every_class`` (the evaluation split with every class), `few_shot_accuracy` on
    its classes that ``sets`` lacks (on all of them when ``sets`` has every class) with the
    options ``few_shot``. Returns a printable report and the results as a dict."""
    results: dict = {"elbo": elbo_on(model, sets, num_datasets, seed=seed)}
    results["silhouette"] = silhouette(*posterior_means(model, sets, num_datasets, seed))
    source = getattr(sets, "source", type(sets).__name__)
    lines = [
        f"{source}: {num_datasets} held-out datasets, seed {seed}; per item of a dataset:",
        "  " + ", ".join(f"{k} {v:.4f}" for k, v in results["elbo"].items()),
        f"silhouette of the posterior means of c by label: {results['silhouette']:.4f}",
    ]
    if every_class is not None:
        seen = set(sets.labels.tolist())
        unseen = sorted(set(every_class.labels.tolist()) - seen) or sorted(seen)
        held_out = dataclasses.replace(every_class, classes=unseen)
        options = {"ways": min(5, len(unseen)), **few_shot, "seed": seed}
        results["few_shot"] = few_shot_accuracy(model, held_out, **options)
        results["few_shot_classes"] = unseen
        kind = "unseen" if seen.isdisjoint(unseen) else "seen"
        rule = (
            "nearest posterior mean of c of each class's k examples as one set, each query a set of one"
            if isinstance(every_class, ClassSets)
            else "nearest centroid of the posterior means"
        )
        lines.append(
            f"few-shot on {kind} classes {unseen} of {every_class.source} ({options['ways']}-way, {rule}; "
            f"± standard error over episodes):"
        )
        for shots, score in results["few_shot"].items():
            lines.append(
                f"  {shots}-shot accuracy {score['accuracy']:.4f} ± {score['stderr']:.4f}, {score['episodes']} episodes"
            )
    return "\n".join(lines), results
