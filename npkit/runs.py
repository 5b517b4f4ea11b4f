"""The run folder and the checkpoint format, in one place.

    run_dir/
      config.yaml                       the run's settings (written by the CLI)
      checkpoints/step-00001000/        model.safetensors + config.json (a model export),
                                        optimizer.safetensors + state.json (the loop state)
      checkpoints/latest.json           points at the newest complete checkpoint; written last
      .lock                             held (flock) by the one process that trains in the folder
      logs/version_0/metrics.csv        the CSV log (tensorboard/ beside it when installed)
      model/                            the final model export
      figures/, metrics.json, metrics.txt

A model export is a folder with ``model.safetensors`` (the state dict) and ``config.json``
(``{"format": "npkit", "version", "model": <registered name>, "config": {...}}``), so any
family registered in ``npkit.models.MODELS`` saves and loads with no change here. Files are
written atomically (``npkit.files``), so a run killed mid-write leaves the previous checkpoint
intact; nothing is ever unpickled.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from npkit.files import FileError, read_json, read_tensors, write_json, write_tensors
from npkit.models import MODELS, NeuralProcess

FORMAT = "npkit"
VERSION = 2
RUN_CONFIG = "config.yaml"


class CheckpointError(FileError):
    """A checkpoint is missing, corrupt, or incompatible with what is asked of it.

    A ``ValueError`` (through ``npkit.files.FileError``); the message names the file or folder.
    """


class RunLockedError(ValueError):
    """Another process is training in the run folder."""


_HELD: dict[Path, tuple[int, int]] = {}  # run folder -> (fd, depth) of the locks this process holds


@contextmanager
def run_lock(run_dir: str | Path) -> Iterator[Path]:
    """Hold the run folder's exclusive lock for the life of a train or resume.

    The lock is an ``flock`` on ``run_dir/.lock``: the OS releases it when the process dies, so
    a kill -9 never leaves a stale lock. A second writer is refused with a ``RunLockedError``
    naming the folder and the holder's pid. Re-entrant within one process (the CLI and ``fit``
    both take it). Readers (eval, plot) need no lock: every file is replaced atomically.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"--run-dir {run_dir} is a file; give a folder")
    key = run_dir.resolve()
    if key in _HELD:
        fd, depth = _HELD[key]
        _HELD[key] = (fd, depth + 1)
        try:
            yield run_dir
        finally:
            fd, depth = _HELD[key]
            _HELD[key] = (fd, depth - 1)
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise RunLockedError(
            f"{run_dir} is in use by another npkit run (pid {holder}); wait for it to finish or pick another --run-dir"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    _HELD[key] = (fd, 1)
    try:
        yield run_dir
    finally:
        fd, depth = _HELD.pop(key)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def holds_run(run_dir: str | Path) -> bool:
    """Whether a folder already holds (part of) a run: settings, checkpoints, logs or a model."""
    run_dir = Path(run_dir)
    return any((run_dir / part).exists() for part in (RUN_CONFIG, "checkpoints", "logs", "model"))


def checkpoints_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def model_dir(run_dir: str | Path) -> Path:
    """Where ``fit`` exports the final model of a run."""
    return Path(run_dir) / "model"


def metrics_csv(run_dir: str | Path) -> Path:
    """The CSV log that `fit` (and ``npkit train``) writes in a run folder.

    One row per logged step: ``step``, ``train/loss`` and the other logged metrics
    (``eval/tar_ll`` at each evaluation); `plot_training_curves` reads it.

    Args:
        run_dir: the run folder.

    Returns:
        ``run_dir/logs/version_0/metrics.csv`` (whether or not it exists yet).

    Examples:
        >>> rows = list(csv.DictReader(npkit.metrics_csv("runs/quick").open()))  # doctest: +SKIP
    """
    return Path(run_dir) / "logs" / "version_0" / "metrics.csv"


# ----------------------------------------------------------------------------- model exports


def read_meta(path: Path) -> dict[str, Any]:
    """A checkpoint JSON file, checked for the npkit format and version."""
    data = read_json(path, CheckpointError)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f'{path} is not an npkit checkpoint (no "format": "{FORMAT}")')
    if data.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {data.get('version')}; this npkit reads {VERSION}")
    return data


def model_meta(model: NeuralProcess) -> dict[str, Any]:
    return {"format": FORMAT, "version": VERSION, "model": model.name, "config": model.config.to_dict()}


def model_from_meta(meta: dict, source: Path) -> NeuralProcess:
    name = meta.get("model")
    if name not in MODELS:
        raise CheckpointError(f"{source}: unknown model {name!r}; expected one of {sorted(MODELS)}")
    cls = MODELS[name]
    try:
        return cls(cls.config_class.from_dict(meta.get("config", {})))
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{source}: invalid model config: {err}") from err


def load_state(module: nn.Module, tensors: dict[str, Tensor], source: Path) -> None:
    """Load tensors into module, refusing missing/extra keys, wrong shapes and non-finite values."""
    expected = module.state_dict()
    missing, unexpected = set(expected) - set(tensors), set(tensors) - set(expected)
    if missing or unexpected:
        raise CheckpointError(
            f"{source} does not match the model: missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
        )
    for key, value in tensors.items():
        if value.shape != expected[key].shape:
            raise CheckpointError(
                f"{source}: {key} has shape {tuple(value.shape)}, the model expects {tuple(expected[key].shape)}"
            )
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise CheckpointError(f"{source}: {key} holds NaN or inf values; the checkpoint is unusable")
    module.load_state_dict(tensors)


def save_model(model: NeuralProcess, directory: str | Path) -> Path:
    """Export a model: write ``model.safetensors`` and ``config.json`` into ``directory``.

    The state dict goes to safetensors and the family's name and config to JSON, so any
    registered family saves and loads with no pickle involved. Files are written atomically.

    Args:
        model: a model of a family registered in ``npkit.MODELS``.
        directory: the folder (created if missing).

    Returns:
        ``directory`` as a ``Path``.

    Examples:
        >>> npkit.save_model(model, "exports/np")
        >>> same = npkit.load_model("exports/np")
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_tensors(directory / "model.safetensors", model.state_dict())
    write_json(directory / "config.json", model_meta(model))
    return directory


def load_model(directory: str | Path, map_location: str | torch.device = "cpu") -> NeuralProcess:
    """Rebuild a model saved by `save_model` (or the model of a training checkpoint).

    Args:
        directory: the folder holding ``model.safetensors`` and ``config.json`` (a run's
            ``run_dir/model``, or one of its ``checkpoints/step-...`` folders).
        map_location: the device the model is moved to.

    Returns:
        The model, in training mode (call ``.eval()`` to predict).

    Raises:
        CheckpointError: the folder or a file is missing, corrupt or does not match its
            model's config.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint folder {directory} does not exist")
    model = model_from_meta(read_meta(directory / "config.json"), directory)
    load_state(model, read_tensors(directory / "model.safetensors", CheckpointError), directory)
    return model.to(map_location)


# ----------------------------------------------------------------------------- training checkpoints


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict]:
    state = optimizer.state_dict()
    tensors = {}
    for index, values in state["state"].items():
        for key, value in values.items():
            tensors[f"{index}.{key}"] = value if isinstance(value, Tensor) else torch.tensor(value)
    return tensors, {"param_groups": state["param_groups"]}


def _optimizer_state(tensors: dict[str, Tensor], groups: dict) -> dict:
    state: dict[int, dict[str, Tensor]] = {}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": groups["param_groups"]}


def save_checkpoint(
    run_dir: Path, model: NeuralProcess, optimizer, scheduler, step: int, state: dict[str, Any], keep: int
) -> Path:
    """Write a complete checkpoint folder for ``step`` (with the loop ``state``), then point
    ``latest.json`` at it; prune all but the newest ``keep``."""
    root = checkpoints_dir(run_dir)
    folder = root / f"step-{step:08d}"
    staging = root / f".{folder.name}.partial{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    save_model(model, staging)
    tensors, groups = _optimizer_tensors(optimizer)
    write_tensors(staging / "optimizer.safetensors", tensors)
    scheduler_state = scheduler.state_dict() if scheduler else None
    loop = {"format": FORMAT, "version": VERSION, "step": step, "optimizer": groups, "scheduler": scheduler_state}
    write_json(staging / "state.json", {**state, **loop})
    if folder.exists():  # a stale folder of the same step (left by a killed run); never latest's target
        shutil.rmtree(folder)
    os.replace(staging, folder)
    write_json(root / "latest.json", {"format": FORMAT, "version": VERSION, "step": step, "path": folder.name})
    prune_checkpoints(run_dir, keep)
    return folder


def _step_of(folder: Path) -> int | None:
    try:
        return int(folder.name.removeprefix("step-"))
    except ValueError:
        return None


def prune_checkpoints(run_dir: str | Path, keep: int) -> None:
    """Keep the checkpoint ``latest.json`` points at and the ``keep - 1`` newest older ones.

    Folders newer than the latest (left by a killed run, or by a run resumed with another
    checkpoint interval) and half-written staging folders are removed: they are never resumed
    from. Nothing is removed when ``latest.json`` cannot be read.
    """
    root = checkpoints_dir(run_dir)
    try:
        latest = _step_of(latest_checkpoint(run_dir))
    except CheckpointError:
        return
    folders = {s: f for f in root.glob("step-*") if f.is_dir() and (s := _step_of(f)) is not None}
    older = sorted(s for s in folders if s < latest)
    doomed = [folders[s] for s in folders if s > latest]
    doomed += [folders[s] for s in older[: max(0, len(older) - (keep - 1))]]
    doomed += [f for f in root.glob(".step-*.partial*") if not f.name.endswith(f"partial{os.getpid()}")]
    for folder in doomed:
        shutil.rmtree(folder, ignore_errors=True)


def latest_checkpoint(run_dir: str | Path) -> Path:
    """The newest complete checkpoint folder of a run."""
    root = checkpoints_dir(run_dir)
    pointer = read_meta(root / "latest.json")
    folder = root / str(pointer.get("path"))
    if not folder.is_dir():
        raise CheckpointError(f"{root / 'latest.json'} points at {folder}, which does not exist")
    return folder


def checkpoint_state(folder: Path) -> dict[str, Any]:
    """The loop state saved with a checkpoint (step, settings, objective, ...), checked for the
    keys a resume needs."""
    path = folder / "state.json"
    state = read_meta(path)
    missing = [k for k in ("step", "optimizer", "scheduler", "train") if k not in state]
    if missing:
        raise CheckpointError(f"{path} lacks {missing}; the checkpoint is incomplete, resume from another one")
    if isinstance(state["step"], bool) or not isinstance(state["step"], int) or state["step"] < 0:
        raise CheckpointError(f"{path}: step must be an integer >= 0, got {state['step']!r}")
    return state


def restore_checkpoint(folder: Path, model: NeuralProcess, optimizer, scheduler) -> dict[str, Any]:
    """Load a checkpoint into ``model``, ``optimizer`` and ``scheduler``; return its loop state.
    The model must have the saved family and config."""
    state = checkpoint_state(folder)
    meta = read_meta(folder / "config.json")
    if (meta.get("model"), meta.get("config")) != (model.name, model.config.to_dict()):
        raise CheckpointError(
            f"{folder} holds model {meta.get('model')!r} with config {meta.get('config')}, which differs "
            f"from the model being trained ({model.name!r}, {model.config.to_dict()})"
        )
    load_state(model, read_tensors(folder / "model.safetensors", CheckpointError), folder)
    device = next(model.parameters()).device
    tensors = read_tensors(folder / "optimizer.safetensors", CheckpointError)
    tensors = {k: v.to(device) if v.dim() else v for k, v in tensors.items()}
    optimizer.load_state_dict(_optimizer_state(tensors, state["optimizer"]))
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    return state


def load_trained(run_dir: str | Path, attempts: int = 3) -> NeuralProcess:
    """A run's final model, or the model of its latest checkpoint while it trains (re-reading
    ``latest.json`` if the run pruned that checkpoint between the two reads)."""
    final = model_dir(run_dir)
    if final.is_dir():
        return load_model(final)
    for _ in range(attempts - 1):
        try:
            return load_model(latest_checkpoint(run_dir))
        except CheckpointError:
            continue  # pruned or replaced while we read: read latest.json again
    return load_model(latest_checkpoint(run_dir))
