"""Image-completion metrics: log-likelihood and MSE against the fraction of observed pixels, for
models and the kNN and fitted-GP baselines on the same tasks, and the diversity of a latent
model's samples.

Tasks of `fraction_tasks`: for each fraction f, the same images, each observed at the
first ``max(1, round(f * H * W))`` pixels of one random permutation per image (so a larger
fraction adds pixels to a smaller one's context) and scored at every pixel (the targets include
the context, as in the CNP paper's image experiments; at f = 1 every pixel is observed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import combinations

import torch
from torch import Tensor
from tqdm.auto import tqdm

from npkit.data.evalset import EvalSet
from npkit.data.images import ImageSampler
from npkit.evaluation.metrics import evaluate, evaluate_gp, evaluate_knn
from npkit.predictive import sample_functions

FRACTIONS = (0.01, 0.05, 0.1, 0.2, 0.5, 1.0)


def context_count(fraction: float, pixels: int) -> int:
    """Number of observed pixels for ``fraction`` of ``pixels``: max(1, round(fraction * pixels))."""
    if not 0 < fraction <= 1:
        raise ValueError(f"context fractions must lie in (0, 1], got {fraction}")
    return max(1, round(fraction * pixels))


def fraction_tasks(
    sampler: ImageSampler,
    fractions: Sequence[float] = FRACTIONS,
    num_images: int = 64,
    batch_size: int = 16,
    seed: int = 0,
) -> dict[float, EvalSet]:
    """Image-completion tasks at several context fractions: the same images, nested contexts.

    For each fraction f the context is the first max(1, round(f * H * W)) pixels of a per-image
    permutation (so a larger fraction adds pixels to a smaller one's context), the targets
    every pixel, in ``sampler``'s coordinate and value conventions.

    Args:
        sampler: the images (an `ImageSampler`).
        fractions: context fractions, each in (0, 1].
        num_images: images per set, drawn without replacement with ``seed`` (the same for
            every fraction).
        batch_size: images per batch.
        seed: seeds the images and the pixel permutations.

    Returns:
        {fraction: `EvalSet`}.
    """
    if not isinstance(sampler, ImageSampler):
        raise TypeError(f"fraction_tasks needs an ImageSampler, got {type(sampler).__name__}")
    if num_images < 1 or batch_size < 1:
        raise ValueError(f"num_images and batch_size must be >= 1, got {num_images} and {batch_size}")
    if num_images > len(sampler.images):
        raise ValueError(f"num_images={num_images} exceeds the {len(sampler.images)} images of {sampler.source}")
    pixels = sampler.shape[0] * sampler.shape[1]
    counts = {f: context_count(f, pixels) for f in fractions}  # checks every fraction first
    generator = torch.Generator().manual_seed(seed)
    index = torch.randperm(len(sampler.images), generator=generator)[:num_images]
    order = torch.rand(num_images, pixels, generator=generator).argsort(dim=1)
    every = torch.arange(pixels).expand(num_images, pixels)
    sets = {}
    for fraction, count in counts.items():
        batches = [
            sampler.tasks(index[i : i + batch_size], order[i : i + batch_size, :count], every[i : i + batch_size])
            for i in range(0, num_images, batch_size)
        ]
        sets[fraction] = EvalSet(batches)
    return sets


def evaluate_fractions(
    models: Mapping[str, object],
    tasks: Mapping[float, EvalSet],
    num_samples: int = 50,
    knn_k: int = 5,
    gp: bool = True,
    fit_steps: int = 100,
    fit_restarts: int = 4,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, dict[float, dict[str, float]]]:
    """Image-completion metrics per method and context fraction, models beside kNN and a fitted GP.

    Every model is evaluated with `npkit.evaluate`, beside kNN regression
    (`npkit.evaluate_knn`) and, with ``gp``, the RBF GP fitted per task and channel by
    marginal likelihood (`npkit.evaluate_gp`, at most ``npkit.evaluation.metrics.GP_MAX_CONTEXT``
    context pixels per task), all on the same tasks.

    Args:
        models: name -> model.
        tasks: {fraction: evaluation set}, from `fraction_tasks`.
        num_samples: z samples per task of latent models.
        knn_k: neighbours of the kNN baseline.
        gp: add the fitted GP (slow on large images).
        fit_steps: Adam steps of each GP fit.
        fit_restarts: initial length scales tried per GP fit.
        seed: seeds the latent samples (torch's global generator, before each model).
        progress: show a progress bar over the fractions.

    Returns:
        {method: {fraction: metrics}}, the metrics as `npkit.evaluate` returns them;
            the baselines are named "kNN (k=...)" and "GP (RBF, fitted)".
    """
    names = list(models) + [f"kNN (k={knn_k})"] + (["GP (RBF, fitted)"] if gp else [])
    results: dict[str, dict[float, dict[str, float]]] = {name: {} for name in names}
    for fraction, evalset in tqdm(tasks.items(), desc="context fractions", disable=not progress):
        for name, model in models.items():
            torch.manual_seed(seed)
            results[name][fraction] = evaluate(model, evalset, num_samples=num_samples)
        results[names[len(models)]][fraction] = evaluate_knn(evalset, k=knn_k)
        if gp:
            results[names[-1]][fraction] = evaluate_gp(
                evalset, "fitted", fit_steps=fit_steps, fit_restarts=fit_restarts
            )
    return results


def format_fraction_table(results: Mapping[str, Mapping[float, Mapping[str, float]]], metric: str) -> str:
    """Plain-text table of one image-completion metric, a row per method and a column per fraction.

    Args:
        results: {method: {fraction: metrics}}, as `evaluate_fractions` returns them.
        metric: a key of the metrics, e.g. "tar_ll" (shown with its standard error over
            batches) or "mse".

    Returns:
        The table, columns aligned, "-" where a method lacks a fraction.

    Examples:
        >>> print(npkit.format_fraction_table(npkit.evaluate_fractions(models, tasks), "mse"))  # doctest: +SKIP
    """
    fractions = sorted({f for per in results.values() for f in per})
    rows = [[metric, *(f"{100 * f:g}%" for f in fractions)]]
    for name, per in results.items():
        cells = []
        for f in fractions:
            m = per.get(f)
            if m is None:
                cells.append("-")
            elif metric == "tar_ll" and math.isfinite(m.get("tar_ll_se", math.nan)):
                cells.append(f"{m['tar_ll']:.3f} ± {m['tar_ll_se']:.3f}")
            else:
                cells.append(f"{m[metric]:.4f}")
        rows.append([name, *cells])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths))) for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- sample diversity


def mean_pairwise_distance(samples: Tensor) -> Tensor:
    """Mean over pairs of samples of their RMS distance per pixel value: samples [S, B, N, C]
    (S >= 2) -> [B]. 0 when every sample is the same image."""
    if samples.dim() != 4 or samples.shape[0] < 2:
        raise ValueError(f"samples must be [S >= 2, B, N, C], got {tuple(samples.shape)}")
    pairs = [(samples[i] - samples[j]).square().mean((-1, -2)).sqrt() for i, j in combinations(range(len(samples)), 2)]
    return torch.stack(pairs).mean(0)


def sample_diversity(
    model,
    sampler: ImageSampler,
    context_sizes: Sequence[int | None] = (10, 100, None),
    num_images: int = 16,
    num_samples: int = 5,
    seed: int = 0,
    classifier=None,
) -> dict[str, dict[str, float]]:
    """How different a latent model's image completions are, per context size.

    ``num_samples`` functions (predictive means of z ~ p(z | C)) at every pixel of
    ``num_images`` images drawn with ``seed``, nested random contexts per image.

    Args:
        model (NeuralProcess): a latent model of the images.
        sampler: the images and their conventions (an `ImageSampler`).
        context_sizes: context pixel counts, each in [1, H * W] (None: every pixel).
        num_images: images drawn with ``seed``.
        num_samples: functions per image (>= 2).
        seed: seeds the images, the contexts and the z samples.
        classifier (Any): optional; anything with ``predict`` on flattened images in [0, 1]
            (channels last), e.g. a fitted scikit-learn model
            (``npkit.evaluation.completion.digit_classifier``).

    Returns:
        {size label ("10", ..., "all"): {"pairwise_rms": mean pairwise RMS distance of the
            samples, and with ``classifier`` "distinct_classes": mean number of distinct classes
            among the samples, "true_class": fraction of samples given the image's class by the
            classifier applied to the real image}}.
    """
    if not model.is_latent:
        raise TypeError(f"sample diversity needs a latent model; {type(model).__name__} has no function samples")
    if num_samples < 2:
        raise ValueError(f"num_samples must be >= 2 to compare samples, got {num_samples}")
    pixels = sampler.shape[0] * sampler.shape[1]
    sizes = [pixels if s is None else s for s in context_sizes]
    if any(not 1 <= s <= pixels for s in sizes):
        raise ValueError(f"context sizes must lie in [1, {pixels}] (or None for all), got {list(context_sizes)}")
    tasks = fraction_tasks(sampler, [s / pixels for s in sizes], num_images, num_images, seed)
    shift = 0.5 if sampler.values == "centered" else 0.0
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    results = {}
    try:
        with torch.no_grad():
            torch.manual_seed(seed)
            for size, evalset in zip(sizes, tasks.values()):
                batch = evalset[0].to(device)
                draws = sample_functions(model, batch.xc, batch.yc, batch.xt, num_samples=num_samples).cpu() + shift
                stats = {"pairwise_rms": mean_pairwise_distance(draws).mean().item()}
                if classifier is not None:
                    flat = lambda y: y.clamp(0, 1).reshape(*y.shape[:-2], -1).numpy()  # [H, W, C] order
                    labels = torch.as_tensor(classifier.predict(flat(draws).reshape(num_samples * num_images, -1)))
                    labels = labels.reshape(num_samples, num_images)
                    truth = torch.as_tensor(classifier.predict(flat(batch.yt.cpu() + shift)))
                    stats["distinct_classes"] = (
                        sum(len(set(labels[:, i].tolist())) for i in range(num_images)) / num_images
                    )
                    stats["true_class"] = (labels == truth).double().mean().item()
                results["all" if size == pixels else str(size)] = stats
    finally:
        model.train(was_training)
    return results


def digit_classifier(images: Tensor, labels: Tensor, max_iter: int = 200):
    """A scikit-learn logistic-regression classifier of flattened images [N, C, H, W] (values in
    [0, 1]) -> labels [N], for `sample_diversity`."""
    from sklearn.linear_model import LogisticRegression

    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    # pixel order of sample_diversity: row-major, channels last ([H, W, C] flattened)
    flat = images.permute(0, 2, 3, 1).reshape(len(images), -1).numpy()
    return LogisticRegression(max_iter=max_iter).fit(flat, labels.numpy())
