"""Run configurations: YAML presets (``npkit/configs``, linked as ``configs/``) + overrides.

A configuration has five sections::

    model:     {name: np, hidden_dim: 128, ...}      -> npkit.models.build_model
    data:      {name: gp1d, kernel: rbf, ...}         -> npkit.data.make_sampler
    objective: {name: elbo, num_samples: 4, ...}      -> npkit.objectives.get_objective
    train:     {steps: 2000, lr: 5e-4, ...}           -> npkit.settings.TrainConfig
    eval:      {kernels: [rbf, matern52, periodic], num_batches: 100, ...} -> npkit.settings.EvalConfig
    plot:      {num_tasks: 4, num_samples: 10, seed: 0}                    -> npkit.settings.PlotConfig

Loading or overriding a config checks the train, eval and plot sections against their dataclasses
(unknown keys, value types, value ranges); ``section_config`` builds them. Model and data options
are checked by the command line before it starts work (their classes need torch).
"""

from __future__ import annotations

import copy
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from npkit.options import from_options
from npkit.settings import EvalConfig, PlotConfig, TrainConfig

PRESET_DIR = Path(__file__).parent / "configs"
SECTIONS = ("model", "data", "objective", "train", "eval", "plot")
SECTION_CONFIGS = {"train": TrainConfig, "eval": EvalConfig, "plot": PlotConfig}
EVAL_DEFAULTS = asdict(EvalConfig())
PLOT_DEFAULTS = asdict(PlotConfig())


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
    """Read a preset by name (see `presets`) or a YAML file by path, with defaults filled."""
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


def complete(config: dict[str, Any], source: str | None = None) -> dict[str, Any]:
    """Check the sections (the train/eval/plot options against `SECTION_CONFIGS`) and fill
    eval/plot defaults. Errors name ``source`` (the file), when given."""
    where = source or "config"
    if not isinstance(config, dict):
        raise ValueError(f"{where} must be a mapping of sections {list(SECTIONS)}")
    unknown = set(config) - set(SECTIONS)
    if unknown:
        raise ValueError(f"{where}: unknown section(s) {sorted(unknown)}; expected {list(SECTIONS)}")
    config = copy.deepcopy(config)
    for section in SECTIONS:
        config.setdefault(section, {})
        if not isinstance(config[section], dict):
            raise ValueError(f"{where}: section {section!r} must be a mapping")
    for name in ("model", "data"):
        if "name" not in config[name]:
            raise ValueError(f"{where}: {name}.name is required")
    config["objective"].setdefault("name", "auto")
    config["eval"] = {**EVAL_DEFAULTS, **config["eval"]}
    config["plot"] = {**PLOT_DEFAULTS, **config["plot"]}
    for section in SECTION_CONFIGS:
        try:
            section_config(config, section)
        except ValueError as err:
            if source is None:
                raise
            raise ValueError(f"{source}: {err}") from err
    if config["eval"]["kernels"] is None:  # after the check: data.kernel is the data section's to check
        config["eval"]["kernels"] = [config["data"].get("kernel")] if "kernel" in config["data"] else [None]
    return config


def section_config(config: dict[str, Any], section: str) -> TrainConfig | EvalConfig | PlotConfig:
    """The settings dataclass of ``section`` ("train", "eval" or "plot"), checked: unknown keys,
    value types and ranges raise a ``ValueError`` naming ``section.key``."""
    return from_options(SECTION_CONFIGS[section], config[section], section, qualify=True)


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
