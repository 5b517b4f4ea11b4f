"""The NP critique's posterior collapse on the five-point sine toy: reproduction and remedies study.

    python benchmarks/collapse.py reproduce [--steps 25000] [--seeds 1] [--inits ...] [--jobs 1]
        [--loss targets] [--out runs/collapse] [--figures docs/figures]
    python benchmarks/collapse.py study [--seeds 5] [--jobs 2] [--steps 25000] [--loss targets] [--out runs/collapse]

Every run trains the ``sine5-critique`` preset (configs/sine5-critique.yaml: the critique's
95-parameter latent NP, softplus latent std without a floor, fixed output std 0.005, ELBO with
KL(q(z|C,T) || q(z|C)), 10 z samples, Adam 1e-3, batch 1) with one initialisation and one remedy,
and records the collapse diagnostics of ``npkit.evaluation.diagnostics`` every 500 steps and at the
snapshots (0, 3k, 9k, 12.5k, 25k steps), and the final per-point target log-likelihood
(marginal over 50 z ~ q(z | C)) on all 25 context sets of 1-3 of the five points.

``--loss``: which points the log-likelihood scores. "targets" (the preset, as the critique): the
2-4 non-context points, per scored point; "all": all five (context included: the preset before
the reproduction audit, behind the numbers marked so in docs/collapse.md); "sum": the critique's
exact loss, -sum over the targets of the log-likelihood (mean over the z samples) + the KL, not
divided by the number of targets (baseline objective only).

``reproduce``: seeds 0 .. ``--seeds``-1 (default seed 0 only), the three initialisations and
N(0, 1) weights with PyTorch's default biases (what the critique's code does) or ``--inits``, the
baseline objective; prints the diagnostics per snapshot and seed, and how many seeds end each
snapshot healthy; writes each run's result (JSON) under ``--out/reproduce``; draws 100 function
samples over [-4, 4] given the context x = {-1, 0, 1} at each snapshot of the seed-0 runs
(``collapse-reproduction.png``). Besides the diagnostics of ``npkit.evaluation.diagnostics`` (z
drawn from q(z | C) of random contexts) each snapshot records the view of the critique's figures,
which condition on all five points: the std of 100 function samples with z ~ q(z | all five
points) at x in [-4, -3] (``spread_five_left``), in [3, 4] (``spread_five_right``) and at the five
points (``spread_five_data``).

``study``: seeds x initialisations x {baseline, each remedy}, ``--jobs`` processes; each run's
result is a JSON file under ``--out/study`` (named with the loss, except the all-points loss's,
whose files predate ``--loss``; a rerun skips finished runs, so it can be stopped and
restarted); prints the table (fraction of seeds collapsed at 9k and 25k steps and overconfident
at 25k, final tar_ll ± standard error over seeds) and draws the posterior std over training
(``collapse-study-std.png``).
"""

from __future__ import annotations

import argparse
import collections
import copy
import itertools
import json
import math
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from npkit import fit, sample_functions
from npkit.config import load_config, split_section
from npkit.data import make_sampler
from npkit.evaluation.diagnostics import FLAT_SPREAD, diagnose
from npkit.evaluation.metrics import evaluate
from npkit.models import build_model
from npkit.objectives import LossOutput, kl_per_dim
from npkit.rng import seeded
from npkit.tasks import Batch

INITS = {
    "normal(0, 1)": {"init": "normal", "init_std": 1.0},
    "PyTorch default": {"init": "default"},
    "Xavier normal": {"init": "xavier_normal"},
}
# reproduce also tries N(0, 1) weights with PyTorch's default biases: what the critique's code does
# (torch.nn.init.normal_ on each layer's weight only)
REPRODUCE_INITS = {**INITS, "normal(0, 1) weights only": {"init": "normal_weights", "init_std": 1.0}}
# name -> (model overrides, objective name or callable, objective options)
REMEDIES = {
    "baseline": ({}, "elbo", {}),
    "fixed N(0, I) prior": ({}, "elbo", {"prior": "fixed"}),
    "conditional + fixed KL": ({}, "elbo", {"prior": "both"}),
    "KL annealing (5k steps)": ({}, "elbo", {"warmup_steps": 5000}),
    "free bits (0.5 nats/dim)": ({}, "elbo", {"free_bits": 0.5}),
    "latent std floor 0.1": ({"latent_min_sigma": 0.1}, "elbo", {}),
    "iwae (10 samples)": ({}, "iwae", {}),
    "ml (10 samples)": ({}, "ml", {}),
}
SNAPSHOTS = (0, 3000, 9000, 12500, 25000)
# The study's tasks: the critique's single function, and a family of sines on the same grid of x where
# the context does not pin the function down, so the latent has something to carry.
TASKS = {
    "sine5": {"name": "sine5"},
    "sine-family": {
        "name": "sine",
        "x_range": (-2.0, 2.0),
        "amplitude": (0.5, 1.5),
        "phase": (-0.5, 0.5),
        "num_context": (1, 3),
        "num_target": (2, 4),
        "max_points": 5,
    },
}
CONTEXT_X = (-1.0, 0.0, 1.0)  # the context of the function-sample figures
FIVE_X = (-2.0, -1.0, 0.0, 1.0, 2.0)  # sine5's points: the critique's figures condition on all five
LOSSES = ("targets", "all", "sum")  # see the module docstring


def task_sampler(task: str):
    """The training tasks' sampler of study task ``task`` (a key of TASKS)."""
    name, options = split_section(TASKS[task])
    return make_sampler(name, **options)


def held_out_batches(task: str = "sine5") -> list[Batch]:
    """sine5: all 25 context sets of 1-3 of the five points (one batch per size), targets the
    rest; sine-family: 4 batches of 64 tasks drawn with a fixed generator (not the training seed)."""
    if task != "sine5":
        generator = torch.Generator().manual_seed(2**31 - 1)
        return [task_sampler(task).sample(64, generator) for _ in range(4)]
    x = torch.arange(-2.0, 3.0)
    batches = []
    for nc in (1, 2, 3):
        sets = [list(c) for c in itertools.combinations(range(5), nc)]
        rest = [[i for i in range(5) if i not in c] for c in sets]
        xc, xt = x[torch.tensor(sets)].unsqueeze(-1), x[torch.tensor(rest)].unsqueeze(-1)
        batches.append(Batch(xc=xc, yc=xc.sin(), xt=xt, yt=xt.sin()))
    return batches


class CritiqueLoss:
    """The critique's exact loss: -sum over the targets of log p(y_t | z) (mean over the z ~
    q(z | C ∪ T) samples) + KL(q(z | C ∪ T) || q(z | C)), mean over tasks; not divided by the
    number of targets, as npkit's ``elbo`` is (its ``include_context=False`` scores the same points)."""

    def __init__(self, num_samples: int = 10):
        self.num_samples = num_samples

    def __call__(self, model, batch: Batch) -> LossOutput:
        q = model.posterior(batch.x, batch.y, batch.mask)
        z = q.rsample((self.num_samples,))
        pred = model(batch.xc, batch.yc, batch.xt, z=z, mask_c=batch.mask_c)
        log_prob = pred.log_prob(batch.yt)  # [S, B, Nt]
        if batch.mask_t is not None:
            log_prob = log_prob * batch.mask_t
        log_lik = log_prob.sum(-1).mean(0)  # [B]: sum over the targets, mean over z
        kl = kl_per_dim(q, model.posterior(batch.xc, batch.yc, batch.mask_c), z).sum(-1)  # [B]
        n = (batch.mask_t.sum(-1) if batch.mask_t is not None else torch.full_like(kl, batch.yt.shape[1])).clamp_min(1)
        return LossOutput(-(log_lik - kl).mean(), (log_lik / n).mean(), (kl / n).mean())


def five_point_spreads(model, num_samples: int = 100, seed: int = 0) -> dict[str, float]:
    """How the critique's figures look: the std over ``num_samples`` function samples with z ~
    q(z | all five points of sine5), mean over 20 points of x in [-4, -3] (``spread_five_left``),
    of [3, 4] (``spread_five_right``) and over the five points themselves (``spread_five_data``)."""
    x = torch.tensor(FIVE_X).view(1, -1, 1)
    where = {
        "spread_five_left": torch.linspace(-4.0, -3.0, 20),
        "spread_five_right": torch.linspace(3.0, 4.0, 20),
        "spread_five_data": torch.tensor(FIVE_X),
    }
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), seeded(seed):
            z = model.posterior(x, x.sin(), None).sample((num_samples,))
            return {k: model(x, x.sin(), at.view(1, -1, 1), z=z).mean.std(0).mean().item() for k, at in where.items()}
    finally:
        model.train(was_training)


def run_one(
    init: str,
    remedy: str,
    seed: int,
    steps: int,
    keep_states: bool = False,
    task: str = "sine5",
    loss: str = "targets",
) -> dict:
    """Train one run; return its diagnostics, curve and final tar_ll (and snapshot weights)."""
    torch.set_num_threads(1)
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    config = load_config("sine5-critique")
    model_overrides, objective, objective_options = REMEDIES[remedy]
    name, options = split_section(config["model"])
    options = {**options, **REPRODUCE_INITS[init], **model_overrides}
    _, base_options = split_section(config["objective"])
    objective_options = {**base_options, **objective_options}
    if loss == "all":
        objective_options["include_context"] = True
    if objective in ("iwae", "ml"):
        objective_options = {
            k: objective_options[k] for k in ("num_samples", "include_context") if k in objective_options
        }
    if loss == "sum":
        if remedy != "baseline":
            raise ValueError(f"loss 'sum' (the critique's exact loss) is the baseline's; got remedy {remedy!r}")
        objective, objective_options = CritiqueLoss(objective_options["num_samples"]), {}
    torch.manual_seed(seed)
    model = build_model(name, **options)
    sampler = task_sampler(task)
    snapshots, states = {}, {}

    def snapshot(step: int, model, output=None) -> dict:
        if step in SNAPSHOTS:
            snapshots[step] = diagnose(model, sampler, num_tasks=256, num_samples=100).as_dict()
            if task == "sine5":
                snapshots[step].update(five_point_spreads(model))
            if keep_states:
                states[step] = copy.deepcopy(model.state_dict())
        return {}

    snapshot(0, model)
    train = dict(config["train"], steps=steps, seed=seed, progress=False)
    rows = fit(model, sampler, objective, objective_options, callbacks=[snapshot], **train)
    curve = [
        {
            k: r[k]
            for k in ("step", "diag/std_context", "diag/kl", "diag/z_effect", "diag/target_spread", "diag/far_spread")
        }
        for r in rows
        if "diag/kl" in r
    ]
    torch.manual_seed(seed)
    tar_ll = evaluate(model, held_out_batches(task), num_samples=50)["tar_ll"]
    result = {"task": task, "init": init, "remedy": remedy, "seed": seed, "steps": steps, "loss": loss}
    result["snapshots"] = snapshots
    result.update(curve=curve, tar_ll=tar_ll)
    if keep_states:
        result["states"] = states
        result["model"] = (name, options)
    return result


def samples_figure(results: list[dict]) -> Figure:
    """Rows: runs (initialisations); columns: snapshots; 100 function samples over [-4, 4]."""
    steps = sorted(results[0]["states"])
    fig = Figure(figsize=(3.0 * len(steps), 2.4 * len(results)), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(results), len(steps), squeeze=False, sharey=True)
    grid = torch.linspace(-4, 4, 200)
    xc = torch.tensor(CONTEXT_X).view(1, -1, 1)
    for r, result in enumerate(results):
        name, options = result["model"]
        model = build_model(name, **options)
        for c, step in enumerate(steps):
            model.load_state_dict(result["states"][step])
            model.eval()
            torch.manual_seed(0)
            with torch.no_grad():
                draws = sample_functions(model, xc, xc.sin(), grid.view(1, -1, 1), num_samples=100)[:, 0, :, 0]
            ax = axes[r, c]
            ax.plot(grid, draws.T, color="C0", lw=0.5, alpha=0.3)
            ax.plot(torch.arange(-2.0, 3.0), torch.arange(-2.0, 3.0).sin(), "k+", ms=7)
            ax.plot(xc.flatten(), xc.sin().flatten(), "ko", ms=4)
            d = result["snapshots"][step]
            ax.set_title(f"{step:,} steps: std {d['std_context']:.3f}, KL {d['kl']:.3f}", fontsize="small")
            ax.set_ylim(-3, 3)
            if c == 0:
                ax.set_ylabel(result["init"])
    fig.suptitle("sine5-critique: 100 function samples given x = {-1, 0, 1} (dots); + the five points", wrap=True)
    return fig


def std_figure(results: list[dict], inits: list[str]) -> Figure:
    """Posterior std of z given the context over training: one panel per init, mean over seeds."""
    fig = Figure(figsize=(4.2 * len(inits) + 1.5 * (len(inits) == 1), 3.4), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(inits), squeeze=False, sharey=True)[0]
    for ax, init in zip(axes, inits):
        for i, remedy in enumerate(REMEDIES):
            runs = [r for r in results if r["init"] == init and r["remedy"] == remedy]
            if not runs:
                continue
            steps = [p["step"] for p in runs[0]["curve"]]
            mean = [sum(r["curve"][j]["diag/std_context"] for r in runs) / len(runs) for j in range(len(steps))]
            ax.plot(steps, mean, color=f"C{i}", label=remedy)
        ax.set_yscale("log")
        ax.set_title(init, fontsize="medium")
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("posterior std of z given C (mean)")
    axes[-1].legend(fontsize="x-small")
    return fig


def _slug(*parts) -> str:
    slug = "-".join(str(part) for part in parts).replace(" ", "_").replace("/", "_")
    return "".join(ch for ch in slug if ch.isalnum() or ch in "_-.")


def _write_json(result: dict, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({k: v for k, v in result.items() if k not in ("states", "model")}))
    os.replace(tmp, path)


def reproduce(args: argparse.Namespace) -> None:
    inits = args.inits or list(REPRODUCE_INITS)
    folder = Path(args.out) / "reproduce"
    folder.mkdir(parents=True, exist_ok=True)
    runs = [(init, seed) for seed in range(args.seeds) for init in inits]  # whole seeds first
    results = []
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = [
            pool.submit(run_one, init, "baseline", seed, args.steps, seed == 0, "sine5", args.loss)
            for init, seed in runs
        ]
        for future in tqdm(as_completed(futures), total=len(futures), desc="runs"):
            result = future.result()
            _write_json(
                result, folder / f"{_slug(result['init'], 'baseline', result['seed'], args.steps, args.loss)}.json"
            )
            results.append(result)
    results.sort(key=lambda r: (inits.index(r["init"]), r["seed"]))
    print(f"loss {args.loss}, {args.steps:,} steps, seeds 0-{args.seeds - 1}; verdicts of npkit.evaluation.diagnostics")
    print(
        "\n| init | seed | step | verdict | std z given C | KL | z effect | spread at targets | far spread (x -4..-3) "
        "| given the five: spread at x -4..-3 | at x 3..4 | at the five |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for result in results:
        for step, d in sorted(result["snapshots"].items()):
            print(
                f"| {result['init']} | {result['seed']} | {step:,} | {d['verdict']} | {d['std_context']:.4f} | "
                f"{d['kl']:.4f} | {d['z_effect']:.4f} | {d['target_spread']:.4f} | {d['far_spread']:.4f} | "
                f"{d['spread_five_left']:.4f} | {d['spread_five_right']:.4f} | {d['spread_five_data']:.4f} |"
            )
    print(
        "\n| init | step | healthy | verdicts | spread given the five >= 0.05 at x -4..-3 or 3..4 "
        "| median std z given C | median KL | median spread given the five at x -4..-3 | at x 3..4 |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for init in inits:
        group = [r for r in results if r["init"] == init]
        for step in sorted(group[0]["snapshots"]):
            ds = [r["snapshots"][step] for r in group]
            keys = ("std_context", "kl", "spread_five_left", "spread_five_right")  # torch's median: the lower middle
            med = {k: torch.tensor([d[k] for d in ds]).median().item() for k in keys}
            wide = sum(max(d["spread_five_left"], d["spread_five_right"]) >= FLAT_SPREAD for d in ds)
            print(
                f"| {init} | {step:,} | {_collapsed(group, step, 'healthy')}/{len(group)} | {_verdicts(group, step)} | "
                f"{wide}/{len(group)} | {med['std_context']:.4f} | {med['kl']:.4f} | {med['spread_five_left']:.4f} | "
                f"{med['spread_five_right']:.4f} |"
            )
    print("\nfinal tar_ll on the 25 held-out context sets (per point):")
    for init in inits:
        print(f"  {init}: " + ", ".join(f"{r['tar_ll']:.2f}" for r in results if r["init"] == init))
    first = [r for r in results if r["seed"] == 0]
    if first:
        suffix = "" if args.loss == "targets" else f"-{args.loss}"
        path = Path(args.figures) / f"collapse-reproduction{suffix}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        samples_figure(first).savefig(path)
        print(f"wrote {path}")


def _job(init: str, remedy: str, seed: int, steps: int, task: str, path: str, loss: str = "targets") -> str:
    _write_json(run_one(init, remedy, seed, steps, task=task, loss=loss), Path(path))
    return path


def _snapshot(run: dict, step: int) -> dict:
    """A run's diagnostics at ``step`` (JSON files key the snapshots by str(step), fresh runs by int)."""
    return run["snapshots"][step] if step in run["snapshots"] else run["snapshots"][str(step)]


def _collapsed(runs: list[dict], step: int, verdict: str = "collapsed") -> int:
    return sum(_snapshot(r, step)["verdict"].startswith(verdict) for r in runs)


def _verdicts(runs: list[dict], step: int) -> str:
    """'3 point mass, 2 healthy': how many runs got each verdict (without its 'collapsed: ')."""
    counts = collections.Counter(_snapshot(r, step)["verdict"].removeprefix("collapsed: ") for r in runs)
    return ", ".join(f"{n} {verdict}" for verdict, n in counts.most_common())


def study(args: argparse.Namespace) -> None:
    folder = Path(args.out) / ("study" if args.task == "sine5" else f"study-{args.task}")
    folder.mkdir(parents=True, exist_ok=True)
    remedies, inits = args.remedies or list(REMEDIES), args.inits or list(INITS)
    jobs = []
    for seed, init, remedy in itertools.product(range(args.seeds), inits, remedies):  # whole seeds first
        # runs of the all-points loss keep the names they had before --loss (the committed results)
        path = folder / f"{_slug(init, remedy, seed, args.steps, *([] if args.loss == 'all' else [args.loss]))}.json"
        if not path.is_file():
            jobs.append((init, remedy, seed, args.steps, args.task, str(path), args.loss))
    if jobs and not args.report:
        with ProcessPoolExecutor(args.jobs) as pool:
            futures = [pool.submit(_job, *job) for job in jobs]
            for future in tqdm(as_completed(futures), total=len(futures), desc="runs"):
                future.result()
    results = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    results = [
        r
        for r in results
        if r["steps"] == args.steps
        and r["remedy"] in remedies
        and r["init"] in inits
        and r.get("loss", "all") == args.loss  # results without a loss predate --loss: all points
    ]
    if jobs and args.report:
        print(f"report of the {len(results)} finished runs ({len(jobs)} still to run)")
    late = max(s for s in SNAPSHOTS if s <= args.steps)
    print(
        f"task {args.task}, loss {args.loss}, up to {args.seeds} seeds per cell, {args.steps:,} steps; "
        "verdicts of npkit.evaluation.diagnostics"
    )
    head = f"collapsed at 9k | collapsed at {late:,} | verdicts at {late:,} | std z given C at {late:,}"
    print(f"\n| init | remedy | {head} | final tar_ll ± se |")
    print("|---|---|---|---|---|---|---|")
    for init, remedy in itertools.product(inits, remedies):
        runs = [r for r in results if r["init"] == init and r["remedy"] == remedy]
        if not runs:
            continue
        at_9k = f"{_collapsed(runs, 9000)}/{len(runs)}" if 9000 <= args.steps else "-"
        lls = torch.tensor([r["tar_ll"] for r in runs], dtype=torch.float64)
        se = (lls.std() / math.sqrt(len(lls))).item() if len(lls) > 1 else float("nan")
        std = sum(_snapshot(r, late)["std_context"] for r in runs) / len(runs)
        n, kinds = len(runs), _verdicts(runs, late)
        cells = f"{at_9k} | {_collapsed(runs, late)}/{n} | {kinds} | {std:.4f} | {lls.mean():.2f} ± {se:.2f}"
        print(f"| {init} | {remedy} | {cells} |")
    suffix = "" if args.task == "sine5" else f"-{args.task}"
    path = Path(args.figures) / f"collapse-study-std{suffix}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    std_figure(results, inits).savefig(path)
    print(f"\nwrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["reproduce", "study"])
    parser.add_argument("--steps", type=int, default=25000)
    parser.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (default: reproduce 1, study 5)")
    parser.add_argument("--jobs", type=int, default=None, help="processes (default: reproduce 1, study 2)")
    parser.add_argument("--remedies", nargs="+", choices=list(REMEDIES), help="default: all")
    parser.add_argument(
        "--inits", nargs="+", choices=list(REPRODUCE_INITS), help="default: reproduce all four, study the first three"
    )
    parser.add_argument("--loss", choices=LOSSES, default="targets", help="the points scored (module docstring)")
    parser.add_argument("--task", choices=list(TASKS), default="sine5", help="study: the training tasks")
    parser.add_argument("--report", action="store_true", help="study: tabulate the finished runs, train nothing")
    parser.add_argument("--out", default="runs/collapse")
    parser.add_argument("--figures", default="docs/figures")
    args = parser.parse_args()
    reproducing = args.command == "reproduce"
    args.seeds = args.seeds if args.seeds is not None else (1 if reproducing else 5)
    args.jobs = args.jobs if args.jobs is not None else (1 if reproducing else 2)
    if args.loss == "sum" and not reproducing and args.remedies != ["baseline"]:
        parser.error("--loss sum is the critique's exact loss of the baseline: pass --remedies baseline")
    print(f"command: python benchmarks/collapse.py {' '.join(sys.argv[1:])}")
    reproduce(args) if args.command == "reproduce" else study(args)


if __name__ == "__main__":
    main()
