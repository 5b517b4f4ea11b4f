"""Training on several devices: one configuration trained four ways on Lightning Fabric, in one
CPU process, in two CPU processes under DDP (gloo), killed by SIGTERM and resumed, and in
bf16-mixed precision; the run folders are read back and their training curves compared.

    python docs/tutorials/devices.py [--steps N] [--out DIR]

The defaults (four runs of 1,500 steps of 16 tasks per process) take about two minutes on two
CPU cores (the DDP run's two processes take one each; the other runs use one).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning_fabric  # noqa: F401  (imported here, so that the first run's wall time leaves out its import)
import torch
import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

import npkit

FIGURES = Path(__file__).resolve().parent.parent / "figures" / "tutorials"
MODEL = {"name": "cnp", "hidden_dim": 64, "r_dim": 64}  # a small CNP: the point is the loop, not the model
DATA = {"name": "gp1d", "kernel": "rbf"}


def train_settings(steps: int) -> dict:
    """The ``train`` section shared by every run: the loop evaluates on the same 32 fixed batches
    every steps / 15 steps (``eval/tar_ll``), and checkpoints every steps / 2."""
    return {
        "steps": steps,
        "batch_size": 16,  # tasks per step *per process*
        "lr": 5e-4,
        "seed": 0,
        "log_every": max(steps // 100, 1),
        "eval_every": max(steps // 15, 1),
        "eval_batches": 32,
        "checkpoint_every": max(steps // 2, 1),
        "progress": False,
    }


def new_model() -> npkit.NeuralProcess:
    """The model `npkit train` builds for MODEL: the global RNG seeded by train.seed first, so
    every run below (and each DDP process) starts from the same weights."""
    torch.manual_seed(0)
    return npkit.build_model(MODEL["name"], **{k: v for k, v in MODEL.items() if k != "name"})


def parameters(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def main(steps: int = 1500, out: str | Path = FIGURES) -> dict:
    out = Path(out)
    torch.set_num_threads(1)  # these networks are small: more threads gain little
    data = npkit.make_sampler(DATA["name"], kernel=DATA["kernel"])
    train = train_settings(steps)
    runs = Path(tempfile.mkdtemp(prefix="npkit-devices-"))  # the four run folders
    print(f"run folders: {runs}")
    wall: dict[str, float] = {}

    # 1. One process, float32 (train.precision=32-true, the default). npkit.fit with a run_dir is
    # what `npkit train` runs: it writes checkpoints/, logs/ (CSV) and model/ into the folder.
    start = time.perf_counter()
    npkit.fit(new_model(), data, "nll", run_dir=runs / "one", **train)
    wall["one"] = time.perf_counter() - start

    # 2. Two processes under DDP: train.devices=2 with train.strategy=ddp. Fabric starts the second
    # process by running the same command again, so DDP runs as a command, `npkit train` on a
    # YAML file holding the same settings (python -m npkit is the `npkit` command). Each process
    # draws its own batch of 16 tasks (from the seed, the step and its rank), DDP averages the
    # two gradients, and both take the same optimiser step: 32 tasks per step in all. On a CPU
    # the processes talk through gloo; rank 0 alone evaluates, logs and writes the run folder.
    config = runs / "cnp.yaml"
    config.write_text(yaml.safe_dump({"model": MODEL, "data": DATA, "objective": {"name": "nll"}, "train": train}))
    command = [sys.executable, "-m", "npkit", "train", str(config), "--run-dir", str(runs / "ddp")]
    command += ["--set", "train.accelerator=cpu", "--set", "train.devices=2", "--set", "train.strategy=ddp"]
    start = time.perf_counter()
    done = subprocess.run(command, env={**os.environ, "NPKIT_THREADS": "1"}, capture_output=True, text=True)
    wall["ddp"] = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"the DDP run failed:\n{done.stderr[-3000:]}")
    print(done.stdout.strip())  # `npkit train` prints one line, from rank 0

    # 3. Killed and resumed. A callback sends this process SIGTERM at 60 % of the steps, as a job
    # scheduler would: fit finishes the step, saves a checkpoint and raises TrainingInterrupted.
    # fit(..., resume=True) (`npkit train --resume --run-dir ...` on the command line) checks that
    # no setting changes the trajectory, restores the weights, Adam's state and the schedule, and
    # continues: every step's batch comes from (seed, step, rank), so it continues exactly.
    kill_at = max(int(0.6 * steps), 1)

    def sigterm(step: int, model, output) -> None:
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGTERM)

    start = time.perf_counter()
    try:
        npkit.fit(new_model(), data, "nll", run_dir=runs / "resumed", callbacks=[sigterm], **train)
    except npkit.TrainingInterrupted as stop:
        print(f"killed: {stop}")
    latest = json.loads((runs / "resumed" / "checkpoints" / "latest.json").read_text())["path"]
    stopped_at = int(latest.removeprefix("step-"))  # the checkpoint the signal saved: step-00000900
    npkit.fit(new_model(), data, "nll", run_dir=runs / "resumed", resume=True, **train)
    wall["resumed"] = time.perf_counter() - start

    # 4. bf16-mixed: the networks' matrix products run in bfloat16 (torch.autocast), the weights,
    # Adam and the likelihood stay float32. On this CPU it is for showing the setting, not speed.
    start = time.perf_counter()
    npkit.fit(new_model(), data, "nll", run_dir=runs / "bf16", precision="bf16-mixed", **train)
    wall["bf16"] = time.perf_counter() - start

    # What stays the same: every run folder has the same layout, and its model/ loads in one
    # plain process, the DDP run's included. A resume must keep the settings that change the
    # trajectory: resuming the 2-process run in 1 process is refused (train.devices differs).
    models = {name: npkit.load_model(runs / name / "model") for name in wall}
    try:
        npkit.fit(new_model(), data, "nll", run_dir=runs / "ddp", resume=True, **train)
        refused = ""
    except npkit.CheckpointError as err:
        refused = str(err)
    print(f"resuming the DDP run in one process: {refused.split(': ', 2)[-1]}")
    resume_diff = (parameters(models["resumed"]) - parameters(models["one"])).abs().max().item()
    bf16_diff = (parameters(models["bf16"]) - parameters(models["one"])).abs().max().item()
    print(f"max |parameter difference| from the 1-process run: resumed {resume_diff}, bf16-mixed {bf16_diff:.3g}")

    # The curves, read back from each run folder's CSV log.
    metrics = {name: npkit.training_log(runs / name) for name in wall}
    label = {
        "one": "1 process, 32-true",
        "ddp": "2 processes (DDP, gloo), 32-true",
        "resumed": f"1 process, killed at step {stopped_at} and resumed",
        "bf16": "1 process, bf16-mixed",
    }
    world = {"one": 1, "ddp": 2, "resumed": 1, "bf16": 1}
    table = {}
    columns = ("steps", "tasks seen", "wall s", "first loss", "loss, last 10%", "eval tar_ll")
    print(f"{'run':<46} " + " ".join(f"{c:>{max(len(c), 7)}}" for c in columns))
    for name, rows in metrics.items():
        losses = [r["train/loss"] for r in rows if "train/loss" in r]
        last = losses[-max(len(losses) // 10, 1) :]  # the mean of the last tenth of the logged losses
        evals = [r["eval/tar_ll"] for r in rows if "eval/tar_ll" in r]
        table[name] = {
            "steps": int(rows[-1]["step"]),
            "tasks": int(rows[-1]["step"]) * train["batch_size"] * world[name],
            "wall_s": wall[name],
            "first_loss": losses[0],
            "final_loss": sum(last) / len(last),
            "eval_tar_ll": evals[-1],
        }
        t = table[name]
        print(
            f"{label[name]:<46} {t['steps']:>7} {t['tasks']:>10,} {t['wall_s']:>7.1f} {t['first_loss']:>10.4f}"
            f" {t['final_loss']:>14.4f} {t['eval_tar_ll']:>11.4f}"
        )

    # The final models on 20 x 16 new tasks, beside the GP oracle (the exact GP posterior).
    evalset = npkit.make_eval_set(data, num_batches=20, batch_size=16, seed=1234)
    results = {label[name]: npkit.evaluate(model, evalset) for name, model in models.items()}
    results["GP oracle"] = npkit.evaluate_gp(evalset)
    print(npkit.format_table(results))

    fig = Figure(figsize=(13, 4.2), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    loss_ax, step_ax, task_ax = fig.subplots(1, 3)
    style = {"one": "-", "ddp": "-", "resumed": (0, (2, 3)), "bf16": "-"}
    for i, (name, rows) in enumerate(metrics.items()):
        color = f"C{i}"
        logged = [r for r in rows if "train/loss" in r]
        window = max(len(logged) // 20, 1)  # a running mean: one step's loss is noisy
        smooth = [
            sum(r["train/loss"] for r in logged[j : j + window]) / window for j in range(len(logged) - window + 1)
        ]
        loss_ax.plot([r["step"] for r in logged[window - 1 :]], smooth, color=color, ls=style[name], label=label[name])
        evals = [r for r in rows if "eval/tar_ll" in r]
        for ax, scale in ((step_ax, 1), (task_ax, train["batch_size"] * world[name])):
            ax.plot(
                [r["step"] * scale for r in evals],
                [r["eval/tar_ll"] for r in evals],
                "o",
                color=color,
                ls=style[name],
                ms=3,
                label=label[name],
            )
    loss_ax.axvline(stopped_at, color="0.6", lw=0.8)
    loss_ax.set(xlabel="step", ylabel="train/loss (running mean)", title="training loss")
    step_ax.set(xlabel="step", ylabel="eval/tar_ll", title="the loop's evaluation, per step")
    task_ax.set(xlabel="tasks seen (all processes)", ylabel="eval/tar_ll", title="per task seen")
    loss_ax.legend(fontsize="small")
    fig.suptitle(f"cnp on gp1d (RBF), {steps:,} steps of 16 tasks per process, read from the run folders' CSV logs")
    figure = out / "devices-curves.png"
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure)
    print(f"figure: {figure}")

    return {
        "steps": steps,
        "stopped_at": stopped_at,
        "resume_diff": resume_diff,
        "bf16_diff": bf16_diff,
        "refused": refused,
        "runs": table,
        "tar_ll": {name: results[label[name]]["tar_ll"] for name in models},
        "oracle_tar_ll": results["GP oracle"]["tar_ll"],
        "run_dirs": {name: str(runs / name) for name in wall},
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500, help="training steps (default 1500)")
    parser.add_argument("--out", type=Path, default=FIGURES, help="folder for the figures")
    args = parser.parse_args()
    main(args.steps, args.out)
