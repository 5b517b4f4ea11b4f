"""Training-step time against torch's thread count, on an idle machine and beside one busy process.

    python benchmarks/threads.py [--models np anp] [--threads 1 2] [--steps 60]

For each model (gp1d, batch 16, width 128, the presets' objectives) and thread count, the median
isolated step (data excluded) idle, then while a competing process keeps one core busy with its
own torch work (what a second run, a test suite or a browser does on a laptop). This is the
measurement behind ``train.threads`` defaulting to 1.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys

import torch
from gp1d import make_model, objective_of  # sibling scripts: benchmarks/ is on sys.path
from step_time import median_step_ms

from npkit.data import make_sampler
from npkit.objectives import get_objective


def busy(stop) -> None:
    """Keep one core busy with matrix products (one torch thread) until ``stop`` is set."""
    torch.set_num_threads(1)
    a = torch.randn(256, 256)
    while not stop.is_set():
        a = torch.tanh(a @ a)


def step_ms(name: str, threads: int, steps: int) -> float:
    torch.set_num_threads(threads)
    model = make_model(name)
    objective_name, options = objective_of(model)
    objective = get_objective(objective_name, model, **options)
    generator = torch.Generator().manual_seed(0)
    sampler = make_sampler("gp1d")
    return median_step_ms(model, objective, [sampler.sample(16, generator) for _ in range(steps)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["np", "anp"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    print(f"command: python benchmarks/threads.py {' '.join(sys.argv[1:])}")
    print(f"torch {torch.__version__}, {multiprocessing.cpu_count()} cores\n")
    print("| model | threads | idle ms/step | one busy process ms/step |\n|---|---|---|---|")
    for name in args.models:
        for threads in args.threads:
            idle = step_ms(name, threads, args.steps)
            stop = multiprocessing.Event()
            competitor = multiprocessing.Process(target=busy, args=(stop,))
            competitor.start()
            try:
                loaded = step_ms(name, threads, args.steps)
            finally:
                stop.set()
                competitor.join()
            print(f"| {name} | {threads} | {idle:.1f} | {loaded:.1f} |", flush=True)


if __name__ == "__main__":
    main()
