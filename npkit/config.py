"""Run configurations: YAML presets (``npkit/configs``, linked as ``configs/``) + overrides.

A configuration has five sections::

    model:     {name: np, hidden_dim: 128, ...}      -> npkit.models.build_model
    data:      {name: gp1d, kernel: rbf, ...}         -> npkit.data.make_sampler
    objective: {name: elbo, num_samples: 4, ...}      -> npkit.objectives.get_objective
    train:     {steps: 2000, lr: 5e-4, ...}           -> npkit.train.TrainConfig
    eval:      {kernels: [rbf, matern52, periodic], num_batches: 100, ...}
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

PRESET_DIR = Path(__file__).parent / "configs"
SECTIONS = ("model", "data", "objective", "train", "eval", "plot")
EVAL_DEFAULTS = {
    "kernels": None,
    "num_batches": 50,
    "batch_size": 16,
    "seed": 1234,
    "num_samples": 50,
    "gp_fitted": True,
    "fit_steps": 100,
    "fit_restarts": 4,
}
PLOT_DEFAULTS = {"num_tasks": 4, "num_samples": 10, "seed": 0}


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads YAML 1.2 floats such as ``1e-3`` (YAML 1.1 reads a string)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)$"),
    list("-+0123456789."),
)


def parse_yaml(text: str):
    return yaml.load(text, Loader=_Loader)


def presets() -> list[str]:
    """Names of the YAML presets shipped with npkit."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_config(name_or_path: str | Path) -> dict[str, Any]:
    """Read a preset by name (see :func:`presets`) or a YAML file by path, with defaults filled."""
    path = Path(name_or_path)
    if not path.is_file():
        path = PRESET_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ValueError(f"no config file or preset named {str(name_or_path)!r}; presets: {presets()}")
    try:
        config = parse_yaml(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path} is not valid YAML: {err}") from err
    return complete(config, source=str(path))


def complete(config: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Check the sections and fill eval/plot defaults."""
    if not isinstance(config, dict):
        raise ValueError(f"{source} must be a mapping of sections {list(SECTIONS)}")
    unknown = set(config) - set(SECTIONS)
    if unknown:
        raise ValueError(f"{source}: unknown section(s) {sorted(unknown)}; expected {list(SECTIONS)}")
    config = copy.deepcopy(config)
    for section in SECTIONS:
        config.setdefault(section, {})
        if not isinstance(config[section], dict):
            raise ValueError(f"{source}: section {section!r} must be a mapping")
    for name in ("model", "data"):
        if "name" not in config[name]:
            raise ValueError(f"{source}: {name}.name is required")
    config["objective"].setdefault("name", "auto")
    config["eval"] = {**EVAL_DEFAULTS, **config["eval"]}
    config["plot"] = {**PLOT_DEFAULTS, **config["plot"]}
    if config["eval"]["kernels"] is None:
        config["eval"]["kernels"] = [config["data"].get("kernel")] if "kernel" in config["data"] else [None]
    return config


def apply_overrides(config: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides; values are parsed as YAML (numbers, lists), and
    ``null`` removes the key so that its default applies."""
    config = copy.deepcopy(config)
    for item in overrides:
        key, sep, raw = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) != 2 or parts[0] not in SECTIONS or not parts[1]:
            raise ValueError(f"--set expects section.key=value with section in {list(SECTIONS)}, got {item!r}")
        value = parse_yaml(raw)
        if value is None:
            config[parts[0]].pop(parts[1], None)
        else:
            config[parts[0]][parts[1]] = value
    return complete(config)


def split_section(section: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``{name: x, **options}`` -> ``(x, options)``."""
    options = dict(section)
    return options.pop("name"), options
