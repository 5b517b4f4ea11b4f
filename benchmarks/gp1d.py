"""gp1d benchmark (docs/benchmarks/protocols.md, protocol 1): the reference-size models beside the exact GP oracle.

    python benchmarks/gp1d.py [--models cnp canp np anp] [--steps 100000] [--runs runs/gp1d] [--jobs 2]
                              [--eval-batches 3000] [--train-seeds 0 1 2] [--train-kernels rbf periodic]
                              [--report]

Each model trains its preset ``gp1d-<model>`` (configs/; the sizes of the TNP reference code,
Adam 5e-4 with cosine decay, batch 16, RBF tasks; CNPs with the exact log-likelihood, latent
models with the 4-sample importance-weighted bound) by ``npkit train`` into ``--runs/<model>``,
``--jobs`` models at a time in their own processes. A finished run is reused and an interrupted
one resumed, so the published budget (100,000 steps: hours on 2 cores) is reached by rerunning
the same command. Then every model, and the exact GP oracle, is evaluated on the same cached
evaluation sets (``--eval-batches`` x 16 tasks per kernel, seed ``--seed``; each model's result
is kept in its run folder). ``--report`` trains nothing and tabulates the finished runs.
``--train-seeds``: every model with each training seed (seed s > 0 in ``--runs/<model>-seed<s>``),
a row per run and, per model with several, the mean over seeds ± its standard error across seeds.

Two protocols. The published one (``--train-kernels rbf``, the default) trains on RBF and scores
every kernel, so Matern 5/2 and periodic are out of distribution (OOD). ``--train-kernels rbf
matern52 periodic`` adds one model per kernel (``--runs/<model>-on-<kernel>``, trained with
``data.kernel=<kernel>``), scored on its own kernel only: the in-distribution score beside the
OOD one, in a second table (``--train-kernels periodic`` alone trains and tabulates only the
periodic model, its RBF column left blank).

tar_ll is per point and marginal over 50 z ~ p(z | C) for latent models; ``joint`` is
logmeanexp over z of the summed target log-likelihood / Nt for latent models, and for
deterministic ones their autoregressive joint (AR: targets fed back as context one at a time,
``npkit.autoregressive``); ± is the standard error over batches.
The Bayes-optimal row is the GP averaged over the posterior of the kernel hyper-parameters given
the context (the prior is the task distribution's): the ceiling of any model, which, unlike the
oracle, does not know each task's hyper-parameters (``npkit.baselines.hyper_marginal_gp``).
``step ms``: the median of isolated training steps on pre-drawn batches (data excluded).
A second table gives ctx_ll, the MSE of the predictive mean and the coverage of the central 95%
interval per kernel.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from common import cpu_name, train  # sibling scripts: benchmarks/ is on sys.path
from step_time import median_step_ms

from npkit.config import load_config, split_section
from npkit.data import make_sampler
from npkit.data.gp import PERIODIC_KERNELS
from npkit.evaluation.metrics import cached_eval_set, evaluate, evaluate_gp
from npkit.models import build_model
from npkit.objectives import get_objective
from npkit.runs import load_trained
from npkit.train import default_threads

KERNELS = ("rbf", "matern52", "periodic")


def objective_of(name: str) -> tuple[str, dict]:
    """The objective preset gp1d-<name> trains with (CNPs: nll; latent models: the 4-sample
    importance-weighted bound with proposal q(z | C ∪ T), as the BNP/TNP reference code)."""
    return split_section(load_config(f"gp1d-{name}")["objective"])


def make_model(name: str):
    """The untrained model of preset gp1d-<name>, seeded."""
    torch.manual_seed(0)
    model_name, options = split_section(load_config(f"gp1d-{name}")["model"])
    return build_model(model_name, **options)


def eval_set(kernel: str, args: argparse.Namespace):
    """The cached, seeded evaluation set of one kernel (the same for every model)."""
    return cached_eval_set(make_sampler("gp1d", kernel=kernel), args.eval_batches, 16, args.seed, args.cache_dir)


def run_folder(runs: str, name: str, seed: int, kernel: str = "rbf") -> Path:
    """``runs/<name>`` for training seed 0 on RBF; ``-on-<kernel>`` for another training kernel,
    ``-seed<seed>`` for another seed."""
    on = "" if kernel == "rbf" else f"-on-{kernel}"
    return Path(runs) / (f"{name}{on}" if seed == 0 else f"{name}{on}-seed{seed}")


def scored_kernels(kernel: str) -> tuple[str, ...]:
    """The kernels a model trained on ``kernel`` is scored on: all for RBF (the published
    protocol), its own for the others (the per-kernel protocol)."""
    return KERNELS if kernel == "rbf" else (kernel,)


def train_one(name: str, seed: int, kernel: str, args: argparse.Namespace) -> None:
    """Train (or resume) one model with training seed ``seed`` on ``kernel``'s tasks, then
    evaluate it in the same worker process."""
    torch.set_num_threads(default_threads())
    sets = ["train.progress=false", f"train.seed={seed}"] + ([f"train.steps={args.steps}"] if args.steps else [])
    sets += [f"data.kernel={kernel}"] if kernel != "rbf" else []
    run = run_folder(args.runs, name, seed, kernel)
    train(f"gp1d-{name}", run, sets)
    scores_of(name, run, args, scored_kernels(kernel))


def seed_mean(results: list[dict]) -> dict:
    """Per kernel, the mean over training seeds of tar_ll (± its standard error across seeds)
    and of the joint column."""
    out = {}
    for k in KERNELS:
        tar = torch.tensor([r["scores"][k]["tar_ll"] for r in results], dtype=torch.float64)
        joint_key = "tar_ll_ar" if "tar_ll_ar" in results[0]["scores"][k] else "tar_ll_joint"
        joint = sum(r["scores"][k].get(joint_key, math.nan) for r in results) / len(results)
        out[k] = {"tar_ll": tar.mean().item(), "tar_ll_se": (tar.std() / len(tar) ** 0.5).item(), joint_key: joint}
    return out


def kernel_scores(model, kernel: str, args: argparse.Namespace) -> dict:
    """Metrics of ``model`` on ``kernel``'s evaluation set; deterministic models add their
    autoregressive joint where ``--ar-kernels`` asks for it (their factorised joint is only the
    marginal summed, so without the AR one they have no joint)."""
    ar = not model.is_latent and kernel in getattr(args, "ar_kernels", KERNELS)
    scores = evaluate(model, eval_set(kernel, args), num_samples=50, autoregressive=ar)
    if not model.is_latent and not ar:
        scores.pop("tar_ll_joint")
    return scores


def scores_of(name: str, run: Path, args: argparse.Namespace, kernels: tuple[str, ...] = KERNELS) -> dict:
    """The model's metrics on each of ``kernels`` (kept in the run folder; a kernel whose AR
    joint ``--ar-kernels`` now asks for is evaluated again) and its isolated step time."""
    path = run / f"gp1d-eval-{args.eval_batches}x16-seed{args.seed}.json"
    model = load_trained(run)
    if path.is_file():
        result = json.loads(path.read_text())
        wanted = () if model.is_latent else getattr(args, "ar_kernels", KERNELS)
        missing = [k for k in kernels if k in wanted and "tar_ll_ar" not in result["scores"][k]]
        if missing:
            result["scores"].update({k: kernel_scores(model, k, args) for k in missing})
            path.write_text(json.dumps(result))
        return result
    result = {"params": sum(p.numel() for p in model.parameters())}
    result["steps"] = load_config(run / "config.yaml")["train"]["steps"]
    result["scores"] = {k: kernel_scores(model, k, args) for k in kernels}
    timing = make_model(name)
    objective_name, options = objective_of(name)
    objective = get_objective(objective_name, timing, **options)
    generator = torch.Generator().manual_seed(99)
    batches = [make_sampler("gp1d", kernel="rbf").sample(16, generator) for _ in range(55)]
    result["step_ms"] = median_step_ms(timing, objective, batches)
    path.write_text(json.dumps(result))
    return result


def bayes_scores(args: argparse.Namespace) -> dict:
    """The Bayes-optimal GP (hyper-parameters integrated over the task prior,
    ``evaluate_gp(kind="bayes")``) on RBF and Matern (periodic: no converged quadrature), kept
    in ``--runs`` (about 0.5 s per batch of 16 tasks)."""
    path = Path(args.runs) / f"gp-bayes-eval-{args.eval_batches}x16-seed{args.seed}.json"
    if path.is_file():
        return json.loads(path.read_text())
    prior = lambda k: make_sampler("gp1d", kernel=k)
    scores = {k: evaluate_gp(eval_set(k, args), "bayes", prior=prior(k)) for k in KERNELS if k not in PERIODIC_KERNELS}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(scores))
    return scores


def cells_of(scores: dict) -> str:
    """' tar_ll ± se | joint |' for every kernel; the joint of a deterministic model is its
    autoregressive one (marked AR)."""

    def joint(m: dict) -> str:
        if "tar_ll_ar" in m:
            return f"{m['tar_ll_ar']:.3f} (AR)"
        return f"{m['tar_ll_joint']:.3f}" if math.isfinite(m.get("tar_ll_joint", math.nan)) else "-"

    cell = lambda m: f" {m['tar_ll']:.3f} ± {m['tar_ll_se']:.3f} | {joint(m)} |"
    return "".join(cell(scores[k]) if k in scores else " - | - |" for k in KERNELS)


def kernel_headers(trained_on: str, columns: tuple[str, ...]) -> str:
    """' <kernel> <column> |' for every kernel and column, kernels other than ``trained_on``
    marked (OOD): the model never saw their tasks."""
    name = lambda k: k if k == trained_on else f"{k} (OOD)"
    return "".join(f" {name(k)} {c} |" for k in KERNELS for c in columns)


def own_kernel_scores(results: dict[str, dict]) -> dict:
    """Per kernel, the scores of the model trained on it: ``results[kernel]`` is that model's
    ``scores_of`` result."""
    return {k: r["scores"][k] for k, r in results.items()}


def calibration_cells(scores: dict) -> str:
    """' ctx_ll | mse | coverage95 |' for every kernel (protocol 1: the context fit, the
    squared error of the predictive mean and the coverage of the central 95% interval)."""
    cell = lambda m: f" {m['ctx_ll']:.2f} | {m['mse']:.4f} | {m['coverage95']:.3f} |"
    return "".join(cell(scores[k]) if k in scores else " - | - | - |" for k in KERNELS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["cnp", "canp", "np", "anp"])
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the presets' 100,000)")
    parser.add_argument("--runs", default="runs/gp1d", help="folder of the run folders")
    parser.add_argument("--jobs", type=int, default=2, help="models trained at once, each in its own process")
    parser.add_argument("--eval-batches", type=int, default=3000, help="evaluation batches of 16 tasks per kernel")
    parser.add_argument("--seed", type=int, default=0, help="seed of the evaluation sets")
    parser.add_argument(
        "--train-seeds", nargs="+", type=int, default=[0], help="training seeds (s > 0: run folder <model>-seed<s>)"
    )
    parser.add_argument(
        "--train-kernels",
        nargs="+",
        default=["rbf"],
        choices=KERNELS,
        help="kernels to train a model on: rbf (the published protocol, scored on every kernel) and, for the "
        "per-kernel protocol, the others (scored on their own)",
    )
    parser.add_argument(
        "--ar-kernels",
        nargs="*",
        default=list(KERNELS),
        choices=KERNELS,
        help="kernels on which deterministic models get their autoregressive joint (Nt forward passes per batch; "
        "default all, none: marginal only); a later run asking for more adds them",
    )
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--report", action="store_true", help="tabulate the finished runs, train nothing")
    args = parser.parse_args()
    kernels = list(dict.fromkeys(args.train_kernels))
    runs = {
        (name, seed, kernel): run_folder(args.runs, name, seed, kernel)
        for kernel in kernels
        for name in args.models
        for seed in args.train_seeds
    }
    os.environ.setdefault("NPKIT_THREADS", str(max(1, (os.cpu_count() or 1) // args.jobs)))
    torch.set_num_threads(default_threads())  # the evaluation and the step times, too
    if not args.report:
        with ProcessPoolExecutor(args.jobs) as pool:
            for future in [pool.submit(train_one, *key, args) for key in runs]:
                future.result()
    finished = {key: run for key, run in runs.items() if (run / "model").is_dir()}
    every = {key: scores_of(key[0], run, args, scored_kernels(key[2])) for key, run in finished.items()}
    rows = {(name, seed): r for (name, seed, kernel), r in every.items() if kernel == "rbf"}
    label = lambda name, seed: name if len(args.train_seeds) == 1 else f"{name} (seed {seed})"
    oracle = {k: evaluate_gp(eval_set(k, args), "oracle") for k in KERNELS}

    print(f"command: python benchmarks/gp1d.py {' '.join(sys.argv[1:])}")
    print(f"machine: {cpu_name()}, {os.environ.get('NPKIT_THREADS', default_threads())} torch thread(s) per model")
    print(
        f"gp1d: trained on {', '.join(kernels)} (batch 16, Adam 5e-4 cosine); eval {args.eval_batches} x 16 tasks "
        f"per kernel, seed {args.seed}; tar_ll = per-point marginal ± s.e. over batches, joint = logmeanexp_z "
        "sum_n log p / Nt (latent) or the autoregressive joint / Nt (AR); "
        "CNPs train with nll, latent models with the 4-sample importance-weighted bound"
    )
    missing = [str(run) for key, run in runs.items() if key not in finished]
    if missing:
        print(f"not finished: {missing} (rerun without --report to train or resume them)")
    if rows:
        published_tables(args, rows, label, oracle)
    if any(kernel != "rbf" for kernel in kernels):
        per_kernel_table(args, every, bayes_scores(args), oracle)


def published_tables(args: argparse.Namespace, rows: dict, label, oracle: dict) -> None:
    """The published protocol's tables (models trained on RBF, scored on every kernel): tar_ll and
    joint, then ctx_ll, MSE and coverage; a row per (model, seed) and, per model with several
    seeds, their mean."""
    head = "| model | params | steps | step ms |" + kernel_headers("rbf", ("tar_ll", "joint"))
    print("\n" + head + "\n|" + "---|" * (head.count("|") - 1))
    for key, r in rows.items():
        print(f"| {label(*key)} | {r['params']:,} | {r['steps']:,} | {r['step_ms']:.1f} |" + cells_of(r["scores"]))
    for name in args.models:
        per_seed = [r for (model, _), r in rows.items() if model == name]
        if len(per_seed) > 1:
            cells = cells_of(seed_mean(per_seed))
            print(f"| {name}, mean of {len(per_seed)} seeds (± s.e. across seeds) | - | - | - |" + cells)
    bayes = bayes_scores(args)
    print("| GP, hyper-parameters integrated (Bayes-optimal) | - | - | - |" + cells_of(bayes))
    print("| GP oracle (true hyper-parameters) | - | - | - |" + cells_of(oracle))
    gaussian = ", ".join(f"{k} {m['tar_ll_gaussian']:.3f}" for k, m in bayes.items())
    print(f"\nbest per-point Gaussian (the Bayes predictive's moment-matched Gaussian), tar_ll: {gaussian}")

    print("\nctx_ll: per-point log-likelihood of the context queried at itself; mse: of the predictive mean on")
    print("the targets; cov95: fraction of targets inside the central 95% interval of the per-point predictive")
    head = "| model |" + kernel_headers("rbf", ("ctx_ll", "mse", "cov95"))
    print("\n" + head + "\n|" + "---|" * (head.count("|") - 1))
    for key, r in rows.items():
        print(f"| {label(*key)} |" + calibration_cells(r["scores"]))
    print("| GP, hyper-parameters integrated (Bayes-optimal) |" + calibration_cells(bayes))
    print("| GP oracle (true hyper-parameters) |" + calibration_cells(oracle))


def per_kernel_table(args: argparse.Namespace, every: dict, bayes: dict, oracle: dict) -> None:
    """The per-kernel protocol: each kernel's column from the model trained on that kernel."""
    print("\nper-kernel protocol: each column from a model trained on that kernel's tasks (in distribution)")
    head = "| model |" + "".join(f" {k} tar_ll | {k} joint |" for k in KERNELS)
    head += "".join(f" {k} ctx_ll | {k} cov95 |" for k in KERNELS)
    print("\n" + head + "\n|" + "---|" * (head.count("|") - 1))
    for name in args.models:
        for seed in args.train_seeds:
            own = own_kernel_scores({k: r for (n, s, k), r in every.items() if (n, s) == (name, seed)})
            label = name if len(args.train_seeds) == 1 else f"{name} (seed {seed})"
            print(f"| {label} |" + cells_of(own) + own_calibration_cells(own))
    print("| GP, hyper-parameters integrated (Bayes-optimal) |" + cells_of(bayes) + own_calibration_cells(bayes))
    print("| GP oracle (true hyper-parameters) |" + cells_of(oracle) + own_calibration_cells(oracle))


def own_calibration_cells(scores: dict) -> str:
    """' ctx_ll | cov95 |' for every kernel, dashes where missing."""
    cell = lambda m: f" {m['ctx_ll']:.2f} | {m['coverage95']:.3f} |"
    return "".join(cell(scores[k]) if k in scores else " - | - |" for k in KERNELS)


if __name__ == "__main__":
    main()
