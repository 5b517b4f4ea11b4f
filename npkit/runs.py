"""The run folder and the checkpoint format, in one place.

    run_dir/
      config.yaml                       the run's settings (written by the CLI)
      checkpoints/step-00001000/        model.safetensors + config.json (a model export),
                                        optimizer.safetensors + state.json (the loop state)
      checkpoints/latest.json           points at the newest complete checkpoint; written last
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

import shutil
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
    """A checkpoint is missing, corrupt, or incompatible with what is asked of it."""


def checkpoints_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def model_dir(run_dir: str | Path) -> Path:
    """Where ``fit`` exports the final model of a run."""
    return Path(run_dir) / "model"


def metrics_csv(run_dir: str | Path) -> Path:
    """Where ``fit`` writes its CSV log."""
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
    """Write ``model.safetensors`` and ``config.json`` into ``directory``; return it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_tensors(directory / "model.safetensors", model.state_dict())
    write_json(directory / "config.json", model_meta(model))
    return directory


def load_model(directory: str | Path, map_location: str | torch.device = "cpu") -> NeuralProcess:
    """Rebuild a model saved by :func:`save_model` (or the model of a training checkpoint)."""
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
    save_model(model, folder)
    tensors, groups = _optimizer_tensors(optimizer)
    write_tensors(folder / "optimizer.safetensors", tensors)
    scheduler_state = scheduler.state_dict() if scheduler else None
    loop = {"format": FORMAT, "version": VERSION, "step": step, "optimizer": groups, "scheduler": scheduler_state}
    write_json(folder / "state.json", {**state, **loop})
    write_json(root / "latest.json", {"format": FORMAT, "version": VERSION, "step": step, "path": folder.name})
    for old in sorted(root.glob("step-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return folder


def latest_checkpoint(run_dir: str | Path) -> Path:
    """The newest complete checkpoint folder of a run."""
    root = checkpoints_dir(run_dir)
    pointer = read_meta(root / "latest.json")
    folder = root / str(pointer.get("path"))
    if not folder.is_dir():
        raise CheckpointError(f"{root / 'latest.json'} points at {folder}, which does not exist")
    return folder


def checkpoint_state(folder: Path) -> dict[str, Any]:
    """The loop state saved with a checkpoint (step, settings, objective, ...)."""
    return read_meta(folder / "state.json")


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


def load_trained(run_dir: str | Path) -> NeuralProcess:
    """A run's final model, or the model of its latest checkpoint while it trains."""
    final = model_dir(run_dir)
    return load_model(final) if final.is_dir() else load_model(latest_checkpoint(run_dir))
