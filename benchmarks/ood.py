"""Where a model's log-likelihood goes on a kernel: a few points with a tiny std, or all of them?

    python benchmarks/ood.py RUN [RUN ...] [--kernel periodic] [--eval-batches 300] [--seed 0]

For each trained run (and the exact GP oracle) on the cached gp1d evaluation set of ``--kernel``
(the gp1d benchmark's tasks: the first ``--eval-batches`` x 16 of them, seed ``--seed``), the
per-point marginal target log-likelihoods are pooled and summarised:

- ``tar_ll``: the benchmark's number on these batches (the mean over batches of the per-point
  mean, as ``npkit.evaluate``), the median over points and their quantiles 1% / 10%.
- ``worst 1% share``: the fraction of the model's total deficit against the oracle,
  sum_i (oracle_ll_i - model_ll_i), that its worst 1% of points carry. Near 0.01: the deficit is
  spread over every point; near 1: a few points carry it.
- ``abs(z) > 4``: the fraction of points whose standardised error |y - mean| / std exceeds 4 (a
  calibrated Gaussian: 6e-5); ``std ratio``: the median of the model's predictive std over the
  oracle's at the same point (< 1: over-confident).
- tar_ll by distance of the target to its nearest context point (< 0.1, 0.1-0.5, > 0.5), and
  within 0.1 of one the median predictive std, |error| and the oracle's std.

Beside the oracle, the GP prior with each task's true scale and noise and no context: what a
model that learnt the scale of the functions but nothing from the context would score.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from common import cpu_name  # sibling scripts: benchmarks/ is on sys.path

from npkit.baselines.gp import gp_posterior
from npkit.config import load_config
from npkit.data import make_sampler
from npkit.evaluation.metrics import cached_eval_set
from npkit.predictive import predict
from npkit.runs import RUN_CONFIG, checkpoint_state, latest_checkpoint, load_trained, model_dir
from npkit.train import default_threads

DISTANCES = ((0.0, 0.1), (0.1, 0.5), (0.5, float("inf")))


def oracle_points(evalset) -> dict[str, torch.Tensor]:
    """Per target point of every batch, pooled: the oracle's log-likelihood and std."""
    ll, std, index = [], [], []
    for i, (batch, gp) in enumerate(zip(evalset, evalset.gps)):
        mvn = gp_posterior(gp, batch.xc, batch.yc, batch.xt)
        point = torch.distributions.Normal(mvn.mean, mvn.variance.sqrt())
        ll.append(point.log_prob(batch.yt[..., 0].double()).flatten())
        std.append(mvn.variance.sqrt().flatten())
        index.append(torch.full_like(ll[-1], i, dtype=torch.long))
    return {"ll": torch.cat(ll), "std": torch.cat(std), "batch": torch.cat(index)}


def prior_points(evalset) -> dict[str, torch.Tensor]:
    """Per target point, pooled: the log-likelihood under the GP prior with each task's true scale
    and noise, the context ignored (what a model that learnt only the scale can reach)."""
    ll, index = [], []
    for i, (batch, gp) in enumerate(zip(evalset, evalset.gps)):
        std = (gp.scale.double() ** 2 + gp.noise_std**2).sqrt()[:, None]  # [B, 1]
        ll.append(torch.distributions.Normal(0.0, std).log_prob(batch.yt[..., 0].double()).flatten())
        index.append(torch.full_like(ll[-1], i, dtype=torch.long))
    return {"ll": torch.cat(ll), "batch": torch.cat(index)}


def model_points(model, evalset, num_samples: int = 50) -> dict[str, torch.Tensor]:
    """Per target point, pooled: the model's marginal log-likelihood, std, standardised error,
    and the distance of the target to its nearest context point."""
    ll, std, z, err, dist, index = [], [], [], [], [], []
    with torch.no_grad():
        for i, batch in enumerate(evalset):
            pred = predict(model, batch.xc, batch.yc, batch.xt, num_samples=num_samples)
            ll.append(pred.log_prob(batch.yt).flatten().double())
            s = pred.stddev[..., 0]
            std.append(s.flatten().double())
            e = (batch.yt[..., 0] - pred.mean[..., 0]).abs()  # not z * std: a Student-t's std can be inf
            err.append(e.flatten().double())
            z.append((e / s).flatten().double())
            gap = (batch.xt[..., 0].unsqueeze(-1) - batch.xc[..., 0].unsqueeze(-2)).abs()  # [B, Nt, Nc]
            dist.append(gap.min(-1).values.flatten().double())
            index.append(torch.full_like(ll[-1], i, dtype=torch.long))
    pooled = {"ll": ll, "std": std, "z": z, "err": err, "dist": dist, "batch": index}
    return {key: torch.cat(parts) for key, parts in pooled.items()}


def summary(points: dict[str, torch.Tensor], oracle: dict[str, torch.Tensor] | None) -> dict[str, float]:
    """The columns of the table (see the module docstring) from pooled per-point values."""
    ll, index = points["ll"], points["batch"]
    q = torch.quantile(ll, torch.tensor([0.01, 0.1, 0.5], dtype=ll.dtype))
    per_batch = torch.zeros(int(index.max()) + 1, dtype=ll.dtype).index_add_(0, index, ll) / index.bincount()
    out = {"tar_ll": per_batch.mean().item(), "q01": q[0].item(), "q10": q[1].item(), "median": q[2].item()}
    if oracle is not None:
        deficit = oracle["ll"] - ll
        worst = deficit.sort(descending=True).values[: max(1, len(deficit) // 100)]
        out["worst1_share"] = (worst.sum() / deficit.sum()).item()
        out["z4"] = (points["z"].abs() > 4).double().mean().item()
        out["std_ratio"] = (points["std"] / oracle["std"]).median().item()
        for low, high in DISTANCES:
            near = (points["dist"] >= low) & (points["dist"] < high)
            out[f"ll_{low}-{high}"] = ll[near].mean().item()
        near = points["dist"] < DISTANCES[0][1]
        out["near_std"] = points["std"][near].median().item()
        out["near_error"] = points["err"][near].median().item()
        out["near_oracle_std"] = oracle["std"][near].median().item()
    return out


def trained_steps(run: Path) -> int:
    """Steps the served model has trained: the run's budget once finished, else its latest checkpoint's."""
    if model_dir(run).is_dir():
        return load_config(run / RUN_CONFIG)["train"]["steps"]
    return int(checkpoint_state(latest_checkpoint(run))["step"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="trained run folders")
    parser.add_argument("--kernel", default="periodic", help="gp1d kernel of the evaluation tasks")
    parser.add_argument("--eval-batches", type=int, default=300, help="batches of 16 tasks")
    parser.add_argument("--seed", type=int, default=0, help="seed of the evaluation set (gp1d.py's: 0)")
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args()
    torch.set_num_threads(default_threads())
    evalset = cached_eval_set(
        make_sampler("gp1d", kernel=args.kernel), args.eval_batches, 16, args.seed, args.cache_dir
    )
    oracle = oracle_points(evalset)
    print(f"command: python benchmarks/ood.py {' '.join(sys.argv[1:])}")
    print(f"machine: {cpu_name()}; {args.kernel} tasks, {args.eval_batches} x 16 (seed {args.seed}), per target point")
    bins = " | ".join(f"tar_ll, dist {lo}-{hi}" for lo, hi in DISTANCES)
    head = "| run | steps | tar_ll | median | 1% | 10% | worst 1% share of deficit | share abs(z) > 4 | std ratio |"
    head += f" {bins} | near: std | near: abs error | near: oracle std |"
    print("\n" + head + "\n|" + "---|" * (head.count("|") - 1))
    for run in args.runs:
        s = summary(model_points(load_trained(run), evalset), oracle)
        cells = " | ".join(f"{s[f'll_{lo}-{hi}']:.2f}" for lo, hi in DISTANCES)
        steps = trained_steps(Path(run))
        name = f"{Path(run).parent.name}/{Path(run).name}"
        print(
            f"| {name} | {steps:,} | {s['tar_ll']:.3f} | {s['median']:.2f} | {s['q01']:.1f} | {s['q10']:.2f} "
            f"| {s['worst1_share']:.2f} | {s['z4']:.4f} | {s['std_ratio']:.2f} | {cells} "
            f"| {s['near_std']:.3f} | {s['near_error']:.3f} | {s['near_oracle_std']:.3f} |",
            flush=True,
        )
    s = summary(oracle, None)
    print(f"| GP oracle | - | {s['tar_ll']:.3f} | {s['median']:.2f} | {s['q01']:.1f} | {s['q10']:.2f} | - | - | 1 | |")
    s = summary(prior_points(evalset), None)
    row = f"| GP prior, true scale, context ignored | - | {s['tar_ll']:.3f} | {s['median']:.2f} | {s['q01']:.1f}"
    print(row + f" | {s['q10']:.2f} | - | - | - | |")


if __name__ == "__main__":
    main()
