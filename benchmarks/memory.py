"""Peak memory of evaluation and prediction on image-sized tasks (issue: memory bounded in targets
and samples), and of one training step, as information.

    python benchmarks/memory.py [--models cnp lnp np anp] [--width 128] [--baseline]

Each measurement runs in its own process, so its peak RSS (``VmHWM``) is its own. The default
task is a batch of 16 64x64 RGB images: x in [0, 1]^2, y in [0, 1]^3, 300 context points and
4,096 targets, 50 latent samples. Three measurements:

- ``evaluate``: ``npkit.evaluation.metrics.evaluate(model, [batch], num_samples=50)``;
- ``predict``:  ``npkit.predict(model, xc, yc, xt, num_samples=50)`` (and its mean and stddev);
- ``train``:    forward + backward of ``npkit.objectives.iwae`` with 4 samples (``nll`` for the
  CNP) on 1,000 context points and 4,096 targets, by default for the ANP only (``--train-models``).

``--profile N``: instead, one training step of each ``--train-models`` under ``torch.profiler`` in
this process, its forward and backward seconds and the ``N`` operators with the most self time.

``--baseline`` adds the RSS of the process after importing torch, building the model and drawing
the batch (before the measured call) and the increment of the peak over it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch
from common import cpu_name, memory_mb  # sibling script: benchmarks/ is on sys.path

import npkit
from npkit.evaluation.metrics import evaluate
from npkit.models import MODELS, build_model
from npkit.objectives import iwae, nll
from npkit.tasks import Batch

TASKS = ("evaluate", "predict", "train")


def peak_rss_mb() -> float:
    return memory_mb("VmHWM")  # this process's own peak (a child's ru_maxrss starts at its parent's)


def make_model(name: str, width: int):
    sizes = dict(hidden_dim=width, r_dim=width)
    return build_model(name, x_dim=2, y_dim=3, **sizes, **({"z_dim": width} if MODELS[name].is_latent else {}))


def make_batch(batch_size: int, num_context: int, num_target: int, seed: int) -> Batch:
    """Random image-like tasks: x in [0, 1]^2, y in [0, 1]^3."""
    g = torch.Generator().manual_seed(seed)
    u = lambda n, d: torch.rand(batch_size, n, d, generator=g)
    return Batch(u(num_context, 2), u(num_context, 3), u(num_target, 2), u(num_target, 3))


def train_step(model, batch: Batch, args: argparse.Namespace) -> tuple[float, float]:
    """Forward and backward of the training objective (``iwae`` with ``--train-samples``, ``nll``
    for deterministic models); returns their seconds."""
    model.train()
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):  # train.precision=bf16-mixed
        loss = iwae(model, batch, num_samples=args.train_samples) if model.is_latent else nll(model, batch)
    middle = time.perf_counter()
    loss.loss.backward()
    return middle - start, time.perf_counter() - middle


def profile(args: argparse.Namespace) -> None:
    """``--profile``: the operators that take a training step's time, per model."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as profiler

    if args.threads:
        torch.set_num_threads(args.threads)
    for name in args.train_models:
        torch.manual_seed(0)
        model = make_model(name, args.width)
        batch = make_batch(args.batch_size, args.train_context, args.targets, seed=1)
        with profiler(activities=[ProfilerActivity.CPU]) as prof:
            forward, backward = train_step(model, batch, args)
        print(f"\n{name}: forward {forward:.1f} s, backward {backward:.1f} s (under the profiler)")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.profile))


def worker(args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = make_model(args.worker, args.width)
    num_context = args.train_context if args.task == "train" else args.context
    batch = make_batch(args.batch_size, num_context, args.targets, seed=1)
    baseline = peak_rss_mb()
    start = time.perf_counter()
    if args.task == "evaluate":
        evaluate(model, [batch], num_samples=args.samples)
    elif args.task == "predict":
        with torch.no_grad():
            model.eval()
            pred = npkit.predict(model, batch.xc, batch.yc, batch.xt, num_samples=args.samples)
            _ = (pred.mean, pred.stddev)  # the mixture's moments are computed on access
    else:
        train_step(model, batch, args)
    seconds = time.perf_counter() - start
    return {
        "model": args.worker,
        "task": args.task,
        "params": sum(p.numel() for p in model.parameters()),
        "baseline_mb": baseline,
        "peak_mb": peak_rss_mb(),
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["cnp", "lnp", "np", "anp"])
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--train-models", nargs="+", default=["anp"], help="models whose training step is measured")
    parser.add_argument("--width", type=int, default=128, help="hidden_dim = r_dim = z_dim")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--context", type=int, default=300, help="context points in evaluate and predict")
    parser.add_argument("--targets", type=int, default=4096)
    parser.add_argument("--samples", type=int, default=50, help="latent samples in evaluate and predict")
    parser.add_argument("--train-context", type=int, default=1000)
    parser.add_argument("--train-samples", type=int, default=4)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--bf16", action="store_true", help="train: the forward pass under bfloat16 autocast")
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="also show the RSS before the measured call (torch imported, model built) and the increment",
    )
    parser.add_argument("--profile", type=int, default=0, help="profile the training step: show the N top operators")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--task", choices=TASKS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    if args.profile:
        print(f"command: python benchmarks/memory.py {' '.join(sys.argv[1:])}\nmachine: {cpu_name()}")
        profile(args)
        return

    threads = args.threads or torch.get_num_threads()
    print(f"command: python benchmarks/memory.py {' '.join(sys.argv[1:])}")
    print(f"machine: {cpu_name()}, {threads} torch threads, torch {torch.__version__}")
    print(
        f"batch {args.batch_size}, x_dim 2, y_dim 3, width {args.width}; evaluate/predict: {args.context} context, "
        f"{args.targets} targets, {args.samples} latent samples; train: {args.train_context} context, "
        f"{args.targets} targets, iwae with {args.train_samples} samples (nll for cnp), forward + backward"
        f"{' (forward under bfloat16 autocast)' if args.bf16 else ''}\n"
    )
    head = ["model", "task", "params", "peak RSS MB"] + (["baseline MB", "increment MB"] if args.baseline else [])
    print("| " + " | ".join([*head, "seconds"]) + " |")
    print("|" + "---|" * (len(head) + 1))
    forward = [
        "--width",
        str(args.width),
        "--batch-size",
        str(args.batch_size),
        "--context",
        str(args.context),
        "--targets",
        str(args.targets),
        "--samples",
        str(args.samples),
        "--train-context",
        str(args.train_context),
        "--train-samples",
        str(args.train_samples),
        "--threads",
        str(args.threads),
        *(["--bf16"] if args.bf16 else []),
    ]
    for name in dict.fromkeys([*args.models, *args.train_models]):
        for task in args.tasks:
            if name not in (args.train_models if task == "train" else args.models):
                continue
            cmd = [sys.executable, __file__, "--worker", name, "--task", task, *forward]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode:
                print(f"| {name} | {task} | failed (exit {out.returncode}): {out.stderr.strip()[-300:]} |")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            cells = [name, task, f"{r['params']:,}", f"{r['peak_mb']:.0f}"]
            if args.baseline:
                cells += [f"{r['baseline_mb']:.0f}", f"{r['peak_mb'] - r['baseline_mb']:.0f}"]
            print("| " + " | ".join([*cells, f"{r['seconds']:.2f}"]) + " |", flush=True)


if __name__ == "__main__":
    main()
