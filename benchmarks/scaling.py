"""How a training step's time and peak memory grow with the number of points: CNP, ANP and TNP-D
at their gp1d reference sizes.

    python benchmarks/scaling.py [--models cnp anp tnpd] [--scale target|context]
                                 [--targets 64 128 ... 4096] [--contexts 64] [--steps 10] [--quick]

Each model is built from the model section of its preset ``gp1d-<model>`` and trains with the
preset's objective (CNP: nll on context ∪ targets; ANP: the 4-sample importance-weighted bound;
TNP-D: nll on the targets only). ``--scale target`` (default) varies the targets Nt at a fixed
context Nc (``--contexts``, one value), ``--scale context`` varies Nc at a fixed Nt (``--targets``,
one value): attention grows with the context too. Tasks: batch 16 of 1D RBF GP draws (x ~ U(-2, 2),
the gp1d sampler with Nc and Nt fixed), one batch reused by every step.

Each (model, size) runs in its own process: draw the batch, build the model, then ``--warmup`` + N
Adam steps; N is ``--steps`` up to 1,024 points, halved for every doubling beyond (at least 3).
Reported: the median ms per step (data excluded) and the peak RSS increment over the RSS just
before the first step (MB; the process's own ``VmHWM``, reset after the data is drawn). Below the
table, per model: the growth exponent (least-squares slope of log ms and of log MB against log N
over the upper half of the sizes) and the size above which training decodes the scored points in
chunks under activation checkpointing (``npkit.models.chunking.PREDICT_CHUNK_ELEMENTS`` decoder
activations, batch x samples x hidden_dim per point), which caps the decoder's memory.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import subprocess
import sys

import torch
from common import cpu_name, memory_mb, reset_peak_memory  # sibling scripts: benchmarks/ is on sys.path
from gp1d import make_model
from step_time import median_step_ms

from npkit.config import load_config, split_section
from npkit.data.gp import GPSampler
from npkit.models.chunking import PREDICT_CHUNK_ELEMENTS
from npkit.objectives import get_objective
from npkit.tasks import Batch
from npkit.train import default_threads

SIZES = [64, 128, 256, 512, 1024, 2048, 4096]
QUICK_SIZES = [64, 256]
LABELS = {"target": "Nt", "context": "Nc"}


def objective_of(name: str) -> tuple[str, dict]:
    """The objective section of preset gp1d-<name>: its name and options."""
    return split_section(load_config(f"gp1d-{name}")["objective"])


def steps_at(points: int, steps: int) -> int:
    """``steps`` up to 1,024 points, halved for every doubling beyond, at least 3."""
    return steps if points <= 1024 else max(3, steps * 1024 // points)


def measure(name: str, num_context: int, num_target: int, steps: int, warmup: int = 3, batch_size: int = 16) -> dict:
    """Median ms of ``steps`` training steps (after ``warmup``) of the gp1d-<name> model and its
    preset's objective on one batch of GP tasks with Nc and Nt fixed, and the peak RSS increment
    (MB) over the RSS just before the first step. Meant for a fresh process: in a process that
    has freed memory before, the steps reuse it and the increment reads low."""
    sampler = GPSampler(num_context=(num_context, num_context), num_target=(num_target, num_target), max_points=None)
    generator = torch.Generator().manual_seed(0)
    # task by task: one [Nc + Nt]^2 covariance at a time
    tasks = [sampler.sample(1, generator) for _ in range(batch_size)]
    batch = Batch(*(torch.cat([getattr(t, f) for t in tasks]) for f in ("xc", "yc", "xt", "yt")))
    del tasks
    model = make_model(name)
    objective_name, options = objective_of(name)
    objective = get_objective(objective_name, model, **options)
    gc.collect()
    reset_peak_memory()  # the data's covariances are not the step's memory (where it cannot, they are)
    baseline = memory_mb("VmRSS")
    ms = median_step_ms(model, objective, [batch] * (warmup + steps), warmup=warmup)
    peak = memory_mb("VmHWM")
    mb = max(0.0, peak - baseline)  # /proc counters are approximate to a few pages: no negative noise
    return {"model": name, "nc": num_context, "nt": num_target, "steps": steps, "ms": ms, "mb": mb}


def run_worker(name: str, num_context: int, num_target: int, steps: int, warmup: int, batch_size: int) -> dict:
    """:func:`measure` in a fresh process (this script with ``--worker``); {"error": ...} if it fails."""
    sizes = ["--contexts", str(num_context), "--targets", str(num_target)]
    rest = ["--steps", str(steps), "--warmup", str(warmup), "--batch-size", str(batch_size)]
    out = subprocess.run([sys.executable, __file__, "--worker", name, *sizes, *rest], capture_output=True, text=True)
    if out.returncode:
        return {"error": f"exit {out.returncode}: {out.stderr.strip()[-200:]}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of log y against log x; None with fewer than 2 points or a y <= 0."""
    if len(xs) < 2 or any(y <= 0 for y in ys):
        return None
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def growth(exponent: float | None) -> str:
    """A name for a growth exponent: flat < 0.5 <= linear < 1.25 <= between < 1.75 <= quadratic."""
    if exponent is None:
        return "n/a"
    if exponent < 0.5:
        return "flat"
    if exponent < 1.25:
        return "linear"
    return "between linear and quadratic" if exponent < 1.75 else "quadratic" if exponent < 2.5 else "super-quadratic"


def chunk_note(name: str, scale: str, fixed: int, batch_size: int) -> str:
    """Where training starts to decode in checkpointed chunks (``npkit.models.chunking.decode_checkpointed``:
    above PREDICT_CHUNK_ELEMENTS // (samples x batch x hidden_dim) scored points per task)."""
    model = make_model(name)
    _, options = objective_of(name)
    samples = options.get("num_samples", model.config.num_samples) if model.is_latent else 1
    points = PREDICT_CHUNK_ELEMENTS // (samples * batch_size * model.config.hidden_dim)
    with_context = options.get("include_context", True)
    scored = "context ∪ targets" if with_context else "targets"
    per_point = f"{samples} samples x {batch_size} x {model.config.hidden_dim}"
    budget = f"2^{int(math.log2(PREDICT_CHUNK_ELEMENTS))}"
    head = f"chunked decoding above {points:,} scored points per task ({budget} // ({per_point}); scores {scored})"
    if scale == "target":
        return f"{head}: Nt > {points - fixed if with_context else points:,}"
    if not with_context:
        return f"{head}: not with Nc (at Nt > {points:,})"
    return f"{head}: Nc > {points - fixed:,}"


def report(results: dict, models: list[str], sizes: list[int], scale: str, fixed: int, batch_size: int) -> list[str]:
    """The markdown table (rows: the varied size; per model ms/step and peak MB) and a line per
    model: growth exponents over the upper half of the sizes and where chunked decoding starts.
    ``results[(model, size)]`` is a :func:`measure` dict or {"error": ...}."""
    label = LABELS[scale]
    head = [label, "steps", *(f"{m} {col}" for m in models for col in ("ms/step", "peak MB"))]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n in sizes:
        steps = next((r["steps"] for m in models if "steps" in (r := results[(m, n)])), "-")
        cells = []
        for m in models:
            r = results[(m, n)]
            cells += ["failed", "-"] if "error" in r else [f"{r['ms']:.1f}", f"{r['mb']:.0f}"]
        lines.append("| " + " | ".join([str(n), str(steps), *cells]) + " |")
    upper = sizes[len(sizes) // 2 :] if len(sizes) > 2 else sizes
    lines.append("")
    for m in models:
        ok = [n for n in upper if "error" not in results[(m, n)]]
        t = slope(ok, [results[(m, n)]["ms"] for n in ok])
        mem = slope(ok, [results[(m, n)]["mb"] for n in ok])
        fmt = lambda e: "n/a" if e is None else f"{e:.2f}"
        span = f"{label} {ok[0]}-{ok[-1]}" if ok else "no sizes"
        lines.append(
            f"- {m}: time ~ {label}^{fmt(t)} ({growth(t)}), peak memory ~ {label}^{fmt(mem)} ({growth(mem)}) "
            f"over {span}; {chunk_note(m, scale, fixed, batch_size)}"
        )
        for n in sizes:
            if "error" in results[(m, n)]:
                lines.append(f"  - {m} at {label} {n} failed: {results[(m, n)]['error']}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["cnp", "anp", "tnpd"])
    parser.add_argument("--scale", choices=sorted(LABELS), default="target", help="which count varies")
    parser.add_argument("--targets", nargs="+", type=int, help=f"Nt: the sizes (default {SIZES}), or one fixed (64)")
    parser.add_argument("--contexts", nargs="+", type=int, help="Nc: one fixed (default 64), or the sizes")
    parser.add_argument("--steps", type=int, default=10, help="measured steps (fewer beyond 1,024 points)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--quick", action="store_true", help=f"sizes {QUICK_SIZES}, 2 steps after 1 warm-up")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(default_threads())
    if args.worker:
        r = measure(args.worker, args.contexts[0], args.targets[0], args.steps, args.warmup, args.batch_size)
        print(json.dumps(r))
        return

    sizes = QUICK_SIZES if args.quick else SIZES
    varied, fixed = ("targets", "contexts") if args.scale == "target" else ("contexts", "targets")
    sizes = getattr(args, varied) or sizes
    fixed_values = getattr(args, fixed) or [64]
    if len(fixed_values) != 1:
        parser.error(f"--scale {args.scale} varies --{varied}: give one --{fixed}")
    steps, warmup = (2, 1) if args.quick else (args.steps, args.warmup)
    results = {}
    for name in args.models:
        for n in sizes:
            nc, nt = (fixed_values[0], n) if args.scale == "target" else (n, fixed_values[0])
            results[(name, n)] = run_worker(name, nc, nt, steps_at(n, steps), warmup, args.batch_size)

    label = LABELS[args.scale]
    other = "Nc" if args.scale == "target" else "Nt"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    env = f"NPKIT_THREADS={os.environ['NPKIT_THREADS']} " if "NPKIT_THREADS" in os.environ else ""
    print(f"command: {env}python benchmarks/scaling.py {' '.join(sys.argv[1:])}".rstrip())
    print(f"machine: {cpu_name()}, {default_threads()} torch thread(s), torch {torch.__version__}")
    print(f"load average at the end: {load} (other processes on the cores make the times noisy)")
    print(
        f"gp1d presets' models and objectives, batch {args.batch_size}, {other} = {fixed_values[0]}, {label} varies; "
        f"{warmup} warm-up + the steps shown (Adam, one pre-drawn RBF GP batch, data excluded): median ms/step; "
        "peak MB = peak RSS increment over the RSS before the first step\n"
    )
    print("\n".join(report(results, args.models, sizes, args.scale, fixed_values[0], args.batch_size)))


if __name__ == "__main__":
    main()
