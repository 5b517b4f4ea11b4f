"""GP baselines on gp1d: the exact oracle beside a GP fitted per task by marginal likelihood.

    python benchmarks/gp_baselines.py --batches 20 --restarts 1 4

Per kernel, prints ctx_ll / tar_ll / tar_ll_joint of the oracle and of ``fit_gp`` with each
number of restarts, and the fitting time per batch of 16 tasks.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from npkit.data import make_sampler
from npkit.evaluation.metrics import evaluate_gp, make_eval_set

KERNELS = ("rbf", "matern52", "periodic")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=20, help="evaluation batches of 16 tasks per kernel")
    parser.add_argument("--restarts", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--steps", type=int, default=100, help="Adam steps of the fit")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    print(
        f"gp1d, {args.batches} x 16 tasks per kernel (seed {args.seed}), fit: {args.steps} Adam steps; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(f"command: python benchmarks/gp_baselines.py {' '.join(sys.argv[1:])}\n")
    print("| kernel | GP | ctx_ll | tar_ll | tar_ll_joint | ms per batch |\n|---|---|---|---|---|---|")
    for kernel in KERNELS:
        batches = make_eval_set(make_sampler("gp1d", kernel=kernel), args.batches, 16, args.seed)
        runs = [("oracle", "oracle", 1)] + [(f"fitted, {r} restart(s)", "fitted", r) for r in args.restarts]
        for label, kind, restarts in runs:
            start = time.perf_counter()
            m = evaluate_gp(batches, kind, fit_steps=args.steps, fit_restarts=restarts)
            ms = 1000 * (time.perf_counter() - start) / len(batches)
            scores = " | ".join(f"{m[k]:.2f}" for k in ("ctx_ll", "tar_ll", "tar_ll_joint"))
            print(f"| {kernel} | {label} | {scores} | {ms:.0f} |")


if __name__ == "__main__":
    main()
