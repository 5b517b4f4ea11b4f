"""Dataclass options: build a settings dataclass from a dict, naming unknown keys in the error."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def from_options(cls: type[T], values: dict[str, Any], what: str) -> T:
    """Build dataclass ``cls`` from ``values``, naming unknown keys in the error (``what`` options)."""
    known = {f.name for f in fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown {what} option(s) {sorted(unknown)}; expected some of {sorted(known)}")
    return cls(**values)


def check_positive_ints(obj: object, names: tuple[str, ...]) -> None:
    """Raise a ``ValueError`` naming the first of ``names`` that is not a positive integer."""
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
