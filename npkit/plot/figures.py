"""PNG figures: model predictions on 1D tasks, prior samples, image completions, training curves.

Figures are built with ``matplotlib.figure.Figure`` and the Agg canvas, so no pyplot state
or interactive backend is involved. Each ``plot_*`` function writes a PNG and returns its path;
the ``*_figure`` function behind it returns the ``Figure`` itself (for notebooks and tests).
Every figure has a title (``title``: say which model, data and training steps it shows) and
labelled axes.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

from npkit.autoregressive import ar_sample
from npkit.baselines.gp import gp_posterior
from npkit.data.gp import TrueGP
from npkit.data.images import ImageSampler, pixel_grid
from npkit.evaluation.completion import mean_pairwise_distance
from npkit.models.base import NeuralProcess
from npkit.predictive import SampleMixture, per_sample, predict, sample_functions
from npkit.rng import seeded
from npkit.tasks import Batch

DPI = 100
PANEL_SIZE = (4.0, 3.0)  # inches per subplot
MODEL_COLOR, ORACLE_COLOR = "C0", "C3"
ORACLE_POINTS_PER_FEATURE = 8  # oracle grid points per smallest feature of the GP's functions
MAX_ORACLE_GRID = 2000  # ~5 points per pixel of a 4-inch panel at 100 dpi
ORACLE_CHUNK = 256  # grid points per exact-GP solve (only the marginals are drawn)
SMOOTHING_WINDOW = 0.05  # default EMA window of the training curves: 5% of a series
MIN_SMOOTH_POINTS = 20  # shorter series (periodic evaluations) are drawn raw
RAW_ALPHA = 0.25  # the unsmoothed values, drawn faint behind the EMA
IMAGE_PANEL = 1.6  # inches per image panel of a completion figure
MIN_COMPLETION_WIDTH = 6.5  # inches: room for a two-line title over three columns
UNOBSERVED_COLOR = (0.0, 0.0, 1.0)  # pixels outside the context in the context panel (blue)
COMPLETION_MIXTURE_SAMPLES = 50  # z samples behind a latent model's predictive mean and std
STD_CMAP = "viridis"


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
    ax: Axes,
    x: Tensor,
    mean: Tensor,
    std: Tensor,
    color: str,
    label: str,
    lw: float = 1.5,
    band_alpha: float = 0.2,
    zorder: float = 2,
    alpha: float = 1.0,
) -> None:
    """Plot mean [N] over x [N] with a shaded 2-sigma band."""
    x, mean, std = x.cpu(), mean.cpu(), std.cpu()
    ax.fill_between(x, mean - 2 * std, mean + 2 * std, color=color, alpha=band_alpha, lw=0, zorder=zorder)
    ax.plot(x, mean, "-", color=color, lw=lw, alpha=alpha, label=label, zorder=zorder + 0.5)


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
    try:
        with seeded(seed), torch.no_grad():
            yield device
    finally:
        model.train(was_training)


def oracle_grid_size(gp: TrueGP, x_range: tuple[float, float], minimum: int = 200) -> int:
    """Grid points to draw the exact GP over ``x_range``: ``ORACLE_POINTS_PER_FEATURE`` per smallest
    feature of its functions, at least ``minimum`` and at most ``MAX_ORACLE_GRID``.

    The feature is the length scale; a periodic factor ``exp(-2 sin^2(pi d / p) / l^2)`` varies
    over ``p l / (2 pi)`` (``l`` capped at 1; ``l = 1`` for weakly periodic kernels), so periodic
    GPs with short periods get a much denser grid than RBF ones.
    """
    feature = gp.length.double()
    if gp.period is not None:
        relative = gp.length.double().clamp(max=1.0) if gp.kernel == "periodic" else 1.0
        feature = torch.minimum(feature, gp.period.double() * relative / (2 * math.pi))
    points = math.ceil((x_range[1] - x_range[0]) * ORACLE_POINTS_PER_FEATURE / feature.min().item()) + 1
    return max(minimum, min(points, MAX_ORACLE_GRID))


def _oracle_marginals(gp: TrueGP, xc: Tensor, yc: Tensor, grid: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and std [B, G] of the exact GP's predictive at grid [G], solved in chunks of the grid
    (each point's marginal does not depend on the other query points)."""
    means, stds = [], []
    for chunk in grid.to(xc.device).split(ORACLE_CHUNK):
        post = gp_posterior(gp, xc, yc, chunk[None, :, None].expand(xc.shape[0], -1, -1))
        means.append(post.mean)
        stds.append(post.variance.sqrt())
    return torch.cat(means, -1).float().cpu(), torch.cat(stds, -1).float().cpu()


def _first_tasks(gp: TrueGP, n: int) -> TrueGP:
    """``gp`` restricted to its first ``n`` tasks."""
    first = lambda t: t[:n] if isinstance(t, Tensor) and t.dim() else t
    return TrueGP(gp.kernel, first(gp.scale), first(gp.length), first(gp.period), first(gp.noise_std))


def _label_axes(ax: Axes, xlabel: str = "x", ylabel: str = "y") -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)


def predictions_figure(
    model: NeuralProcess,
    batch: Batch,
    num_tasks: int = 4,
    num_samples: int = 10,
    grid_size: int = 200,
    x_range: tuple[float, float] | None = None,
    gp: TrueGP | None = None,
    seed: int = 0,
    title: str | None = None,
    label: str | None = None,
    oracle_grid: int | None = None,
    autoregressive: int = 0,
) -> Figure:
    """The figure of `plot_predictions`."""
    _check_1d(model)
    if num_tasks < 1:
        raise ValueError(f"num_tasks must be >= 1, got {num_tasks}")
    label = label or model.name
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
    ar_grid, ar_draws = None, None
    if autoregressive and not model.is_latent:
        ar_grid = torch.linspace(*x_range, autoregressive, dtype=batch.xc.dtype)  # [P]
        with _predicting(model, seed) as device:
            order = torch.randperm(autoregressive)  # a random order: no drift from one side
            xq = ar_grid[order].to(device)[None, :, None].expand(n, -1, -1)
            draws = ar_sample(model, batch.xc[:n].to(device), batch.yc[:n].to(device), xq, num_samples, mask_c)
        ar_draws = draws[..., 0].cpu()[:, :, order.argsort()]  # [S, n, P], back in grid order
    # the oracle conditions on every context point, so it is skipped for ragged (masked) batches
    truth = None
    if gp is not None and batch.mask_c is None:
        gp = _first_tasks(gp, n)
        size = oracle_grid or oracle_grid_size(gp, x_range, minimum=grid_size)
        fine = torch.linspace(*x_range, size, dtype=torch.float64)  # [F]
        truth = _oracle_marginals(gp, batch.xc[:n], batch.yc[:n], fine)  # ([n, F], [n, F])

    fig, axes = _figure(n, max_cols=4)
    for i, ax in enumerate(axes):
        if truth is not None:  # thin and light, under the model
            oracle_mean, oracle_std = truth[0][i], truth[1][i]
            style = {"lw": 0.6, "alpha": 0.8, "band_alpha": 0.12, "zorder": 1}
            _mean_and_band(ax, fine, oracle_mean, oracle_std, ORACLE_COLOR, "GP oracle", **style)
        if model.is_latent:  # function samples exist for latent models only
            for s in range(samples.shape[0]):
                ax.plot(grid, samples[s, i], color=MODEL_COLOR, lw=0.6, alpha=0.5, label="samples" if s == 0 else None)
        if ar_draws is not None:
            for s in range(ar_draws.shape[0]):
                name = "autoregressive samples" if s == 0 else None
                ax.plot(ar_grid, ar_draws[s, i], color=MODEL_COLOR, lw=0.6, alpha=0.5, label=name)
        _mean_and_band(ax, grid, mean[i], std[i], MODEL_COLOR, f"{label} mean ± 2 std", zorder=2)
        keep_c = slice(None) if batch.mask_c is None else batch.mask_c[i].cpu()
        keep_t = slice(None) if batch.mask_t is None else batch.mask_t[i].cpu()
        xc, yc = batch.xc[i, keep_c, 0].cpu(), batch.yc[i, keep_c, 0].cpu()
        if batch.yt is not None:
            xt, yt = batch.xt[i, keep_t, 0].cpu(), batch.yt[i, keep_t, 0].cpu()
            ax.plot(xt, yt, "o", ms=3, mfc="none", mec="grey", label="targets", zorder=4)
        ax.plot(xc, yc, "ko", ms=4, label="context", zorder=5)
        ax.set_title(f"task {i}: Nc = {xc.shape[0]}{_hyper_parameters(gp, i)}", fontsize="medium")
        ax.set_xlim(*x_range)
        _label_axes(ax)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncols=len(names), fontsize="small")
    fig.suptitle(title or f"{label}: predictions")
    return fig


def _hyper_parameters(gp: TrueGP | None, i: int) -> str:
    """``, l = 0.23[, p = 0.31]`` for task ``i`` of ``gp`` (empty without one)."""
    if gp is None or i >= gp.length.shape[0]:
        return ""
    text = f", l = {gp.length[i].item():.2f}"
    return text if gp.period is None else text + f", p = {gp.period[i].item():.2f}"


def plot_predictions(model: NeuralProcess, batch: Batch, path: str | Path, **options) -> Path:
    """Plot a 1D model's predictions on a batch, one panel per task, as a PNG.

    Each panel shows the predictive on a grid of ``grid_size`` inputs over ``x_range``
    (default: the batch's inputs padded by 10%), the context and the targets. Deterministic
    models: mean and 2-sigma band. Latent models: ``num_samples`` function samples (one z each,
    thin lines) and the mean and 2-sigma band of their mixture. With ``gp``, the GP that
    generated the batch (``sampler.sample_with_truth``), the exact GP's mean and 2-sigma band
    are drawn thin and light in red, on a grid of ``oracle_grid`` points (default:
    ``npkit.plot.figures.oracle_grid_size``, dense enough for short periods). x_dim = y_dim = 1.

    Args:
        model: the model (x_dim = y_dim = 1).
        batch: the tasks; the first ``num_tasks`` are drawn.
        path: the PNG file to write (folders are created).
        **options (Any): the options of ``npkit.plot.figures.predictions_figure``: ``num_tasks``
            (default 4), ``num_samples`` (10), ``grid_size`` (200), ``x_range``, ``gp``,
            ``seed`` (0; the predictions' random draws), ``title`` (say the model, data and
            training steps; default ``"<label>: predictions"``), ``label`` (the model's name
            in the legend; default ``model.name``), ``oracle_grid`` and ``autoregressive``
            (for a deterministic model, that many grid points at which ``num_samples``
            functions are drawn autoregressively, ``npkit.ar_sample``, in a random order).

    Returns:
        ``path`` as a ``Path``.

    Examples:
        >>> batch, gp = npkit.make_sampler("gp1d").sample_with_truth(4)
        >>> npkit.plot_predictions(model, batch, "figures/np.png", gp=gp, title="np, 2000 steps")
    """
    return _save(predictions_figure(model, batch, **options), path)


def prior_figure(
    model: NeuralProcess,
    num_samples: int = 8,
    x_range: tuple[float, float] = (-2, 2),
    grid_size: int = 200,
    seed: int = 0,
    title: str | None = None,
) -> Figure:
    """The figure of `plot_prior_samples`."""
    _check_1d(model)
    grid = torch.linspace(*x_range, grid_size)  # [G]
    with _predicting(model, seed) as device:
        empty = torch.zeros(1, 0, 1, device=device)
        pred = model(empty, empty, grid.to(device)[None, :, None], num_samples=num_samples)
    components = per_sample(model, pred)  # batch [S, 1, G]

    fig, (ax,) = _figure(1, max_cols=1)
    if model.is_latent:  # function samples exist for latent models only
        samples = components.mean[:, 0, :, 0].cpu()  # [S, G]
        for s in range(samples.shape[0]):
            ax.plot(grid, samples[s], lw=1)
        ax.set_title(f"{samples.shape[0]} function samples, empty context", fontsize="medium")
    else:
        marginal = SampleMixture(components)  # batch [1, G]
        _mean_and_band(ax, grid, marginal.mean[0, :, 0], marginal.stddev[0, :, 0], MODEL_COLOR, "mean ± 2 std")
        ax.set_title("predictive, empty context", fontsize="medium")
        ax.legend(fontsize="small")
    ax.set_xlim(*x_range)
    _label_axes(ax)
    fig.suptitle(title or f"{model.name}: prior")
    return fig


def plot_prior_samples(
    model: NeuralProcess,
    path: str | Path,
    num_samples: int = 8,
    x_range: tuple[float, float] = (-2, 2),
    grid_size: int = 200,
    seed: int = 0,
    title: str | None = None,
) -> Path:
    """Plot a 1D model's predictive given an empty context, e.g. of an untrained model, as a PNG.

    Latent models: ``num_samples`` function samples (one z each); deterministic ones: the mean
    and 2-sigma band.

    Args:
        model: the model (x_dim = y_dim = 1).
        path: the PNG file to write (folders are created).
        num_samples: function samples of a latent model.
        x_range: (low, high) of the inputs drawn.
        grid_size: grid points over ``x_range``.
        seed: seeds the random draws (the caller's random state is left untouched).
        title: heads the figure: say whether the model is untrained or after how many steps
            (None: ``"<model.name>: prior"``).

    Returns:
        ``path`` as a ``Path``.
    """
    return _save(prior_figure(model, num_samples, x_range, grid_size, seed, title), path)


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


def ema(values: Sequence[float], smoothing: float) -> list[float]:
    """Exponential moving average: ``s_0 = v_0``, ``s_t = smoothing s_{t-1} + (1 - smoothing) v_t``."""
    if not 0 <= smoothing < 1:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    out: list[float] = []
    for v in values:
        out.append(v if not out else smoothing * out[-1] + (1 - smoothing) * v)
    return out


def _monotone(values: Sequence[float]) -> bool:
    """Never decreasing or never increasing (a schedule such as the learning rate, not noise)."""
    steps = [b - a for a, b in zip(values, values[1:])]
    return all(d >= 0 for d in steps) or all(d <= 0 for d in steps)


def default_smoothing(num_points: int) -> float:
    """The EMA weight ``w`` whose window ``1 / (1 - w)`` is ``SMOOTHING_WINDOW`` of ``num_points``,
    within [0.6, 0.99]: about the same share of a short or a long run is averaged."""
    return min(0.99, max(0.6, 1 - 1 / (SMOOTHING_WINDOW * num_points)))


def training_curves_figure(csv_path: str | Path, title: str | None = None, smoothing: float | None = None) -> Figure:
    """The figure of `plot_training_curves`."""
    metrics = read_metrics(csv_path)
    if not metrics:
        raise ValueError(f"{csv_path} has no numeric metric columns besides 'step'")
    fig, axes = _figure(len(metrics), max_cols=3)
    for ax, (name, (steps, values)) in zip(axes, metrics.items()):
        few = len(values) < MIN_SMOOTH_POINTS
        weight = default_smoothing(len(values)) if smoothing is None else smoothing
        if weight > 0 and not few and not _monotone(values):
            ax.plot(steps, values, "-", color=MODEL_COLOR, lw=0.8, alpha=RAW_ALPHA, label="raw")
            ax.plot(steps, ema(values, weight), "-", color=MODEL_COLOR, lw=1.5, label=f"EMA ({weight:.3g})")
            ax.legend(fontsize="small")
        else:  # evaluations (few points) and schedules (monotone) are drawn as they are
            ax.plot(steps, values, ".-" if few else "-", color=MODEL_COLOR, ms=4, lw=1)
        ax.set_title(name, fontsize="medium")
        _label_axes(ax, "step", name)
    last = max(steps[-1] for steps, _ in metrics.values())
    fig.suptitle(title or f"training curves, {last:,} steps")
    return fig


def plot_training_curves(
    csv_path: str | Path, path: str | Path, title: str | None = None, smoothing: float | None = None
) -> Path:
    """Plot the training curves of a run's CSV log as a PNG, one panel per metric, x = step.

    Every numeric column is a panel (``npkit.plot.figures.read_metrics``: empty cells skipped, a step
    logged again keeps its last value). Noisy series (at least ``MIN_SMOOTH_POINTS`` values, not
    monotone) are drawn as an exponential moving average over the raw values, drawn faint;
    shorter ones (evaluations) as points, schedules (lr) as they are.

    Args:
        csv_path: the CSV log with a ``step`` column (``run_dir/logs/version_0/metrics.csv``).
        path: the PNG file to write (folders are created).
        title: heads the figure: say the model, data and steps (None: ``"training curves,
            <last step> steps"``).
        smoothing: the EMA weight in [0, 1) (0: no smoothing; None: about 5% of each series,
            ``npkit.plot.figures.default_smoothing``).

    Returns:
        ``path`` as a ``Path``.
    """
    return _save(training_curves_figure(csv_path, title, smoothing), path)


def completion_context_sizes(num_pixels: int) -> tuple[int | None, ...]:
    """Context sizes for completion figures of images of ``num_pixels`` pixels: 10, 100, 300
    and all pixels for images larger than 300 pixels (MNIST), else about 5%, 15% and 50% of the
    pixels and all of them (3, 10, 32 and all 64 for the 8x8 digits)."""
    if num_pixels > 300:
        return (10, 100, 300, None)
    return (max(1, round(num_pixels * 0.05)), max(1, round(num_pixels * 0.15)), num_pixels // 2, None)


def _check_image(model: NeuralProcess, image: Tensor) -> None:
    cfg = model.config
    if not isinstance(image, Tensor) or image.dim() != 3 or image.shape[0] not in (1, 3):
        got = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise ValueError(f"image must be a tensor [C, H, W] with C = 1 (grey) or 3 (RGB), got {got}")
    if (cfg.x_dim, cfg.y_dim) != (2, image.shape[0]):
        raise ValueError(
            f"completing a {image.shape[0]}-channel image needs x_dim = 2 and y_dim = {image.shape[0]}, "
            f"got x_dim={cfg.x_dim}, y_dim={cfg.y_dim}"
        )
    if image.min() < 0 or image.max() > 1:
        raise ValueError("image must have values in [0, 1]")


def _context_counts(context_sizes: Sequence[int | None], num_pixels: int) -> list[int]:
    """The context sizes as pixel counts: None -> all, larger ones clipped to ``num_pixels``,
    repeats (after clipping) dropped, order kept."""
    counts: list[int] = []
    for size in context_sizes:
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            raise ValueError(f"context sizes must be ints >= 0 or None (all pixels), got {size!r}")
        count = num_pixels if size is None else min(size, num_pixels)
        if count not in counts:
            counts.append(count)
    if not counts:
        raise ValueError("context_sizes is empty")
    return counts


def _show(ax: Axes, pixels: Tensor, **options):
    """imshow of pixels [H, W, C] (C = 1 grey, 3 RGB) in [0, 1], no ticks."""
    pixels = pixels.clamp(0, 1).cpu().numpy()
    if pixels.shape[-1] == 1:
        image = ax.imshow(pixels[..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest", **options)
    else:
        image = ax.imshow(pixels, interpolation="nearest", **options)
    ax.set_xticks([])
    ax.set_yticks([])
    return image


def completion_figure(
    model: NeuralProcess,
    sampler: ImageSampler,
    image: Tensor,
    context_sizes: Sequence[int | None] = (10, 100, 300, None),
    num_samples: int = 5,
    seed: int = 0,
    title: str | None = None,
) -> Figure:
    """The figure of `plot_completion`."""
    _check_image(model, image)
    if num_samples < 0:
        raise ValueError(f"num_samples must be >= 0, got {num_samples}")
    channels, height, width = image.shape
    pixels = height * width
    counts = _context_counts(context_sizes, pixels)
    grid = pixel_grid(height, width, sampler.coords)  # [HW, 2]
    values = image.float().reshape(channels, pixels).T  # [HW, C]
    shift = 0.5 if sampler.values == "centered" else 0.0
    order = torch.randperm(pixels, generator=torch.Generator().manual_seed(seed))  # nested contexts
    samples_shown = num_samples if model.is_latent else 0

    rows = []  # per row: (count, context panel, mean, std, samples), images [H, W, C]
    to_pixels = lambda t: t.reshape(height, width, -1).float().cpu()  # [HW, C] -> [H, W, C]
    with _predicting(model, seed) as device:
        xt = grid.to(device)[None]  # [1, HW, 2]
        for count in counts:
            chosen = order[:count]
            xc, yc = xt[:, chosen], (values[chosen] - shift).to(device)[None]
            options = {"num_samples": COMPLETION_MIXTURE_SAMPLES} if model.is_latent else {}
            pred = predict(model, xc, yc, xt, **options)
            mean, std = pred.mean[0] + shift, pred.stddev[0]  # [HW, C]
            draws = (
                sample_functions(model, xc, yc, xt, num_samples=samples_shown)[:, 0] + shift
                if samples_shown
                else torch.zeros(0, pixels, channels)
            )
            observed = torch.zeros(pixels, dtype=torch.bool)
            observed[chosen] = True
            context = torch.tensor(UNOBSERVED_COLOR).expand(pixels, 3).clone()
            context[observed] = values[observed].expand(-1, 3) if channels == 1 else values[observed]
            rows.append((count, to_pixels(context), to_pixels(mean), to_pixels(std), [to_pixels(d) for d in draws]))

    cols = 3 + samples_shown
    width = max(IMAGE_PANEL * cols + 0.8, MIN_COMPLETION_WIDTH)
    fig = Figure(figsize=(width, IMAGE_PANEL * len(rows) + 0.8), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), cols, squeeze=False)
    # one colour scale for every std panel (so rows compare): 0 to the largest std shown
    std_max = max(std.max().item() for _, _, _, std, _ in rows) or 1.0
    std_name = "std" if channels == 1 else "std (RMS over channels)"
    for r, (count, context, mean, std, draws) in enumerate(rows):
        row = axes[r]
        _show(row[0], context)
        _show(row[1], mean)
        std_map = std.square().mean(-1, keepdim=True).sqrt()  # [H, W, 1]
        std_image = row[2].imshow(std_map[..., 0].numpy(), cmap=STD_CMAP, vmin=0, vmax=std_max, interpolation="nearest")
        row[2].set_xticks([])
        row[2].set_yticks([])
        for s, draw in enumerate(draws):
            _show(row[3 + s], draw)
        label = f"all {pixels} pixels" if count == pixels else f"{count} pixels"
        if len(draws) >= 2:  # how far apart the samples are: diverse at few pixels, converging at all
            label += f"\nsample spread {mean_pairwise_distance(torch.stack(draws)[:, None].flatten(2, 3)).item():.3f}"
        row[0].set_ylabel(label, fontsize="small")
        if r == 0:
            headers = ["context (blue: unobserved)", "predictive mean", std_name]
            headers += [f"sample {s + 1}" for s in range(len(draws))]
            for ax, header in zip(row, headers):
                ax.set_title(header, fontsize="small")
    fig.colorbar(std_image, ax=list(axes.flat), shrink=0.8, aspect=30, label=f"predictive {std_name} (column 3)")
    fig.suptitle(title or f"{model.name}: completion of a {sampler.source} image", wrap=True)
    return fig


def plot_completion(
    model: NeuralProcess,
    sampler: ImageSampler,
    image: Tensor,
    path: str | Path,
    context_sizes: Sequence[int | None] = (10, 100, 300, None),
    num_samples: int = 5,
    seed: int = 0,
    title: str | None = None,
) -> Path:
    """Plot image completions from growing contexts as a PNG: one row per context size.

    Each context is a random set of that many pixels (None: all of them; larger sizes are
    clipped to H * W and repeats dropped), the contexts nested (the first pixels of one
    permutation drawn with ``seed``). The model is queried at all H * W pixels in ``sampler``'s
    coordinate convention, and its values mapped back with the sampler's value convention
    (centred values + 0.5), clipped to [0, 1] for display. Columns: the context (unobserved
    pixels in blue), the predictive mean, the predictive std (one colour scale for the column,
    with a colourbar on the right; RGB: the RMS over channels) and, for latent models, ``num_samples``
    function samples (one z each, the z-conditional mean), the row label giving their mean
    pairwise RMS distance (``npkit.evaluation.completion.mean_pairwise_distance``). A latent model's mean and std are
    those of the mixture over ``COMPLETION_MIXTURE_SAMPLES`` z.

    Args:
        model: a model of images with x_dim = 2 and y_dim = channels.
        sampler: the `ImageSampler` whose coordinate and value conventions the model
            was trained with.
        image: the image `[channels, height, width]` (1 grey or 3 RGB), values in [0, 1].
        path: the PNG file to write (folders are created).
        context_sizes: context pixel counts, one row each (None: every pixel).
        num_samples: function samples shown per row (latent models).
        seed: seeds the pixel permutation and the random draws.
        title: heads the figure: say the model, data and training steps (None: the model and
            the sampler's source).

    Returns:
        ``path`` as a ``Path``.
    """
    return _save(completion_figure(model, sampler, image, context_sizes, num_samples, seed, title), path)


def fractions_figure(results: dict[str, dict[float, dict[str, float]]], title: str | None = None) -> Figure:
    """The figure of `plot_fractions`."""
    fig, axes = _figure(2, 2)
    for name, per in results.items():
        fractions = sorted(per)
        percent = [100 * f for f in fractions]
        ll = [per[f]["tar_ll"] for f in fractions]
        se = [per[f].get("tar_ll_se", math.nan) for f in fractions]
        se = [0.0 if not math.isfinite(e) else e for e in se]
        axes[0].errorbar(percent, ll, yerr=se, marker="o", capsize=3, label=name)
        axes[1].plot(percent, [per[f]["mse"] for f in fractions], marker="o", label=name)
    for ax, ylabel in zip(axes, ("per-pixel log-likelihood (all pixels)", "MSE (all pixels)")):
        ax.set_xscale("log")
        ax.set_xlabel("context: % of pixels observed")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    finite = [v for per in results.values() for m in per.values() for v in [m["tar_ll"]] if math.isfinite(v)]
    if finite:  # a baseline's -60 at 1 % would flatten every other curve: clip the view, not the data
        best = max(finite)
        lowest = sorted(finite)[len(finite) // 10]  # the 10th percentile
        axes[0].set_ylim(lowest - 0.1 * (best - lowest) - 0.1, best + 0.1 * (best - lowest) + 0.1)
    axes[1].legend(fontsize="small")
    if title:
        fig.suptitle(title, wrap=True)
    return fig


def plot_fractions(
    results: dict[str, dict[float, dict[str, float]]], path: str | Path, title: str | None = None
) -> Path:
    """Plot log-likelihood and MSE against the fraction of observed pixels as a PNG.

    Per-pixel log-likelihood (with its standard error over batches) and MSE against the
    fraction of observed pixels (log axis), one line per method. The log-likelihood axis is
    clipped near the 10th percentile of the values so that one very poor value (kNN at 1 %)
    does not flatten the rest.

    Args:
        results: {method: {fraction: metrics}}, as `npkit.evaluate_fractions` returns.
        path: the PNG file to write (folders are created).
        title: heads the figure (None: no title).

    Returns:
        ``path`` as a ``Path``.
    """
    return _save(fractions_figure(results, title), path)
