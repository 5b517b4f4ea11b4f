"""Figures of the Neural Statistician: posterior means of c by family, spatial digits with their
summaries and conditional samples, and sets of images of one class with images generated given
them. Points of a spatial digit are (row, column) in [0, 1]^2 and are drawn as an image: column to
the right, row downwards."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from npkit.data.sets import ClassSets
from npkit.evaluation.statistician import in_eval_mode, summary_points
from npkit.plot.figures import _figure, _save

COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:gray")


def two_dims(means: Tensor) -> tuple[Tensor, str]:
    """means [N, c_dim] -> [N, 2] for a scatter: the two dims of c itself, zeros beside a 1D c, or
    the first two principal components (scikit-learn's PCA) when c_dim > 2; and the axes' name."""
    if means.shape[1] == 1:
        return torch.cat([means, torch.zeros_like(means)], 1), "c"
    if means.shape[1] == 2:
        return means, "c"
    from sklearn.decomposition import PCA

    return torch.from_numpy(PCA(n_components=2).fit_transform(means.numpy())), "PCA of c"


def plot_posterior_means(
    panels: dict[str, tuple[Tensor, Tensor, float]],
    path: str | Path,
    names: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """One scatter per panel {"untrained": (means [N, c_dim], labels [N], silhouette), ...} of the
    posterior means of c in 2D (`two_dims`), coloured by label (``names[label]`` in the legend),
    the silhouette in the panel's title."""
    fig, axes = _figure(len(panels), max_cols=len(panels))
    for ax, (panel, (means, labels, score)) in zip(axes, panels.items()):
        points, axis = two_dims(means)
        for label in sorted(set(labels.tolist())):
            mine = points[labels == label]
            name = names[label] if names is not None else str(label)
            ax.scatter(mine[:, 0], mine[:, 1], s=6, alpha=0.6, color=COLOURS[label % len(COLOURS)], label=name)
        ax.set_title(f"{panel}: silhouette {score:.2f}")
        ax.set_xlabel(f"{axis} 1")
        ax.set_ylabel(f"{axis} 2")
        ax.legend(markerscale=2, fontsize="small")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def _bare(ax, name: str, first_row: bool) -> None:
    """A grid panel without ticks, its column's ``name`` above the first row."""
    ax.set_xticks([])
    ax.set_yticks([])
    if first_row:
        ax.set_title(name, fontsize="small")


@torch.no_grad()
@in_eval_mode
def plot_spatial_summaries(
    model,
    x: Tensor,
    path: str | Path,
    k: int = 6,
    num_samples: int = 3,
    seed: int = 0,
    title: str | None = None,
) -> Path:
    """A row per set of x [rows, n_items, 2]: the set with its ``k``-point summary
    (`npkit.evaluation.statistician.summary_points`) highlighted, then ``num_samples`` sets of
    n_items points generated from the mean of q(c | set) (the observation model's means)."""
    rows = x.shape[0]
    torch.manual_seed(seed)
    generated = [model.generate(x, x.shape[1]).mean for _ in range(num_samples)]  # each [rows, n_items, 2]
    cols = 1 + num_samples
    fig, axes = _figure(rows * cols, max_cols=cols)
    for row in range(rows):
        summary = x[row, summary_points(model, x[row], k)]
        panels = [(x[row], f"set and its {k}-point summary")]
        panels += [(g[row], f"sample {i + 1} given the set") for i, g in enumerate(generated)]
        for col, (points, name) in enumerate(panels):
            ax = axes[row * cols + col]
            ax.scatter(points[:, 1], points[:, 0], s=8, color="tab:blue")
            if col == 0:
                ax.scatter(summary[:, 1], summary[:, 0], s=40, color="tab:red", marker="x")
            ax.set_xlim(0, 1)
            ax.set_ylim(1, 0)
            ax.set_aspect("equal")
            _bare(ax, name, row == 0)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


@torch.no_grad()
@in_eval_mode
def plot_class_samples(
    model,
    x: Tensor,
    shape: tuple[int, int],
    path: str | Path,
    num_samples: int = 5,
    seed: int = 0,
    title: str | None = None,
) -> Path:
    """A row per set of images x [rows, n_items, H * W] (``shape`` (H, W)): its n_items images,
    then ``num_samples`` images generated given the set (c = mean of q(c | set), z from the prior;
    the observation model's means, clipped to [0, 1])."""
    rows, given = x.shape[:2]
    torch.manual_seed(seed)
    generated = model.generate(x, num_samples).mean.clamp(0.0, 1.0)  # [rows, num_samples, H * W]
    cols = given + num_samples
    fig, axes = _figure(rows * cols, max_cols=cols)
    for row in range(rows):
        images = [(x[row, i], f"given {i + 1}") for i in range(given)]
        images += [(generated[row, i], f"sample {i + 1}") for i in range(num_samples)]
        for col, (image, name) in enumerate(images):
            ax = axes[row * cols + col]
            ax.imshow(image.reshape(shape).float().cpu().numpy(), cmap="gray_r", vmin=0.0, vmax=1.0)
            _bare(ax, name, row == 0)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_statistician(
    model, untrained, sets, out: str | Path, num_datasets: int, seed: int, every_class=None, num_rows: int = 4
) -> list[Path]:
    """The figures of ``npkit plot`` for a statistician in folder ``out``: posterior means of
    ``num_datasets`` sets of ``sets`` for the untrained and the trained model (posterior-means.png)
    and, given ``every_class`` (the evaluation split with every class): for point sets,
    ``num_rows`` of its digits with their summaries and conditional samples
    (spatial-summaries.png); for sets of images (`ClassSets`), ``num_rows``
    sets with images generated given each (class-samples.png). Returns the paths written."""
    from npkit.evaluation.statistician import posterior_means, silhouette

    panels = {}
    for name, each in (("untrained", untrained), ("trained", model)):
        means, labels = posterior_means(each, sets, num_datasets, seed)
        panels[name] = (means, labels, silhouette(means, labels))
    names = getattr(sets, "families", None)
    source = getattr(sets, "source", type(sets).__name__)
    title = f"posterior means of c of {num_datasets} datasets ({source}, seed {seed}) by label"
    written = [plot_posterior_means(panels, Path(out) / "posterior-means.png", names=names, title=title)]
    if isinstance(every_class, ClassSets):
        rows = every_class.sample(num_rows, torch.Generator().manual_seed(seed))
        title = f"held-out {every_class.source} sets of digits {rows.labels.tolist()}: given images, then samples"
        shape = tuple(every_class.images.shape[-2:])
        written.append(
            plot_class_samples(model, rows.x, shape, Path(out) / "class-samples.png", seed=seed, title=title)
        )
    elif every_class is not None:
        rows = every_class.sample(num_rows, torch.Generator().manual_seed(seed))
        title = f"held-out {every_class.source} digits {rows.labels.tolist()}: 6-point summaries (x) and samples"
        written.append(
            plot_spatial_summaries(model, rows.x, Path(out) / "spatial-summaries.png", seed=seed, title=title)
        )
    return written
