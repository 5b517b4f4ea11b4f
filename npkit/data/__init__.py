"""Task generators. ``make_sampler(name, **overrides)`` builds any preset by name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, replace

from npkit.data.functions import FivePointSine, SawtoothSampler, SineSampler
from npkit.data.gp import KERNELS, GPSampler, TrueGP, gp1d, gp1d_nps
from npkit.data.sampling import FunctionSampler, TaskSampler

PRESETS: dict[str, Callable[..., TaskSampler]] = {
    "gp": GPSampler,
    "gp1d": gp1d,
    "gp1d-nps": gp1d_nps,
    "sine": SineSampler,
    "sine5": FivePointSine,
    "sawtooth": SawtoothSampler,
}


def make_sampler(name: str, kernel: str | None = None, **overrides) -> TaskSampler:
    """Build the task sampler preset ``name`` (see ``PRESETS``), then override its fields.

    >>> make_sampler("gp1d", kernel="matern52", noise_std=0.05)
    """
    if name not in PRESETS:
        raise ValueError(f"unknown data preset {name!r}; expected one of {sorted(PRESETS)}")
    if kernel is not None and name not in ("gp", "gp1d", "gp1d-nps"):
        raise ValueError(f"data preset {name!r} has no kernel; kernels apply to gp, gp1d and gp1d-nps")
    sampler = PRESETS[name](kernel=kernel) if kernel is not None else PRESETS[name]()
    known = {f.name for f in fields(sampler)}
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)} for data preset {name!r}; expected {sorted(known)}")
    tuples = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return replace(sampler, **tuples)


__all__ = [
    "KERNELS",
    "PRESETS",
    "FivePointSine",
    "FunctionSampler",
    "GPSampler",
    "SawtoothSampler",
    "SineSampler",
    "TaskSampler",
    "TrueGP",
    "gp1d",
    "gp1d_nps",
    "make_sampler",
]
