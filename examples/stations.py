"""Bring your own data: daily temperatures of many weather stations, a Neural Process beside a GP
fitted to each station.

    python examples/stations.py [--steps N] [--out DIR]

The data are made here, seeded and offline, to look like the real thing: per station a mean
level, a yearly cycle of its own amplitude and phase, a warming trend, day-to-day weather that
persists (AR(1)), sensor noise, records that start on different days, gaps of weeks and scattered
missing days (NaN). 32 stations train an ``NPRegressor`` (rows: day -> temperature, one group per
station, NaN masked); on 8 held-out stations each model sees 20 observed days and predicts the
others. The defaults (a small ANP, 400 steps) run in well under a minute on one CPU thread; more
steps give a better NP.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch.distributions import Normal

from npkit.baselines.gp import fit_gp, gp_posterior
from npkit.data.gp import TrueGP
from npkit.estimator import NPRegressor

DAYS = 365
MODEL = {"hidden_dim": 48, "r_dim": 48, "z_dim": 32, "encoder_layers": 2, "decoder_layers": 3}
MODEL |= {"attention_layers": 1, "num_heads": 4}


def make_stations(num_stations: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows (day [n], temperature in deg C [n] with NaN where missing, station [n])."""
    rng = np.random.default_rng(seed)
    days, temps, stations = [], [], []
    for s in range(num_stations):
        day = np.arange(rng.integers(0, 90), DAYS, dtype=np.float64)  # records start on different days
        level, amplitude = rng.uniform(2, 18), rng.uniform(5, 13)
        peak, trend = rng.normal(200, 12), rng.normal(1.0, 0.7)  # trend: deg C over the year
        weather = np.zeros(len(day))
        shocks = rng.normal(0, 1.6, len(day))
        for i in range(1, len(day)):
            weather[i] = 0.8 * weather[i - 1] + shocks[i]
        temp = level + amplitude * np.cos(2 * np.pi * (day - peak) / DAYS) + trend * day / DAYS + weather
        temp += rng.normal(0, 0.5, len(day))
        missing = rng.random(len(day)) < 0.03
        for _ in range(rng.integers(0, 3)):  # sensor outages of one to four weeks
            start = rng.integers(0, len(day))
            missing[start : start + rng.integers(7, 28)] = True
        temp[missing] = np.nan
        days.append(day), temps.append(temp), stations.append(np.full(len(day), s))
    return np.concatenate(days), np.concatenate(temps), np.concatenate(stations)


def split_station(day, temp, rng, num_context: int = 20):
    """One held-out station: ``num_context`` observed days as context, the other observed days as targets."""
    seen = np.flatnonzero(~np.isnan(temp))
    context = np.sort(rng.choice(seen, num_context, replace=False))
    targets = np.setdiff1d(seen, context)
    return (day[context], temp[context]), (day[targets], temp[targets])


def gp_predictive(context, targets) -> Normal:
    """Per-point predictive of a zero-mean RBF GP fitted to this station's context (by marginal
    likelihood) after removing the context mean; x in years, so length scales start near 0.1-1."""
    (xc, yc), (xt, _) = context, targets
    level = yc.mean()
    as_task = lambda v: torch.as_tensor(v, dtype=torch.float64).view(1, -1, 1)
    xc_t, yc_t, xt_t = as_task(xc / DAYS), as_task(yc - level), as_task(xt / DAYS)
    gp = fit_gp(xc_t, yc_t, kernel="rbf", steps=100)
    post = gp_posterior(TrueGP("rbf", gp.scale, gp.length, None, gp.noise_std), xc_t, yc_t, xt_t)
    return Normal(post.mean[0] + level, post.covariance_matrix[0].diagonal().sqrt())


def scores(pred, truth: np.ndarray) -> tuple[float, float]:
    """Held-out log-likelihood per point (nats, deg C) and MSE (deg C^2)."""
    y = torch.as_tensor(truth, dtype=torch.float64)
    return pred.log_prob(y).mean().item(), ((pred.mean - y) ** 2).mean().item()


def figure(panels, path: Path) -> None:
    fig = Figure(figsize=(11, 6.5), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(panels), 1, sharex=True)
    grid = np.arange(DAYS, dtype=np.float64)
    for ax, (name, context, targets, np_pred, gp_pred) in zip(axes, panels):
        for pred, color, label in ((np_pred, "C0", "NP"), (gp_pred, "C1", "fitted GP")):
            mean, std = pred.mean.numpy(), pred.stddev.numpy()
            ax.plot(grid, mean, color=color, lw=1.5, label=f"{label} mean")
            ax.fill_between(grid, mean - 2 * std, mean + 2 * std, color=color, alpha=0.2, label=f"{label} ±2 sd")
        ax.plot(*targets, ".", color="0.55", ms=3, label="held-out days")
        ax.plot(*context, "o", color="k", ms=4, label="context (20 days)")
        ax.set_ylabel("°C")
        ax.set_title(name, fontsize=9, loc="left")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside upper center", ncol=6, fontsize=8)
    axes[-1].set_xlabel("day of the year")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400, help="NP training steps (default 400)")
    parser.add_argument("--out", type=Path, default=Path("stations-out"), help="folder for the figure and model")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()

    day, temp, station = make_stations(40, seed=0)
    train = station < 32
    est = NPRegressor(
        "anp",
        steps=args.steps,
        batch_size=16,
        lr=2e-3,
        model_options=MODEL,
        num_context=(3, 40),
        num_target=(10, 40),
        missing="mask",
        num_samples=16,
    )
    est.fit(day[train, None], temp[train], groups=station[train])
    est.save(args.out / "model")

    rng = np.random.default_rng(1)
    rows = {"NP (ANP, NPRegressor)": [], "fitted GP (RBF, per station)": []}
    panels = []
    for s in range(32, 40):
        here = station == s
        context, targets = split_station(day[here], temp[here], rng)
        np_pred = est.predict(targets[0][:, None], context=(context[0][:, None], context[1]))
        gp_pred = gp_predictive(context, targets)
        rows["NP (ANP, NPRegressor)"].append(scores(np_pred, targets[1]))
        rows["fitted GP (RBF, per station)"].append(scores(gp_pred, targets[1]))
        if s < 35:
            grid = np.arange(DAYS, dtype=np.float64)
            np_grid = est.predict(grid[:, None], context=(context[0][:, None], context[1]))
            panels.append((f"held-out station {s}", context, targets, np_grid, gp_predictive(context, (grid, None))))
    figure(panels, args.out / "byod-stations.png")

    print(f"8 held-out stations, 20 context days each, the other observed days scored ({args.steps} NP steps)")
    print(f"{'model':<30} {'log-lik / point':>16} {'MSE (°C²)':>10}")
    for name, values in rows.items():
        ll, mse = np.mean(values, axis=0)
        print(f"{name:<30} {ll:>16.3f} {mse:>10.2f}")
    print(f"figure: {args.out / 'byod-stations.png'}  model: {args.out / 'model'}")
    print(f"{time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
