"""PNG figures: model predictions on 1D tasks, prior samples, training curves.

Figures are built with ``matplotlib.figure.Figure`` and the Agg canvas, so no pyplot state
or interactive backend is involved. Every function returns the path it wrote.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

from npkit.baselines.gp import gp_posterior
from npkit.data.gp import TrueGP
from npkit.models.base import NeuralProcess
from npkit.predictive import SampleMixture, per_sample
from npkit.tasks import Batch

DPI = 100
PANEL_SIZE = (4.0, 3.0)  # inches per subplot


def _figure(num_panels: int, max_cols: int) -> tuple[Figure, list[Axes]]:
    """A figure with ``num_panels`` subplots in rows of at most ``max_cols``; spare cells hidden."""
    cols = min(num_panels, max_cols)
    rows = math.ceil(num_panels / cols)
    size = (PANEL_SIZE[0] * cols, PANEL_SIZE[1] * rows)
    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = list(fig.subplots(rows, cols, squeeze=False).flat)
    for ax in axes[num_panels:]:
        ax.set_visible(False)
    return fig, axes[:num_panels]


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI)
    return path


def _mean_and_band(
    ax: Axes, x: Tensor, mean: Tensor, std: Tensor, color: str, label: str, dashed: bool = False
) -> None:
    """Plot mean [N] over x [N] with a 2-sigma band: shaded, or dashed edges when ``dashed``."""
    x, mean, std = x.cpu(), mean.cpu(), std.cpu()
    style = "--" if dashed else "-"
    ax.plot(x, mean, style, color=color, lw=1.5, label=label)
    if dashed:
        ax.plot(x, mean - 2 * std, style, color=color, lw=0.8)
        ax.plot(x, mean + 2 * std, style, color=color, lw=0.8)
    else:
        ax.fill_between(x, mean - 2 * std, mean + 2 * std, color=color, alpha=0.2, lw=0)


def _check_1d(model: NeuralProcess) -> None:
    cfg = model.config
    if (cfg.x_dim, cfg.y_dim) != (1, 1):
        raise ValueError(f"plots support x_dim = y_dim = 1 only, got x_dim={cfg.x_dim}, y_dim={cfg.y_dim}")


@contextmanager
def _predicting(model: NeuralProcess, seed: int) -> Iterator[torch.device]:
    """Eval mode, no grad and a seeded RNG that leaves the caller's RNG state untouched.
    Yields the model's device; restores the model's training mode afterwards."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(seed)
            yield device
    finally:
        model.train(was_training)


def plot_predictions(
    model: NeuralProcess,
    batch: Batch,
    path: str | Path,
    num_tasks: int = 4,
    num_samples: int = 10,
    grid_size: int = 200,
    x_range: tuple[float, float] | None = None,
    gp: TrueGP | None = None,
    seed: int = 0,
) -> Path:
    """One panel per task (the first ``num_tasks``): the predictive on a grid of ``grid_size``
    inputs over ``x_range`` (default: the batch's inputs padded by 10%), context and targets.

    Deterministic models: mean and 2-sigma band. Latent models: ``num_samples`` function samples
    (one z each, thin lines) and the mean and 2-sigma band of their mixture. With ``gp``, the GP
    that generated the batch (``sampler.sample_with_truth``), the exact GP's mean and 2-sigma
    band are drawn dashed.
    """
    _check_1d(model)
    if num_tasks < 1:
        raise ValueError(f"num_tasks must be >= 1, got {num_tasks}")
    n = min(num_tasks, batch.batch_size)
    if x_range is None:
        lo, hi = batch.x[:n].min().item(), batch.x[:n].max().item()
        pad = 0.1 * (hi - lo) or 1.0
        x_range = (lo - pad, hi + pad)
    grid = torch.linspace(*x_range, grid_size, dtype=batch.xc.dtype)  # [G]

    with _predicting(model, seed) as device:
        xq = grid.to(device)[None, :, None].expand(n, -1, -1)  # [n, G, 1]
        mask_c = None if batch.mask_c is None else batch.mask_c[:n].to(device)
        pred = model(batch.xc[:n].to(device), batch.yc[:n].to(device), xq, num_samples=num_samples, mask_c=mask_c)
    components = per_sample(model, pred)  # batch [S, n, G]
    marginal = SampleMixture(components)  # batch [n, G]
    mean, std = marginal.mean[..., 0].cpu(), marginal.stddev[..., 0].cpu()  # [n, G]
    samples = components.mean[..., 0].cpu()  # [S, n, G]
    # the oracle conditions on every context point, so it is skipped for ragged (masked) batches
    truth = None
    if gp is not None and batch.mask_c is None:
        grid_b = grid.to(batch.xc.device)[None, :, None].expand(batch.batch_size, -1, -1)
        truth = gp_posterior(gp, batch.xc, batch.yc, grid_b)  # batch [B], event [G]

    fig, axes = _figure(n, max_cols=4)
    for i, ax in enumerate(axes):
        if model.is_latent:
            for s in range(samples.shape[0]):
                ax.plot(grid, samples[s, i], color="C0", lw=0.6, alpha=0.5, label="samples" if s == 0 else None)
        _mean_and_band(ax, grid, mean[i], std[i], "C0", type(model).__name__)
        if truth is not None:
            _mean_and_band(
                ax, grid, truth.mean[i].float(), truth.variance[i].sqrt().float(), "C3", "GP oracle", dashed=True
            )
        keep_c = slice(None) if batch.mask_c is None else batch.mask_c[i].cpu()
        keep_t = slice(None) if batch.mask_t is None else batch.mask_t[i].cpu()
        xc, yc = batch.xc[i, keep_c, 0].cpu(), batch.yc[i, keep_c, 0].cpu()
        if batch.yt is not None:
            ax.plot(
                batch.xt[i, keep_t, 0].cpu(),
                batch.yt[i, keep_t, 0].cpu(),
                "o",
                ms=3,
                mfc="none",
                mec="grey",
                label="targets",
            )
        ax.plot(xc, yc, "ko", ms=4, label="context")
        ax.set_title(f"task {i}: Nc = {xc.shape[0]}")
        ax.set_xlim(*x_range)
    axes[0].legend(fontsize="small")
    return _save(fig, path)


def plot_prior_samples(
    model: NeuralProcess,
    path: str | Path,
    num_samples: int = 8,
    x_range: tuple[float, float] = (-2, 2),
    grid_size: int = 200,
    seed: int = 0,
) -> Path:
    """The predictive given an empty context (xc, yc of shape [1, 0, 1]), e.g. of an untrained
    model: ``num_samples`` function samples (one z each) for latent models, the mean and 2-sigma
    band for deterministic ones."""
    _check_1d(model)
    grid = torch.linspace(*x_range, grid_size)  # [G]
    with _predicting(model, seed) as device:
        empty = torch.zeros(1, 0, 1, device=device)
        pred = model(empty, empty, grid.to(device)[None, :, None], num_samples=num_samples)
    means, stds = pred.mean[..., 0, :, 0].cpu(), pred.stddev[..., 0, :, 0].cpu()  # [(S,) G]

    fig, (ax,) = _figure(1, max_cols=1)
    if model.is_latent:
        for s in range(means.shape[0]):
            ax.plot(grid, means[s], lw=1)
        ax.set_title(f"{type(model).__name__}: {num_samples} prior function samples")
    else:
        _mean_and_band(ax, grid, means, stds, "C0", "mean ± 2 std")
        ax.set_title(f"{type(model).__name__}: prior predictive")
        ax.legend(fontsize="small")
    ax.set_xlim(*x_range)
    return _save(fig, path)


def read_metrics(csv_path: str | Path) -> dict[str, tuple[list[int], list[float]]]:
    """Metric name -> (steps, values), steps ascending, from a CSV with a ``step`` column.

    Empty cells are skipped (metrics are logged at different frequencies); columns with a
    non-numeric cell, or no values, are dropped. A step logged again (a resumed run) keeps, per
    metric, the value of the last row that has one.
    """
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    header = reader.fieldnames or []
    if "step" not in header:
        raise ValueError(f"{csv_path} has no 'step' column (columns: {header})")
    if not rows:
        raise ValueError(f"{csv_path} has no rows")
    stepped = []  # (step, row) for rows with a step
    for row in rows:
        cell = (row["step"] or "").strip()
        if cell:
            try:
                stepped.append((int(float(cell)), row))
            except ValueError:
                raise ValueError(f"{csv_path}: step {cell!r} is not a number") from None

    metrics: dict[str, tuple[list[int], list[float]]] = {}
    for name in [h for h in header if h != "step"]:
        cells = [(step, (row.get(name) or "").strip()) for step, row in stepped]
        try:
            by_step = {step: float(cell) for step, cell in cells if cell}  # later rows win
        except ValueError:
            continue  # a non-numeric column
        if by_step:
            steps = sorted(by_step)
            metrics[name] = (steps, [by_step[s] for s in steps])
    return metrics


def plot_training_curves(csv_path: str | Path, path: str | Path) -> Path:
    """One panel per numeric metric column of ``csv_path`` (see :func:`read_metrics`), x = step."""
    metrics = read_metrics(csv_path)
    if not metrics:
        raise ValueError(f"{csv_path} has no numeric metric columns besides 'step'")
    fig, axes = _figure(len(metrics), max_cols=3)
    for ax, (name, (steps, values)) in zip(axes, metrics.items()):
        ax.plot(steps, values, ".-", ms=3, lw=1)
        ax.set_title(name)
        ax.set_xlabel("step")
    return _save(fig, path)
