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
import os
import signal
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from npkit.data.sampling import TaskSampler
from npkit.models import NeuralProcess
from npkit.objectives import LossOutput, StepObjective, as_step_objective
from npkit.runs import (
    CheckpointError,
    checkpoint_state,
    latest_checkpoint,
    metrics_csv,
    model_dir,
    prune_checkpoints,
    read_meta,
    restore_checkpoint,
    run_lock,
    save_checkpoint,
    save_model,
)
from npkit.settings import TrainConfig
from npkit.tasks import Batch, validated_inputs

# Settings that change the trajectory: a resumed run must use the same values (and the same
# cosine horizon, see ``horizon``).
TRAJECTORY = ("batch_size", "lr", "schedule", "grad_clip", "seed", "precision", "devices")


def default_threads() -> int:
    """Torch threads for training: ``$NPKIT_THREADS`` if set, else 1 (see ``TrainConfig.threads``)."""
    value = os.environ.get("NPKIT_THREADS", "1")
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"NPKIT_THREADS must be a positive integer, got {value!r}")
    return int(value)


class CosineSchedule:
    """Learning-rate factor 0.5 (1 + cos(pi u)), u = (step - start) / (end - start) clamped to
    [0, 1]: from 1 at ``start`` to 0 at ``end``, and 0 after it (never climbing again). A class,
    not a lambda, so ``LambdaLR.state_dict`` saves ``start`` and ``end`` with the checkpoint."""

    def __init__(self, start: int, end: int) -> None:
        self.start, self.end = start, end

    def __call__(self, step: int) -> float:
        u = min(max((step - self.start) / max(self.end - self.start, 1), 0.0), 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * u))


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on SIGINT/SIGTERM after saving a checkpoint; ``str()`` says how to resume.

    Raised by `fit` in a single process (with DDP a killed run resumes from its last periodic
    checkpoint, ``checkpoint_every``). A `KeyboardInterrupt`, so an uncaught one ends a script
    as Ctrl-C does.

    Examples:
        >>> try:  # doctest: +SKIP
        ...     npkit.fit(model, data, run_dir="runs/a", steps=10_000)
        ... except npkit.TrainingInterrupted:
        ...     npkit.fit(model, data, run_dir="runs/a", steps=10_000, resume=True)
    """


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


def training_log(run_dir: str | Path) -> list[dict[str, float]]:
    """The rows `fit` (or ``npkit train``) logged in a run folder, read back from its CSV log.

    The same rows `fit` returns, one per logged step (``step``, ``train/loss``, ``eval/tar_ll``,
    ...), so a run trained in another process (``npkit train``, DDP) is read as one trained here.

    Args:
        run_dir: the run folder.

    Returns:
        The logged rows, each a dict of the metrics logged at that step.

    Examples:
        >>> rows = npkit.training_log("runs/quick")  # doctest: +SKIP
        >>> losses = [row["train/loss"] for row in rows if "train/loss" in row]  # doctest: +SKIP
    """
    return _read_csv_rows(metrics_csv(run_dir), math.inf)


def _read_csv_rows(path: Path, until_step: int) -> list[dict[str, float]]:
    """The logged rows up to ``until_step``; a corrupt log is named (it is rewritten on resume)."""
    try:
        with path.open(newline="") as file:
            rows = [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(file)]
    except (ValueError, TypeError, UnicodeDecodeError, csv.Error) as err:
        raise ValueError(
            f"cannot read the training log {path} ({err}); move it aside to resume without its old rows"
        ) from err
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


def check_resume(
    folder: Path, model: NeuralProcess, cfg: TrainConfig, objective: str, objective_options: dict, data: TaskSampler
) -> dict[str, Any]:
    """The state of checkpoint ``folder`` if the run can continue from it with these settings;
    otherwise a ``CheckpointError`` listing every setting that would change the trajectory."""
    state = checkpoint_state(folder)
    saved = state["train"]
    differs = {f"train.{k}": (saved.get(k), getattr(cfg, k)) for k in TRAJECTORY if saved.get(k) != getattr(cfg, k)}
    saved_horizon = _schedule_end(state)
    horizon = cfg.schedule_steps or cfg.steps
    if cfg.schedule == "cosine" and saved_horizon != horizon:
        differs["cosine horizon (train.schedule_steps or train.steps)"] = (saved_horizon, horizon)
    now = {"objective": objective, "objective_options": objective_options, "data": repr(data)}
    differs |= {k: (state.get(k), v) for k, v in now.items() if state.get(k) != v}
    meta = read_meta(folder / "config.json")
    saved_config, config = meta.get("config") or {}, model.config.to_dict()
    if meta.get("model") != model.name:
        differs["model"] = (meta.get("model"), model.name)
    else:
        keys = sorted(k for k in {*saved_config, *config} if saved_config.get(k) != config.get(k))
        differs |= {f"model.{k}": (saved_config.get(k), config.get(k)) for k in keys}
    if differs:
        lines = "; ".join(f"{k}: saved {old!r}, now {new!r}" for k, (old, new) in differs.items())
        hint = ""
        if any(k.startswith("cosine horizon") for k in differs):
            hint = (
                f" (to train longer, keep the old horizon with --set train.schedule_steps={saved_horizon}, "
                "or pass --extend to restart the cosine schedule over the remaining steps)"
            )
        raise CheckpointError(f"cannot resume from {folder}: settings differ: {lines}{hint}")
    return state


@contextmanager
def _stop_requests() -> Iterator[list[int]]:
    """Collect SIGINT/SIGTERM into a list instead of dying mid-step (main thread only), so the
    loop can save a checkpoint first; the previous handlers are restored afterwards."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda signum, frame: received.append(signum))
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _check_accelerator(cfg: TrainConfig) -> None:
    """One clear line for a device this machine does not have (instead of Lightning's traceback)."""
    if cfg.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ValueError(f"train.accelerator={cfg.accelerator} but no CUDA GPU is available here; use auto or cpu")
    if cfg.accelerator == "mps" and not torch.backends.mps.is_available():
        raise ValueError("train.accelerator=mps but MPS is not available here; use auto or cpu")


def adam(model: nn.Module, lr: float) -> torch.optim.Adam:
    """Adam with the fused kernel (one pass over every parameter; about 9% off a CNP step of width
    256 on CPU, benchmarks/step_time.py --peer), or the default implementation where the parameters' device or
    dtype has no fused kernel. Both give the same updates up to float round-off."""
    try:
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.Adam(model.parameters(), lr=lr)


def fit(
    model: NeuralProcess,
    data: TaskSampler,
    objective: str | Callable = "auto",
    objective_options: dict | None = None,
    config: TrainConfig | None = None,
    run_dir: str | Path | None = None,
    resume: bool = False,
    extend: bool = False,
    callbacks: Sequence[Callback] = (),
    **options,
) -> list[dict[str, float]]:
    """Train ``model`` on batches from ``data`` with ``objective``; return the logged rows.

    One loop on Lightning Fabric, from a laptop CPU to multi-GPU DDP. Every step draws its
    batch from a generator seeded by (seed, step, rank). SIGINT/SIGTERM save a checkpoint (with
    a ``run_dir``), then raise ``TrainingInterrupted``. A resumed run is bit-identical to an
    uninterrupted one on the same hardware with the same thread count. It sets torch's intra-op
    threads of the process to ``threads`` (default ``$NPKIT_THREADS``, else 1) and leaves them
    so: set them again after it (``torch.set_num_threads``) if the rest of a notebook wants more.

    Args:
        model: the model, trained in place.
        data: the task sampler batches are drawn from.
        objective: a name in ``npkit.OBJECTIVES`` or "auto" (``nll`` for deterministic models,
            ``elbo`` for latent ones), or any callable ``(model, batch) -> loss`` or
            ``(model, batch, step) -> loss`` (a step-dependent KL weight, say), where loss is
            a `LossOutput` or a scalar tensor.
        objective_options: keyword arguments of a named objective (``{"num_samples": 4}``;
            ``warmup_steps`` turns the ``elbo`` into `KLAnnealing`).
        config: the loop settings (None: the defaults of `TrainConfig`).
        run_dir: a folder for CSV (and TensorBoard) logs, checkpoints and the final model
            (``run_dir/model``); its lock is held while training (None: nothing is written).
        resume: continue from the latest checkpoint in ``run_dir`` after checking that no
            setting changes the trajectory.
        extend: with ``resume``, allow more steps than the saved run and restart the cosine
            schedule from ``lr`` over the remaining steps.
        callbacks: callables ``(step, model, output)`` run after every optimiser step; a dict
            they return is logged at that step (rank 0).
        **options (Any): `TrainConfig` fields overriding ``config``
            (``fit(model, data, steps=2000, lr=1e-3)``).

    Returns:
        The logged rows, each a dict with ``step`` and the metrics logged at that step.

    Examples:
        >>> model = npkit.build_model("np")
        >>> rows = npkit.fit(model, npkit.make_sampler("gp1d"), steps=2000, run_dir="runs/np")
        >>> rows[-1]["train/loss"]
    """
    cfg = TrainConfig.from_dict({**(asdict(config) if config else {}), **options})
    objective_options = dict(objective_options or {})
    loss_fn = as_step_objective(objective, model, **objective_options)
    _check_accelerator(cfg)
    if resume and run_dir is None:
        raise ValueError("resume=True needs the run_dir to resume from")
    if extend and not resume:
        raise ValueError("extend=True continues a run: pass resume=True too")
    torch.set_num_threads(cfg.threads or default_threads())
    if cfg.diagnose_every is not None:
        if not model.is_latent:
            raise ValueError(f"train.diagnose_every needs a latent model; {type(model).__name__} has no posterior")
        from npkit.evaluation.diagnostics import CollapseMonitor

        callbacks = (*callbacks, CollapseMonitor(data, every=cfg.diagnose_every))
    objective_name = objective if isinstance(objective, str) else getattr(objective, "__qualname__", repr(objective))
    run_state = {
        "train": asdict(cfg),
        "objective": objective_name,
        "objective_options": objective_options,
        "data": repr(data),
    }
    if run_dir is None:
        return _train(model, data, loss_fn, cfg, None, None, run_state, extend, callbacks)
    from lightning_fabric.utilities.rank_zero import rank_zero_only  # lazily: importing it takes ~1 s

    with run_lock(run_dir) if rank_zero_only.rank == 0 else nullcontext():
        checkpoint = None
        if resume:
            checkpoint = latest_checkpoint(run_dir)
            prune_checkpoints(run_dir, cfg.keep_checkpoints)  # half-written folders of a killed run
            saved_end = _schedule_end(checkpoint_state(checkpoint))
            checked = replace(cfg, schedule_steps=None, steps=saved_end) if extend else cfg
            check_resume(checkpoint, model, checked, objective_name, objective_options, data)
        return _train(model, data, loss_fn, cfg, Path(run_dir), checkpoint, run_state, extend, callbacks)


def _schedule_end(state: dict[str, Any]) -> int:
    """The step at which the cosine schedule of a saved run ends (later for an extended run)."""
    return state.get("schedule_end") or state["train"].get("schedule_steps") or state["train"]["steps"]


def _train(
    model: NeuralProcess,
    data: TaskSampler,
    loss_fn: StepObjective,
    cfg: TrainConfig,
    run_dir: Path | None,
    checkpoint: Path | None,
    run_state: dict[str, Any],
    extend: bool,
    callbacks: Sequence[Callback],
) -> list[dict[str, float]]:
    """The loop of `fit`, once settings and the resume point are checked."""
    from lightning_fabric import Fabric

    fabric = Fabric(
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        strategy=cfg.strategy,
        precision=cfg.precision,
        loggers=_loggers(run_dir, checkpoint_state(checkpoint)["step"] if checkpoint else None),
    )
    fabric.launch()
    optimizer = adam(model, cfg.lr)
    scheduler = None
    if cfg.schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, CosineSchedule(0, cfg.schedule_steps or cfg.steps))
    loss_module = LossModule(model, loss_fn)
    if cfg.compile:  # Fabric unwraps it, sets it up (DDP) and compiles the result with the same options
        loss_module = torch.compile(loss_module, dynamic=True)
    module, optimizer = fabric.setup(loss_module, optimizer)
    start = int(restore_checkpoint(checkpoint, model, optimizer, scheduler)["step"]) if checkpoint else 0
    schedule_end = cfg.schedule_steps or cfg.steps
    if checkpoint is not None:
        schedule_end = _schedule_end(checkpoint_state(checkpoint))
        if extend and scheduler is not None and cfg.steps > start:
            for group in optimizer.param_groups:
                group["lr"] = group["initial_lr"] = cfg.lr
            restart = CosineSchedule(start, cfg.steps)
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, restart, last_epoch=start - 1)
            schedule_end = cfg.steps
    run_state = {**run_state, "schedule_end": schedule_end}

    evaluation = eval_set(data, cfg) if cfg.eval_every else []
    history: list[dict[str, float]] = []
    running_ll = None
    bar = tqdm(
        total=cfg.steps,
        initial=start,
        desc="train",
        dynamic_ncols=True,
        disable=not (cfg.progress and fabric.is_global_zero),
    )
    single = fabric.world_size == 1
    with _stop_requests() if single else nullcontext([]) as stop:
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
                stacked = torch.stack([t.detach().float() for t in terms.values()])
                stats = fabric.all_reduce(stacked, reduce_op="mean")
                row = dict(zip(terms, stats.tolist()), lr=lr)
                if not math.isfinite(row["train/loss"]):
                    raise FloatingPointError(
                        f"loss became {row['train/loss']} at step {done}; lower lr or set grad_clip"
                    )
                shown = row.get("train/log_lik", -row["train/loss"])
                running_ll = shown if running_ll is None else 0.9 * running_ll + 0.1 * shown
                bar.set_postfix(loss=f"{row['train/loss']:.3f}", ll=f"{running_ll:.3f}")
            for callback in callbacks:
                row.update(callback(done, model, out) or {})
            if evaluation and fabric.is_global_zero and (done % cfg.eval_every == 0 or done == cfg.steps):
                from npkit.evaluation.metrics import evaluate

                scores = evaluate(model, evaluation, num_samples=cfg.eval_samples)
                row.update({f"eval/{k}": scores[k] for k in ("ctx_ll", "tar_ll")})
            if row:
                fabric.log_dict(row, step=done)
                history.append({"step": done, **row})
            due = done % cfg.checkpoint_every == 0 or done == cfg.steps or stop
            if run_dir is not None and due:
                if fabric.is_global_zero:
                    for logger in fabric.loggers:
                        logger.save()
                    save_checkpoint(run_dir, model, optimizer, scheduler, done, run_state, cfg.keep_checkpoints)
                fabric.barrier()
            bar.update(1)
            if stop:
                bar.close()
                saved = f"; checkpoint saved in {run_dir}" if run_dir is not None else " (no run_dir: nothing saved)"
                raise TrainingInterrupted(f"interrupted by signal {stop[0]} at step {done}{saved}")
    bar.close()
    if run_dir is not None and fabric.is_global_zero:
        save_model(model, model_dir(run_dir))
        for logger in fabric.loggers:
            logger.finalize("success")
    return history
