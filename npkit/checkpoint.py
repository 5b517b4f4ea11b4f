"""Checkpoints as safetensors (tensors) + JSON (everything else): nothing is ever unpickled.

A model export is a folder with ``model.safetensors`` and ``config.json``; a training checkpoint
adds the optimiser moments and the loop state. Files are written to a temporary name and then
renamed, so a run killed mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from npkit.models import MODELS, ModelConfig, NeuralProcess

FORMAT = "npkit"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, or incompatible with what is asked of it."""


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def write_json(path: Path, data: dict) -> None:
    _atomic(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, sort_keys=True)))


def write_tensors(path: Path, tensors: dict[str, Tensor]) -> None:
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    _atomic(path, lambda tmp: save_file(tensors, str(tmp)))


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"missing checkpoint file {path}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"corrupt JSON in {path}: {err}") from err
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f'{path} is not an npkit checkpoint (no "format": "{FORMAT}")')
    if data.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {data.get('version')}; this npkit reads {VERSION}")
    return data


def read_tensors(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise CheckpointError(f"missing checkpoint file {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"corrupt safetensors file {path}: {err}") from err


def model_meta(model: NeuralProcess) -> dict[str, Any]:
    return {"format": FORMAT, "version": VERSION, "model": model.name, "config": model.config.to_dict()}


def model_from_meta(meta: dict, source: Path) -> NeuralProcess:
    name = meta.get("model")
    if name not in MODELS:
        raise CheckpointError(f"{source}: unknown model {name!r}; expected one of {sorted(MODELS)}")
    try:
        return MODELS[name](ModelConfig.from_dict(meta.get("config", {})))
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{source}: invalid model config: {err}") from err


def load_state(module: nn.Module, tensors: dict[str, Tensor], source: Path) -> None:
    """Load tensors into module, raising CheckpointError on missing/extra keys or wrong shapes."""
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
    model = model_from_meta(read_json(directory / "config.json"), directory)
    load_state(model, read_tensors(directory / "model.safetensors"), directory)
    return model.to(map_location)
