"""gp1d benchmark (BENCHMARKS.md section 1): CNP, latent CNP, NP and ANP beside the GP oracle.

    python benchmarks/gp1d.py --steps 5000 [--models cnp np] [--eval-batches 100]

Each model trains in its own process (so peak RSS is its own) through ``npkit.fit`` on RBF
tasks (batch 16, Adam 5e-4, cosine over the budget), then is evaluated on fixed seeded
evaluation sets for RBF, Matern 5/2 and periodic kernels. ``step ms`` is the median of
isolated training steps on pre-drawn batches (data generation excluded); ``fit ms`` is the
wall time per step of the whole ``fit`` loop, data included.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time

import torch
from step_time import median_step_ms  # sibling script: benchmarks/ is on sys.path

from npkit.data import make_sampler
from npkit.evaluation import cached_eval_set, evaluate, evaluate_gp
from npkit.models import build_model
from npkit.objectives import get_objective
from npkit.train import fit

KERNELS = ("rbf", "matern52", "periodic")
WIDTH = dict(hidden_dim=128, r_dim=128)
LATENT_WIDTH = dict(z_dim=128)


def objective_of(model) -> tuple[str, dict]:
    """The bound the gp1d presets train with: nll, or the 4-sample importance-weighted bound with
    proposal q(z | C ∪ T) for latent models (as the BNP/TNP reference code)."""
    return ("iwae", {"num_samples": 4}) if model.is_latent else ("nll", {})


def make_model(name: str):
    torch.manual_seed(0)
    return build_model(name, **WIDTH, **(LATENT_WIDTH if name != "cnp" else {}))


def eval_set(kernel: str, args: argparse.Namespace) -> list:
    """The cached, seeded evaluation set of one kernel (the same for every model)."""
    return cached_eval_set(make_sampler("gp1d", kernel=kernel), args.eval_batches, 16, args.seed, args.cache_dir)


def worker(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    model = make_model(args.worker)
    name, options = objective_of(model)
    objective = get_objective(name, model, **options)
    sampler = make_sampler("gp1d", kernel="rbf")
    generator = torch.Generator().manual_seed(99)
    timing_model = make_model(args.worker)
    step_ms = median_step_ms(timing_model, objective, [sampler.sample(16, generator) for _ in range(55)])
    start = time.perf_counter()
    fit(model, sampler, name, options, steps=args.steps, batch_size=16, lr=5e-4, threads=args.threads, progress=False)
    fit_ms = 1000 * (time.perf_counter() - start) / args.steps
    scores = {}
    for kernel in KERNELS:
        scores[kernel] = evaluate(model, eval_set(kernel, args), num_samples=50)
    return {
        "model": args.worker,
        "params": sum(p.numel() for p in model.parameters()),
        "step_ms": step_ms,
        "fit_ms": fit_ms,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "scores": scores,
    }


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, required=True, help="training steps per model")
    parser.add_argument("--models", nargs="+", default=["cnp", "lnp", "np", "anp"])
    parser.add_argument("--eval-batches", type=int, default=100, help="evaluation batches of 16 tasks per kernel")
    parser.add_argument("--seed", type=int, default=0, help="seed of the evaluation sets")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--threads", type=int, default=2, help="torch threads per model process")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return

    rows = []
    for name in args.models:
        cmd = [
            sys.executable,
            __file__,
            "--worker",
            name,
            "--steps",
            str(args.steps),
            "--eval-batches",
            str(args.eval_batches),
            "--seed",
            str(args.seed),
            "--threads",
            str(args.threads),
        ]
        if args.cache_dir:
            cmd += ["--cache-dir", args.cache_dir]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(f"done {name}", file=sys.stderr)
    oracle = {k: evaluate_gp(eval_set(k, args), "oracle") for k in KERNELS}

    print(
        f"gp1d, {args.steps} steps x batch 16 per model (trained on RBF), eval {args.eval_batches} x 16 tasks "
        f"per kernel (seed {args.seed}); CNP trains with nll, latent models with the 4-sample "
        "importance-weighted bound (proposal q(z | C ∪ T)); 50 latent samples in evaluation"
    )
    print(f"machine: {cpu_name()}, {args.threads} torch threads per model, torch {torch.__version__}")
    print(f"command: python benchmarks/gp1d.py {' '.join(sys.argv[1:])}")
    print("tar_ll = per-point marginal (ctx excluded); joint = logmeanexp_s sum_n log p / Nt; oracle = exact GP\n")
    head = "| model | params | step ms | fit ms | peak RSS MB |" + "".join(
        f" {k} ctx_ll | {k} tar_ll | {k} joint |" for k in KERNELS
    )
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for r in rows:
        cells = "".join(
            f" {r['scores'][k]['ctx_ll']:.2f} | {r['scores'][k]['tar_ll']:.2f} | {r['scores'][k]['tar_ll_joint']:.2f} |"
            for k in KERNELS
        )
        print(
            f"| {r['model']} | {r['params']:,} | {r['step_ms']:.1f} | {r['fit_ms']:.1f} | {r['peak_rss_mb']:.0f} |"
            + cells
        )
    cells = "".join(
        f" {oracle[k]['ctx_ll']:.2f} | {oracle[k]['tar_ll']:.2f} | {oracle[k]['tar_ll_joint']:.2f} |" for k in KERNELS
    )
    print(f"| GP oracle | - | - | - | - |{cells}")


if __name__ == "__main__":
    main()
