"""npkit.options: settings dataclasses from dicts, with unknown keys and value types refused."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np
import pytest

from npkit.data import KERNELS
from npkit.models import ModelConfig
from npkit.options import check_options, from_options
from npkit.settings import EvalConfig, PlotConfig, TrainConfig


class Opaque:
    """A type the checker does not know: fields of it are not checked."""


@dataclass
class Example:
    count: int = 1
    rate: float = 0.5
    name: str = "a"
    flag: bool = False
    limit: int | None = None
    devices: int | str = 1
    span: tuple[float, float] = (0.0, 1.0)
    sizes: tuple[int, ...] = ()
    names: list[str] = field(default_factory=list)
    kernels: list[str | None] | None = None
    thing: Opaque | None = None

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError(f"count must be >= 0, got {self.count}")
        if self.name == "reserved":
            raise ValueError("the name 'reserved' is taken")


@dataclass
class Unresolved:
    value: NoSuchType = None  # noqa: F821


EXAMPLE_KEYS = sorted(f.name for f in fields(Example))


def test_values_of_the_annotated_types_pass():
    thing = object()
    values = {
        "count": np.int64(3),
        "rate": 2,  # an int is a float
        "name": "b",
        "flag": True,
        "limit": None,
        "devices": "auto",
        "span": [-1, 2.5],  # a list for a tuple, converted
        "sizes": [1, 2, 3],
        "names": ["x"],
        "kernels": ["rbf", None],
        "thing": thing,  # not checked
    }
    example = from_options(Example, values, "ex")
    assert (example.count, example.rate, example.flag, example.limit, example.devices) == (3, 2, True, None, "auto")
    assert example.span == (-1, 2.5) and isinstance(example.span, tuple)
    assert example.sizes == (1, 2, 3) and example.names == ["x"] and example.kernels == ["rbf", None]
    assert example.thing is thing
    assert from_options(Example, {"devices": 2, "limit": 7, "kernels": None}, "ex").devices == 2


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("count", True, "ex.count must be an integer, got True"),  # a bool is no int
        ("count", 1.5, "ex.count must be an integer, got 1.5"),
        ("count", "3", "ex.count must be an integer, got '3'"),
        ("count", None, "ex.count must be an integer, got None"),
        ("rate", "abc", "ex.rate must be a float, got 'abc'"),
        ("rate", False, "ex.rate must be a float, got False"),
        ("name", 3, "ex.name must be a string, got 3"),
        ("flag", 1, "ex.flag must be a bool, got 1"),
        ("flag", "yes please", "ex.flag must be a bool, got 'yes please'"),
        ("limit", "x", "ex.limit must be an integer or None, got 'x'"),
        ("limit", True, "ex.limit must be an integer or None, got True"),
        ("devices", 1.5, "ex.devices must be an integer or a string, got 1.5"),
        ("span", [1.0], "ex.span must be a list of 2 floats, got [1.0]"),
        ("span", ["a", 1.0], "ex.span must be a list of 2 floats, got ['a', 1.0]"),
        ("span", 2.0, "ex.span must be a list of 2 floats, got 2.0"),
        ("sizes", [1, "b"], "ex.sizes must be a list of integers, got [1, 'b']"),
        ("sizes", [1, True], "ex.sizes must be a list of integers, got [1, True]"),
        ("names", "rbf", "ex.names must be a list of strings, got 'rbf' (a one-element list is written [rbf])"),
        ("names", {"a": 1}, "ex.names must be a list of strings, got {'a': 1}"),
        ("kernels", [3], "ex.kernels must be a list of strings/None or None, got [3]"),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_naming_the_field(key, value, message):
    with pytest.raises(ValueError) as info:
        from_options(Example, {key: value}, "ex")
    assert str(info.value) == message


def test_unknown_keys_are_named_with_the_valid_ones_and_a_guess():
    with pytest.raises(ValueError) as info:
        check_options(Example, {"cont": 1, "rate": 1.0}, "ex")
    assert str(info.value) == f"unknown ex option(s) ['cont'] (did you mean 'count'?); expected some of {EXAMPLE_KEYS}"
    with pytest.raises(ValueError) as info:
        from_options(Example, {"zzz": 1, "yyy": 2}, "ex")
    assert str(info.value) == f"unknown ex option(s) ['yyy', 'zzz']; expected some of {EXAMPLE_KEYS}"


def test_check_options_returns_the_converted_values():
    assert check_options(Example, {"span": [0, 1], "count": 2}, "ex") == {"span": (0, 1), "count": 2}


def test_the_class_own_errors_are_qualified_on_request():
    with pytest.raises(ValueError) as info:
        from_options(Example, {"count": -1}, "ex")
    assert str(info.value) == "count must be >= 0, got -1"
    with pytest.raises(ValueError) as info:
        from_options(Example, {"count": -1}, "ex", qualify=True)
    assert str(info.value) == "ex.count must be >= 0, got -1"
    with pytest.raises(ValueError) as info:  # not about one field: unchanged
        from_options(Example, {"name": "reserved"}, "ex", qualify=True)
    assert str(info.value) == "the name 'reserved' is taken"


def test_unresolvable_annotations_are_not_type_checked_but_keys_still_are():
    assert from_options(Unresolved, {"value": "anything"}, "u").value == "anything"
    with pytest.raises(ValueError, match=r"unknown u option\(s\) \['valu'\]"):
        from_options(Unresolved, {"valu": 1}, "u")


def test_the_config_classes_check_their_types():
    with pytest.raises(ValueError) as info:
        TrainConfig.from_dict({"lr": "abc"})
    assert str(info.value) == "train.lr must be a float, got 'abc'"
    with pytest.raises(ValueError) as info:
        ModelConfig.from_dict({"hidden_dim": True})
    assert str(info.value) == "model.hidden_dim must be an integer, got True"
    with pytest.raises(ValueError) as info:
        EvalConfig.from_dict({"kernels": "rbf"})
    assert str(info.value).startswith("eval.kernels must be a list of strings/None or None, got 'rbf'")


@pytest.mark.parametrize(
    "cls, options, message",
    [
        (EvalConfig, {"num_batches": 0}, "num_batches must be a positive integer, got 0"),
        (EvalConfig, {"batch_size": -2}, "batch_size must be a positive integer, got -2"),
        (EvalConfig, {"num_samples": 0}, "num_samples must be a positive integer, got 0"),
        (EvalConfig, {"fit_restarts": 0}, "fit_restarts must be a positive integer, got 0"),
        (EvalConfig, {"fit_steps": -1}, "fit_steps must be an integer >= 0, got -1"),
        (EvalConfig, {"kernels": []}, "kernels must be a non-empty list of kernel names (or None), got []"),
        (EvalConfig, {"kernels": "rbf"}, "kernels must be a non-empty list of kernel names (or None), got 'rbf'"),
        (
            EvalConfig,
            {"kernels": ["rbf", "cosine"]},
            f"kernels has unknown kernel(s) ['cosine']; expected some of {sorted(KERNELS)}",
        ),
        (PlotConfig, {"num_tasks": 0}, "num_tasks must be a positive integer, got 0"),
        (PlotConfig, {"num_samples": 0}, "num_samples must be a positive integer, got 0"),
        (TrainConfig, {"steps": True}, "steps must be a positive integer, got True"),
    ],
)
def test_the_settings_validate_their_values(cls, options, message):
    with pytest.raises(ValueError) as info:
        cls(**options)
    assert str(info.value) == message


def test_the_settings_accept_their_defaults_and_edge_values():
    assert EvalConfig(kernels=["rbf", None], fit_steps=0).fit_steps == 0
    assert EvalConfig().kernels is None
    assert PlotConfig(num_tasks=1, num_samples=1).num_tasks == 1
