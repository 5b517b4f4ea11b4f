"""Task generators. ``make_sampler(name, **overrides)`` builds any preset by name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, replace
from functools import lru_cache

from npkit.data.functions import FivePointSine, SawtoothSampler, SineSampler
from npkit.data.gp import KERNELS, GPSampler, TrueGP, gp1d, gp1d_nps
from npkit.data.images import ImageSampler, mask_pixels, pixel_grid, to_image
from npkit.data.sampling import FunctionSampler, TaskSampler


@lru_cache(maxsize=1)
def _digits_images():
    """scikit-learn's 8x8 digits, [1797, 1, 8, 8] float32 in [0, 1] (loaded once per process)."""
    from npkit.data.image_datasets import load_digits

    return load_digits()[0]


def _mnist_images(root, split: str):
    from npkit.data.image_datasets import load_mnist

    return load_mnist(root=root, split=split)[0]


def digits(**options) -> ImageSampler:
    """scikit-learn's 8x8 digits (no download): coords and values in [0, 1], Nc ~ U{3..32},
    the targets every other pixel."""
    return ImageSampler(_digits_images(), source="digits", **{"num_context": (3, 32), **options})


def digits_bnp(**options) -> ImageSampler:
    """The BNP/TNP image conventions (BENCHMARKS.md section 3) on the 8x8 digits, with the point
    counts scaled to 64 pixels: coords in [-1, 1]^2, values pixel - 0.5, Nc ~ U{3..61},
    Nt ~ U{3..64 - Nc} (MNIST's 3..196 and 3..199 - Nc do not fit 64 pixels)."""
    preset = dict(num_context=(3, 61), num_target=(3, 61), max_points=64, coords="centered", values="centered")
    return ImageSampler(_digits_images(), source="digits", **{**preset, **options})


def mnist(root=None, split: str = "train", **options) -> ImageSampler:
    """MNIST 28x28 (files under ``root``, see ``npkit.data.image_datasets.load_mnist``):
    coords and values in [0, 1], Nc ~ U{3..196}, the targets every other pixel."""
    return ImageSampler(_mnist_images(root, split), source=f"mnist:{split}", **{"num_context": (3, 196), **options})


def mnist_bnp(root=None, split: str = "train", **options) -> ImageSampler:
    """MNIST with BENCHMARKS.md section 3 exactly: coords in [-1, 1]^2, values pixel - 0.5,
    Nc ~ U{3..196}, Nt ~ U{3..199 - Nc}, a random permutation of the pixels per task."""
    preset = dict(num_context=(3, 196), num_target=(3, 196), max_points=199, coords="centered", values="centered")
    return ImageSampler(_mnist_images(root, split), source=f"mnist:{split}", **{**preset, **options})


PRESETS: dict[str, Callable[..., TaskSampler]] = {
    "gp": GPSampler,
    "gp1d": gp1d,
    "gp1d-nps": gp1d_nps,
    "sine": SineSampler,
    "sine5": FivePointSine,
    "sawtooth": SawtoothSampler,
    "digits": digits,
    "digits-bnp": digits_bnp,
    "mnist": mnist,
    "mnist-bnp": mnist_bnp,
}

# Arguments of a preset function that choose its data rather than a sampler field.
_LOADER_ARGS: dict[str, tuple[str, ...]] = {"mnist": ("root", "split"), "mnist-bnp": ("root", "split")}
IMAGE_PRESETS = ("digits", "digits-bnp", "mnist", "mnist-bnp")  # tests/test_images.py covers these


def preset_options(name: str) -> tuple[type, tuple[str, ...]]:
    """The sampler class of preset ``name`` and the data arguments its preset takes besides
    the class's fields (``root``, ``split`` for MNIST), without loading any data."""
    if name not in PRESETS:
        raise ValueError(f"unknown data preset {name!r}; expected one of {sorted(PRESETS)}")
    cls = ImageSampler if name in IMAGE_PRESETS else type(PRESETS[name]())
    return cls, _LOADER_ARGS.get(name, ())


def make_sampler(name: str, kernel: str | None = None, **overrides) -> TaskSampler:
    """Build the task sampler preset ``name`` (see ``PRESETS``), then override its fields.

    >>> make_sampler("gp1d", kernel="matern52", noise_std=0.05)
    """
    if name not in PRESETS:
        raise ValueError(f"unknown data preset {name!r}; expected one of {sorted(PRESETS)}")
    if kernel is not None and name not in ("gp", "gp1d", "gp1d-nps"):
        raise ValueError(f"data preset {name!r} has no kernel; kernels apply to gp, gp1d and gp1d-nps")
    cls, loader_args = preset_options(name)
    known = {f.name for f in fields(cls) if f.init and f.name != "images"} | set(loader_args)
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)} for data preset {name!r}; expected {sorted(known)}")
    loader = {k: overrides.pop(k) for k in loader_args if k in overrides}
    sampler = PRESETS[name](kernel=kernel, **loader) if kernel is not None else PRESETS[name](**loader)
    tuples = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return replace(sampler, **tuples) if tuples else sampler


__all__ = [
    "IMAGE_PRESETS",
    "KERNELS",
    "PRESETS",
    "FivePointSine",
    "FunctionSampler",
    "GPSampler",
    "ImageSampler",
    "SawtoothSampler",
    "SineSampler",
    "TaskSampler",
    "TrueGP",
    "gp1d",
    "gp1d_nps",
    "make_sampler",
    "mask_pixels",
    "pixel_grid",
    "preset_options",
    "to_image",
]
