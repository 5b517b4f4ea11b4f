"""``fit``: one training loop on Lightning Fabric, from a laptop CPU to multi-GPU DDP.

Every step draws its batch from a generator seeded by (seed, step, rank) and reseeds the
global RNG the same way, so a run resumed from a checkpoint continues exactly as an
uninterrupted run would. Checkpoints land in ``run_dir/checkpoints/step-<8-digit step>/`` and
``latest.json`` points at the newest complete one.
"""

from __future__ import annotations

import csv
import importlib.util
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from npkit.data.sampling import TaskSampler
from npkit.models import NeuralProcess
from npkit.objectives import LossOutput, StepObjective, as_step_objective
from npkit.options import from_options
from npkit.runs import (
    CheckpointError,
    checkpoint_state,
    latest_checkpoint,
    metrics_csv,
    model_dir,
    restore_checkpoint,
    save_checkpoint,
    save_model,
)
from npkit.tasks import Batch, validated_inputs

# Settings that change the trajectory: a resumed run must use the same values.
TRAJECTORY = ("batch_size", "lr", "schedule", "schedule_steps", "grad_clip", "seed")


@dataclass
class TrainConfig:
    """Loop settings. ``schedule_steps`` is the cosine horizon (default: ``steps``).
    ``accelerator``, ``devices``, ``strategy`` and ``precision`` go to Lightning Fabric: "auto"
    uses a GPU when one is present, else the CPU; ``devices=2, strategy="ddp"`` runs DDP."""

    steps: int = 1000
    batch_size: int = 16
    lr: float = 5e-4
    schedule: str = "cosine"
    schedule_steps: int | None = None
    grad_clip: float | None = None
    seed: int = 0
    log_every: int = 10
    eval_every: int | None = None
    eval_batches: int = 8
    eval_samples: int = 16
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    accelerator: str = "auto"
    devices: int | str = 1
    strategy: str = "auto"
    precision: str = "32-true"
    progress: bool = True

    def __post_init__(self) -> None:
        for f in (
            "steps",
            "batch_size",
            "log_every",
            "eval_batches",
            "eval_samples",
            "checkpoint_every",
            "keep_checkpoints",
        ):
            if not isinstance(getattr(self, f), int) or getattr(self, f) < 1:
                raise ValueError(f"{f} must be a positive integer, got {getattr(self, f)!r}")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule must be 'cosine' or 'constant', got {self.schedule!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip}")

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        return from_options(cls, values, "train")


class LossModule(nn.Module):
    """model + objective as one module, so Fabric/DDP wrap the whole loss computation. The batch
    was validated when it was built, so the model skips its value checks (no device sync)."""

    def __init__(self, model: NeuralProcess, objective: StepObjective) -> None:
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, batch: Batch, step: int) -> LossOutput:
        with validated_inputs():
            return self.objective(self.model, batch, step)


Callback = Callable[[int, NeuralProcess, LossOutput], "dict[str, float] | None"]


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    """A reproducible seed for one (run seed, step, rank)."""
    return hash((seed, step, rank)) & 0x7FFF_FFFF_FFFF_FFFF


def eval_set(data: TaskSampler, cfg: TrainConfig) -> list[Batch]:
    """The fixed batches the loop evaluates on (seeded apart from the training stream)."""
    generator = torch.Generator().manual_seed(step_seed(cfg.seed, -1))
    return [data.sample(cfg.batch_size, generator) for _ in range(cfg.eval_batches)]


def _read_csv_rows(path: Path, until_step: int) -> list[dict[str, float]]:
    with path.open(newline="") as file:
        rows = [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(file)]
    return [row for row in rows if row.get("step", math.inf) <= until_step]


def _loggers(run_dir: Path | None, resume_step: int | None) -> list:
    """CSV (and TensorBoard when installed) loggers. Fabric's CSV logger starts a fresh file, so
    on resume the rows up to the checkpoint are read first and replayed into it."""
    if run_dir is None:
        return []
    from lightning_fabric.loggers import CSVLogger, TensorBoardLogger

    csv_path = metrics_csv(run_dir)
    previous = _read_csv_rows(csv_path, resume_step) if resume_step is not None and csv_path.is_file() else []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Experiment logs directory .* exists", category=UserWarning)
        csv_logger = CSVLogger(str(run_dir), name="logs", version=0, flush_logs_every_n_steps=1000)
        for row in previous:
            step = int(row.pop("step"))
            csv_logger.log_metrics(row, step=step)
    loggers = [csv_logger]
    if importlib.util.find_spec("tensorboard") is not None:
        loggers.append(TensorBoardLogger(str(run_dir), name="tensorboard", version=0))
    return loggers


def _check_resumable(state: dict[str, Any], cfg: TrainConfig, folder: Path) -> None:
    """Refuse to resume with settings that change the trajectory."""
    saved = state.get("train", {})
    differs = {k: (saved.get(k), getattr(cfg, k)) for k in TRAJECTORY if saved.get(k) != getattr(cfg, k)}
    if differs:
        raise CheckpointError(f"cannot resume from {folder}: settings differ (saved, now): {differs}")


def fit(
    model: NeuralProcess,
    data: TaskSampler,
    objective: str | Callable = "auto",
    objective_options: dict | None = None,
    config: TrainConfig | None = None,
    run_dir: str | Path | None = None,
    resume: bool = False,
    callbacks: Sequence[Callback] = (),
    **options,
) -> list[dict[str, float]]:
    """Train ``model`` on batches from ``data`` with ``objective``; return the logged rows.

    ``objective``: a name in ``npkit.objectives.OBJECTIVES`` (or "auto") with
    ``objective_options``, or any callable ``(model, batch) -> loss`` or
    ``(model, batch, step) -> loss`` (a step-dependent KL weight, say), where loss is a
    ``LossOutput`` or a scalar tensor. ``callbacks``: callables ``(step, model, output)`` run
    after every optimiser step; a dict they return is logged at that step (rank 0).
    ``options`` override ``TrainConfig`` fields (``fit(model, data, steps=2000, lr=1e-3)``).
    With ``run_dir``, writes CSV (and TensorBoard) logs, checkpoints and the final model to
    ``run_dir/model``; ``resume=True`` continues from its latest checkpoint.
    """
    from lightning_fabric import Fabric

    cfg = TrainConfig.from_dict({**(asdict(config) if config else {}), **options})
    objective_options = dict(objective_options or {})
    loss_fn = as_step_objective(objective, model, **objective_options)
    run_dir = Path(run_dir) if run_dir is not None else None
    if resume and run_dir is None:
        raise ValueError("resume=True needs the run_dir to resume from")

    checkpoint = latest_checkpoint(run_dir) if resume else None
    resume_state = checkpoint_state(checkpoint) if checkpoint else None
    if resume_state is not None:
        _check_resumable(resume_state, cfg, checkpoint)
    fabric = Fabric(
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        strategy=cfg.strategy,
        precision=cfg.precision,
        loggers=_loggers(run_dir, resume_state["step"] if resume_state else None),
    )
    fabric.launch()
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    scheduler = None
    if cfg.schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.schedule_steps or cfg.steps)
    module, optimizer = fabric.setup(LossModule(model, loss_fn), optimizer)
    start = int(restore_checkpoint(checkpoint, model, optimizer, scheduler)["step"]) if checkpoint else 0

    evaluation = eval_set(data, cfg) if cfg.eval_every else []
    objective_name = objective if isinstance(objective, str) else getattr(objective, "__qualname__", repr(objective))
    run_state = {
        "train": asdict(cfg),
        "objective": objective_name,
        "objective_options": objective_options,
        "data": repr(data),
    }
    history: list[dict[str, float]] = []
    running_ll = None
    bar = tqdm(
        total=cfg.steps,
        initial=start,
        desc="train",
        dynamic_ncols=True,
        disable=not (cfg.progress and fabric.is_global_zero),
    )
    for step in range(start, cfg.steps):
        generator = torch.Generator().manual_seed(step_seed(cfg.seed, step, fabric.global_rank))
        torch.manual_seed(step_seed(cfg.seed, step, fabric.global_rank) ^ 1)
        batch = data.sample(cfg.batch_size, generator).to(fabric.device)
        module.train()
        out = module(batch, step)
        optimizer.zero_grad(set_to_none=True)
        fabric.backward(out.loss)
        if cfg.grad_clip is not None:
            fabric.clip_gradients(module, optimizer, max_norm=cfg.grad_clip)
        optimizer.step()
        lr = optimizer.param_groups[0]["lr"]
        if scheduler is not None:
            scheduler.step()
        done = step + 1
        row: dict[str, float] = {}
        if done % cfg.log_every == 0 or done == cfg.steps:
            terms = {"train/loss": out.loss, "train/log_lik": out.log_lik, "train/kl": out.kl}
            terms = {k: v for k, v in terms.items() if v is not None}
            stats = fabric.all_reduce(torch.stack([t.detach().float() for t in terms.values()]), reduce_op="mean")
            row = dict(zip(terms, stats.tolist()), lr=lr)
            if not math.isfinite(row["train/loss"]):
                raise FloatingPointError(f"loss became {row['train/loss']} at step {done}; lower lr or set grad_clip")
            shown = row.get("train/log_lik", -row["train/loss"])
            running_ll = shown if running_ll is None else 0.9 * running_ll + 0.1 * shown
            bar.set_postfix(loss=f"{row['train/loss']:.3f}", ll=f"{running_ll:.3f}")
        for callback in callbacks:
            row.update(callback(done, model, out) or {})
        if evaluation and fabric.is_global_zero and (done % cfg.eval_every == 0 or done == cfg.steps):
            from npkit.evaluation import evaluate

            scores = evaluate(model, evaluation, num_samples=cfg.eval_samples)
            row.update({f"eval/{k}": scores[k] for k in ("ctx_ll", "tar_ll")})
        if row:
            fabric.log_dict(row, step=done)
            history.append({"step": done, **row})
        if run_dir is not None and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
            if fabric.is_global_zero:
                for logger in fabric.loggers:
                    logger.save()
                save_checkpoint(run_dir, model, optimizer, scheduler, done, run_state, cfg.keep_checkpoints)
            fabric.barrier()
        bar.update(1)
    bar.close()
    if run_dir is not None and fabric.is_global_zero:
        save_model(model, model_dir(run_dir))
        for logger in fabric.loggers:
            logger.finalize("success")
    return history
