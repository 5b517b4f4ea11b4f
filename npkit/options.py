"""Dataclass options: build a settings dataclass from a dict, checking the keys and simple types.

``from_options(cls, values, what)`` refuses unknown keys (naming them and listing the valid ones)
and values that do not match the field's annotation, for the annotations a config file can
hold: ``int``, ``float`` (ints accepted), ``str``, ``bool``, ``None``, unions of them
(``int | None``) and ``list[X]``, ``tuple[X, ...]``, ``tuple[X, Y]`` of those (a list is accepted
for a tuple and converted). A bool never passes for an int or a float. Fields with other
annotations, or whose annotations cannot be resolved, are not checked. Type errors name the field
as ``what.field``: ``train.lr must be a float, got 'abc'``.
"""

from __future__ import annotations

import difflib
import numbers
import types
import typing
from dataclasses import asdict, fields
from typing import Any, TypeVar

T = TypeVar("T")

# annotation -> (singular, plural) description
_SCALARS: dict[Any, tuple[str, str]] = {
    int: ("an integer", "integers"),
    float: ("a float", "floats"),
    str: ("a string", "strings"),
    bool: ("a bool", "bools"),
    type(None): ("None", "None"),
}
_MISMATCH = object()


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _fixed_tuple(annotation: Any) -> bool:
    args = typing.get_args(annotation)
    return typing.get_origin(annotation) is tuple and not (len(args) == 2 and args[1] is Ellipsis)


def checkable(annotation: Any) -> bool:
    """Whether ``annotation`` is built only from the types `conform` knows."""
    if annotation in _SCALARS:
        return True
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if _is_union(annotation):
        return all(checkable(a) for a in args)
    if origin is list:
        return len(args) == 1 and checkable(args[0])
    if origin is tuple:
        return bool(args) and all(a is Ellipsis or checkable(a) for a in args)
    return False


def describe(annotation: Any, plural: bool = False) -> str:
    """``int | None`` -> "an integer or None", ``tuple[float, float]`` -> "a list of 2 floats"."""
    if annotation in _SCALARS:
        return _SCALARS[annotation][plural]
    args = typing.get_args(annotation)
    if _is_union(annotation):
        return ("/" if plural else " or ").join(describe(a, plural) for a in args)
    if _fixed_tuple(annotation):
        items = f"{len(args)} {describe(args[0], True)}" if len(set(args)) == 1 else ", ".join(map(describe, args))
    else:
        items = describe(args[0], True)
    return f"{'lists' if plural else 'a list'} of {items}"


def _scalar_fits(value: Any, annotation: Any) -> bool:
    if annotation is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if annotation is int:
        return isinstance(value, numbers.Integral)
    if annotation is float:
        return isinstance(value, numbers.Real)
    if annotation is str:
        return isinstance(value, str)
    return value is None


def conform(value: Any, annotation: Any) -> Any:
    """``value`` as ``annotation`` (a list becomes a tuple for a tuple annotation), or
    ``_MISMATCH`` when it does not fit. ``annotation`` must be `checkable`."""
    if annotation in _SCALARS:
        return value if _scalar_fits(value, annotation) else _MISMATCH
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if _is_union(annotation):
        for arg in args:
            out = conform(value, arg)
            if out is not _MISMATCH:
                return out
        return _MISMATCH
    if not isinstance(value, (list, tuple)):
        return _MISMATCH
    if _fixed_tuple(annotation):
        if len(value) != len(args):
            return _MISMATCH
        items = [conform(v, a) for v, a in zip(value, args)]
    else:
        items = [conform(v, args[0]) for v in value]
    return _MISMATCH if any(i is _MISMATCH for i in items) else origin(items)


def _field_types(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except (NameError, TypeError, AttributeError):  # e.g. a name imported only under TYPE_CHECKING
        return {}


def check_options(cls: type, values: dict[str, Any], what: str) -> dict[str, Any]:
    """``values`` checked against the fields of dataclass ``cls`` (``what`` names the section in
    errors): unknown keys and values of the wrong type raise a ``ValueError``. Returns the
    values, lists converted to tuples where a field is a tuple."""
    known = [f.name for f in fields(cls) if f.init]
    unknown = sorted(set(values) - set(known))
    if unknown:
        guesses = [g for key in unknown for g in difflib.get_close_matches(key, known, n=1)]
        hint = f" (did you mean {', '.join(map(repr, guesses))}?)" if guesses else ""
        raise ValueError(f"unknown {what} option(s) {unknown}{hint}; expected some of {sorted(known)}")
    hints = _field_types(cls)
    checked = dict(values)
    for name, value in values.items():
        annotation = hints.get(name)
        if annotation is None or not checkable(annotation):
            continue
        checked[name] = conform(value, annotation)
        if checked[name] is _MISMATCH:
            tip = ""
            if not isinstance(value, (list, tuple)) and conform([value], annotation) is not _MISMATCH:
                tip = f" (a one-element list is written [{value}])"
            raise ValueError(f"{what}.{name} must be {describe(annotation)}, got {value!r}{tip}")
    return checked


def from_options(cls: type[T], values: dict[str, Any], what: str, qualify: bool = False) -> T:
    """Build dataclass ``cls`` from ``values`` checked by `check_options`. With
    ``qualify``, a ``ValueError`` of the class's own validation that starts with a field name
    gets ``what.`` in front of it (``plot.num_tasks must be ...``), as config errors do."""
    checked = check_options(cls, values, what)
    try:
        return cls(**checked)
    except ValueError as err:
        message = str(err)
        if qualify and message.split(" ", 1)[0].rstrip(":,") in {f.name for f in fields(cls)}:
            raise ValueError(f"{what}.{message}") from err
        raise


def check_positive_ints(obj: object, names: tuple[str, ...]) -> None:
    """Raise a ``ValueError`` naming the first of ``names`` that is not a positive integer."""
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


class ModelOptions:
    """``from_dict`` / ``to_dict`` of a model family's config dataclass (a config's ``model`` section)."""

    @classmethod
    def from_dict(cls, values: dict[str, Any]):
        return from_options(cls, values, "model")

    @classmethod
    def resolve(cls, config: Any, options: dict[str, Any], owner: str):
        """The config a model ``owner`` (its class name) is built from: ``config`` (an instance
        of ``cls``) or the keyword ``options``, never both."""
        if config is not None and options:
            raise ValueError(f"pass either a {cls.__name__} or keyword options, not both")
        if config is not None and not isinstance(config, cls):
            raise TypeError(f"{owner} takes a {cls.__name__}, got {type(config).__name__}")
        return config if config is not None else cls.from_dict(options)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
