"""Your own data: many small series in plain arrays, a Neural Process behind scikit-learn's fit /
predict (npkit.NPRegressor), saved and loaded again.

    python docs/tutorials/own-data.py [--steps N] [--out DIR]

The data are growth curves of 120 plants, made here (seeded, offline). 100 plants train the
model; each of the other 20 is predicted from its first 5 measurements, beside a GP fitted to
those 5 points alone. The defaults (1,500 steps of 16 plants) take about a minute on one CPU core.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

import npkit

FIGURES = Path(__file__).resolve().parent.parent / "figures" / "tutorials"
NUM_PLANTS, NUM_TRAIN, NUM_SEEN = 120, 100, 5


def growth_curves(num_plants: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of a long table: day [n], height in cm [n] (NaN: a missed measurement), plant [n].

    Each plant follows a logistic curve with its own final height, growth rate and midpoint,
    measured on 10-25 random days of 60, with 0.8 cm of measurement noise."""
    rng = np.random.default_rng(seed)
    days, heights, plants = [], [], []
    for plant in range(num_plants):
        day = np.sort(rng.choice(60, size=rng.integers(10, 26), replace=False)).astype(float)
        final, rate, midpoint = rng.uniform(20, 60), rng.uniform(0.1, 0.3), rng.uniform(15, 40)
        height = final / (1 + np.exp(-rate * (day - midpoint))) + rng.normal(0, 0.8, len(day))
        height[rng.random(len(day)) < 0.05] = np.nan  # a few missed measurements
        days.append(day), heights.append(height), plants.append(np.full(len(day), plant))
    return np.concatenate(days), np.concatenate(heights), np.concatenate(plants)


def fitted_gp(days_seen: np.ndarray, heights_seen: np.ndarray, days: np.ndarray) -> torch.distributions.Normal:
    """Per plant, a zero-mean RBF GP fitted to its seen points alone (around their mean, days in
    units of 10), the baseline that knows nothing of the other plants: its per-point predictive at
    the days [G], batch [plants, G], from the seen days and heights [plants, 5]."""
    as_tasks = lambda v: torch.as_tensor(v, dtype=torch.float64).reshape(len(days_seen), -1, 1)
    level = heights_seen.mean(1, keepdims=True)
    xc, yc = as_tasks(days_seen / 10), as_tasks(heights_seen - level)
    xq = as_tasks(np.tile(days / 10, (len(days_seen), 1)))
    gp = npkit.fit_gp(xc, yc, kernel="rbf")  # all plants at once, each with its own hyper-parameters
    post = npkit.gp_posterior(gp, xc, yc, xq)
    return torch.distributions.Normal(post.mean + torch.as_tensor(level), post.stddev)


def main(steps: int = 1500, out: str | Path = FIGURES) -> dict:
    out = Path(out)
    torch.set_num_threads(1)  # these networks are small: more threads gain little

    # Your data as a user has it: one row per measurement (X: the inputs, here the day, as a
    # column; y: the output) and a group label saying which function (plant) each row belongs to.
    day, height, plant = growth_curves(NUM_PLANTS)
    print(f"{len(day)} rows, {NUM_PLANTS} plants, {np.isnan(height).sum()} missed measurements (NaN)")
    train = plant < NUM_TRAIN

    # The estimator: inputs and outputs are standardised with the training rows' means and stds
    # (and mapped back in predictions), each task is one plant split into 3-15 context rows and
    # some targets, missing="mask" drops the NaN rows. seed makes the fit and the predictions
    # reproducible.
    est = npkit.NPRegressor(
        "anp",
        steps=steps,
        lr=1e-3,
        model_options={"hidden_dim": 64, "r_dim": 64, "z_dim": 32, "attention_layers": 1, "num_heads": 4},
        num_context=(3, 15),
        num_target=(5, 25),
        missing="mask",
        num_samples=16,
        seed=0,
    )
    est.fit(day[train, None], height[train], groups=plant[train])

    # Each held-out plant: its first 5 measurements are what we have seen (the context), the later
    # ones are to be predicted. predict returns a torch distribution over the heights in cm at the
    # days asked for; score is the mean log-likelihood per point of the given heights (nats).
    days = np.arange(60.0)
    held_out = []
    for p in range(NUM_TRAIN, NUM_PLANTS):
        rows = (plant == p) & ~np.isnan(height)
        held_out.append(
            ((day[rows][:NUM_SEEN], height[rows][:NUM_SEEN]), (day[rows][NUM_SEEN:], height[rows][NUM_SEEN:]))
        )
    predictions = [est.predict(days[:, None], context=(d_seen[:, None], h_seen)) for (d_seen, h_seen), _ in held_out]
    gp = fitted_gp(np.stack([seen[0] for seen, _ in held_out]), np.stack([seen[1] for seen, _ in held_out]), days)
    scores = {"NP (anp, NPRegressor)": [], "GP fitted per plant": []}
    for i, ((d_seen, h_seen), (d_new, h_new)) in enumerate(held_out):
        later, truth = d_new.astype(int), torch.as_tensor(h_new, dtype=torch.float64)
        np_ll = est.score(d_new[:, None], h_new, context=(d_seen[:, None], h_seen))
        gp_ll = torch.distributions.Normal(gp.mean[i, later], gp.stddev[i, later]).log_prob(truth).mean().item()
        scores["NP (anp, NPRegressor)"].append((np_ll, (predictions[i].mean[later] - truth).square().mean().item()))
        scores["GP fitted per plant"].append((gp_ll, (gp.mean[i, later] - truth).square().mean().item()))
    print(f"{NUM_PLANTS - NUM_TRAIN} held-out plants, first {NUM_SEEN} measurements seen, the later ones predicted")
    print(f"{'model':<24} {'log-lik / point':>16} {'MSE (cm²)':>10}")
    means = {name: np.mean(values, axis=0) for name, values in scores.items()}
    for name, (ll, mse) in means.items():
        print(f"{name:<24} {ll:>16.3f} {mse:>10.2f}")

    # Save and load: a folder with the model (safetensors + JSON) and the estimator's settings and
    # scaling; nothing is pickled. The reloaded estimator predicts exactly as the original.
    (d_seen, h_seen), _ = held_out[0]
    with tempfile.TemporaryDirectory() as folder:
        est.save(Path(folder) / "plants")
        loaded = npkit.NPRegressor.load(Path(folder) / "plants")
    before, after = (e.predict(days[:, None], context=(d_seen[:, None], h_seen)) for e in (est, loaded))
    reload_diff = max((before.mean - after.mean).abs().max().item(), (before.stddev - after.stddev).abs().max().item())
    print(f"reloaded estimator: largest difference in predictive mean and std {reload_diff:g}")

    # The figure: three held-out plants over the 60 days, the NP's mean and 2-std band with five
    # curves drawn jointly (one latent sample each, est.sample), and the fitted GP's.
    fig = Figure(figsize=(12, 3.6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3, sharey=True)
    for i, (ax, ((d_seen, h_seen), (d_new, h_new))) in enumerate(zip(axes, held_out)):
        draws = est.sample(days[:, None], context=(d_seen[:, None], h_seen), num_samples=5, seed=0)
        gp_i = torch.distributions.Normal(gp.mean[i], gp.stddev[i])
        for dist, color, label in ((gp_i, "C1", "GP fitted to the 5 points"), (predictions[i], "C0", "NP")):
            mean, std = dist.mean.numpy(), dist.stddev.numpy()
            ax.fill_between(days, mean - 2 * std, mean + 2 * std, color=color, alpha=0.2, lw=0)
            ax.plot(days, mean, color=color, lw=1.5, label=f"{label}: mean ± 2 std")
        ax.plot(days, draws.T.numpy(), color="C0", lw=0.6, alpha=0.7)
        ax.plot(d_new, h_new, "o", ms=3, mfc="none", mec="grey", label="later measurements")
        ax.plot(d_seen, h_seen, "ko", ms=4, label="seen (context)")
        ax.set_xlabel("day")
        ax.set_ylim(-20, 80)
    axes[0].set_ylabel("height (cm)")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=4, fontsize="small")
    fig.suptitle(f"held-out plants: NPRegressor (anp, {steps:,} steps) and a GP per plant, from 5 measurements")
    figure = out / "own-data-predictions.png"
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure)
    print(f"figure: {figure}")

    (np_ll, np_mse), (gp_ll, gp_mse) = means.values()
    return {
        "steps": steps,
        "np_log_lik": float(np_ll),
        "np_mse": float(np_mse),
        "gp_log_lik": float(gp_ll),
        "gp_mse": float(gp_mse),
        "reload_diff": reload_diff,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500, help="training steps (default 1500)")
    parser.add_argument("--out", type=Path, default=FIGURES, help="folder for the figures")
    args = parser.parse_args()
    main(args.steps, args.out)
