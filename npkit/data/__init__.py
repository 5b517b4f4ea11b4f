"""Task generators. ``make_sampler(name, **overrides)`` builds any preset by name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, replace
from functools import lru_cache
from pathlib import Path

import torch

from npkit.data.arrays import GroupedTasks
from npkit.data.functions import FivePointSine, SawtoothSampler, SineSampler
from npkit.data.gp import KERNELS, GPSampler, TrueGP, gp1d, gp1d_nps
from npkit.data.images import ImageSampler, mask_pixels, pixel_grid, to_image
from npkit.data.pool import TaskPool
from npkit.data.sampling import FunctionSampler, TaskSampler
from npkit.data.sets import (
    ClassSets,
    DistributionSets,
    PointSets,
    SetBatch,
    digit_sets,
    mnist_sets,
    spatial_digits,
    spatial_mnist,
)
from npkit.data.vectors import ImageVectors, VectorBatch, digit_vectors, mnist_vectors

# scikit-learn's digits have no official split: the last DIGITS_TEST images are the test split.
DIGITS_TEST = 360
SPLITS = ("train", "test")


@lru_cache(maxsize=1)
def _digits():
    """scikit-learn's 8x8 digits and labels (loaded once per process)."""
    from npkit.data.image_datasets import load_digits

    return load_digits()


def _select(images, labels, classes, source: str):
    """The images whose label is in ``classes`` (None: all), and the source name saying so."""
    if classes is None:
        return images, source
    wanted = sorted({int(c) for c in classes})
    keep = torch.isin(labels, torch.tensor(wanted))
    if not keep.any():
        raise ValueError(f"classes={wanted} selects no image of {source}")
    return images[keep], f"{source}:classes={','.join(map(str, wanted))}"


def digits_split(split: str):
    """scikit-learn's 8x8 digits of ``split``: "test" is the last DIGITS_TEST images, "train" the
    others; images [N, 1, 8, 8] in [0, 1] and labels [N] int64."""
    if split not in SPLITS:
        raise ValueError(f"unknown digits split {split!r}; expected one of {list(SPLITS)}")
    images, labels = _digits()
    part = slice(None, -DIGITS_TEST) if split == "train" else slice(-DIGITS_TEST, None)
    return images[part], labels[part]


def _digits_images(split: str, classes):
    return _select(*digits_split(split), classes, f"digits:{split}")


def _mnist_images(root, split: str, classes):
    from npkit.data.image_datasets import load_mnist

    return _select(*load_mnist(root=root, split=split), classes, f"mnist:{split}")


def digits(split: str = "train", classes=None, **options) -> ImageSampler:
    """scikit-learn's 8x8 digits (no download; ``split="test"`` is the last 360 images, "train"
    the other 1437; ``classes``, e.g. [0, 1, 2, 3, 4], keeps those labels): coords and values in
    [0, 1], Nc ~ U{3..32}, the targets every other pixel."""
    images, source = _digits_images(split, classes)
    return ImageSampler(images, source=source, **{"num_context": (3, 32), **options})


def digits_bnp(split: str = "train", classes=None, **options) -> ImageSampler:
    """The BNP/TNP image conventions (protocol 3 of docs/benchmarks/protocols.md) on the 8x8
    digits, with the point counts scaled to 64 pixels: coords in [-1, 1]^2, values pixel - 0.5,
    Nc ~ U{3..61}, Nt ~ U{3..64 - Nc} (MNIST's 3..196 and 3..199 - Nc do not fit 64 pixels)."""
    preset = dict(num_context=(3, 61), num_target=(3, 61), max_points=64, coords="centered", values="centered")
    images, source = _digits_images(split, classes)
    return ImageSampler(images, source=source, **{**preset, **options})


def mnist(root=None, split: str = "train", classes=None, **options) -> ImageSampler:
    """MNIST 28x28 (files under ``root``, see ``npkit.data.image_datasets.load_mnist``;
    ``classes`` keeps those labels): coords and values in [0, 1], Nc ~ U{3..196}, the targets
    every other pixel."""
    images, source = _mnist_images(root, split, classes)
    return ImageSampler(images, source=source, **{"num_context": (3, 196), **options})


def mnist_bnp(root=None, split: str = "train", classes=None, **options) -> ImageSampler:
    """MNIST with protocol 3 of docs/benchmarks/protocols.md exactly: coords in [-1, 1]^2, values
    pixel - 0.5, Nc ~ U{3..196}, Nt ~ U{3..199 - Nc}, a random permutation of the pixels per task."""
    preset = dict(num_context=(3, 196), num_target=(3, 196), max_points=199, coords="centered", values="centered")
    images, source = _mnist_images(root, split, classes)
    return ImageSampler(images, source=source, **{**preset, **options})


@lru_cache(maxsize=4)
def _celeba_images(root, split: str, size: int, crop: int):
    from npkit.data.image_datasets import data_root, load_celeba

    return load_celeba(data_root("celeba", root), split=split, size=size, crop=crop)


def celeba(root=None, split: str = "train", size: int = 32, crop: int = 178, **options) -> ImageSampler:
    """CelebA aligned faces, RGB, centre-cropped and resized to ``size`` (files under ``root``,
    default ``$NPKIT_DATA/celeba``; see ``npkit.data.image_datasets.load_celeba``): coords and
    values in [0, 1], Nc ~ U{3..size^2 / 2}, the targets every other pixel."""
    images = _celeba_images(root, split, size, crop)
    return ImageSampler(images, source=f"celeba{size}:{split}", **{"num_context": (3, size * size // 2), **options})


def celeba_bnp(root=None, split: str = "train", size: int = 32, crop: int = 178, **options) -> ImageSampler:
    """CelebA with protocol 3 of docs/benchmarks/protocols.md (the BNP/TNP CelebA32 protocol):
    coords in [-1, 1]^2, values pixel - 0.5, Nc ~ U{3..196}, Nt ~ U{3..199 - Nc}."""
    preset = dict(num_context=(3, 196), num_target=(3, 196), max_points=199, coords="centered", values="centered")
    return ImageSampler(
        _celeba_images(root, split, size, crop), source=f"celeba{size}:{split}", **{**preset, **options}
    )


# image-folder: every FOLDER_TEST-th image (sorted by path) is the test split.
FOLDER_TEST = 10


def image_folder(root=None, split: str = "train", size: int = 32, mode: str = "RGB", **options) -> ImageSampler:
    """Every PNG/JPEG under ``root`` (``npkit.data.image_datasets.load_image_folder``: centre
    square, resized to ``size``; ``mode`` "RGB" or "L" for grey). ``split="test"`` is every
    10th image in path order, "train" the others. Coords and values in [0, 1], Nc ~
    U{3..size^2 / 2}, the targets every other pixel."""
    from npkit.data.image_datasets import load_image_folder

    if root is None:
        raise ValueError("data preset 'image-folder' needs root=FOLDER (--set data.root=FOLDER)")
    if split not in SPLITS:
        raise ValueError(f"unknown image-folder split {split!r}; expected one of {list(SPLITS)}")
    images = load_image_folder(root, size=size, mode=mode)
    test = torch.arange(len(images)) % FOLDER_TEST == FOLDER_TEST - 1
    chosen = images[test if split == "test" else ~test]
    if len(chosen) == 0:
        raise ValueError(f"image-folder {root}: {len(images)} image(s) leave none for the {split} split")
    source = f"folder:{Path(root).name}:{split}"
    return ImageSampler(chosen, source=source, **{"num_context": (3, size * size // 2), **options})


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
    "celeba": celeba,
    "celeba-bnp": celeba_bnp,
    "image-folder": image_folder,
    "distributions": DistributionSets,
    "spatial-digits": spatial_digits,
    "spatial-mnist": spatial_mnist,
    "digit-sets": digit_sets,
    "mnist-sets": mnist_sets,
}

# Arguments of a preset function that choose its data rather than a sampler field.
_LOADER_ARGS: dict[str, tuple[str, ...]] = {
    "digits": ("split", "classes"),
    "digits-bnp": ("split", "classes"),
    "mnist": ("root", "split", "classes"),
    "mnist-bnp": ("root", "split", "classes"),
    "celeba": ("root", "split", "size", "crop"),
    "celeba-bnp": ("root", "split", "size", "crop"),
    "image-folder": ("root", "split", "size", "mode"),
    "spatial-digits": ("split", "classes", "num_points"),
    "spatial-mnist": ("root", "split", "classes", "num_points"),
    "digit-sets": ("split", "classes", "set_size", "binarize"),
    "mnist-sets": ("root", "split", "classes", "set_size", "binarize"),
}
IMAGE_PRESETS = (
    "digits",
    "digits-bnp",
    "mnist",
    "mnist-bnp",
    "celeba",
    "celeba-bnp",
    "image-folder",
)  # tests/test_images.py covers these
# SetBatch samplers, for the statistician
SET_PRESETS = ("distributions", "spatial-digits", "spatial-mnist", "digit-sets", "mnist-sets")
POINT_SET_PRESETS = ("spatial-digits", "spatial-mnist")  # every option chooses the data: all are loader args
CLASS_SET_PRESETS = ("digit-sets", "mnist-sets")  # likewise


def preset_options(name: str) -> tuple[type, tuple[str, ...]]:
    """The sampler class of preset ``name`` and the data arguments its preset takes besides
    the class's fields (``root``, ``split`` for MNIST), without loading any data."""
    if name not in PRESETS:
        raise ValueError(f"unknown data preset {name!r}; expected one of {sorted(PRESETS)}")
    if name in IMAGE_PRESETS:
        cls = ImageSampler
    elif name in POINT_SET_PRESETS:
        cls = PointSets
    elif name in CLASS_SET_PRESETS:
        cls = ClassSets
    else:
        cls = type(PRESETS[name]())
    return cls, _LOADER_ARGS.get(name, ())


def make_sampler(name: str, kernel: str | None = None, **overrides) -> TaskSampler:
    """Build the task sampler preset ``name``, then override its fields.

    Args:
        name: a key of ``npkit.PRESETS`` ("gp1d", "sine", "digits", "mnist", ...).
        kernel: the GP kernel of the "gp", "gp1d" and "gp1d-nps" presets ("rbf", "matern52",
            "periodic", "weakly_periodic"; None: the preset's own); other presets refuse it.
        **overrides (Any): fields of the preset's sampler class (``noise_std``,
            ``num_context``, ...; lists become tuples) and the data arguments of its loader
            (``root``, ``split``, ``classes`` for image presets). Unknown names raise a
            ``ValueError`` listing the valid ones.

    Returns:
        The sampler: anything with ``sample(batch_size, generator) -> Batch``.

    Examples:
        >>> sampler = npkit.make_sampler("gp1d", kernel="matern52", noise_std=0.05)
        >>> batch = sampler.sample(16, torch.Generator().manual_seed(0))
        >>> digits = npkit.make_sampler("digits", split="test", num_context=(10, 20))
    """
    if name not in PRESETS:
        raise ValueError(f"unknown data preset {name!r}; expected one of {sorted(PRESETS)}")
    if kernel is not None and name not in ("gp", "gp1d", "gp1d-nps"):
        raise ValueError(f"data preset {name!r} has no kernel; kernels apply to gp, gp1d and gp1d-nps")
    cls, loader_args = preset_options(name)
    sampler_fields = (
        set()
        if name in POINT_SET_PRESETS + CLASS_SET_PRESETS
        else {f.name for f in fields(cls) if f.init and f.name != "images"}
    )
    known = sampler_fields | set(loader_args)
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)} for data preset {name!r}; expected {sorted(known)}")
    loader = {k: overrides.pop(k) for k in loader_args if k in overrides}
    sampler = PRESETS[name](kernel=kernel, **loader) if kernel is not None else PRESETS[name](**loader)
    tuples = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return replace(sampler, **tuples) if tuples else sampler


__all__ = [
    "CLASS_SET_PRESETS",
    "IMAGE_PRESETS",
    "KERNELS",
    "POINT_SET_PRESETS",
    "SET_PRESETS",
    "PRESETS",
    "FivePointSine",
    "ClassSets",
    "DistributionSets",
    "FunctionSampler",
    "GPSampler",
    "GroupedTasks",
    "ImageSampler",
    "ImageVectors",
    "PointSets",
    "SawtoothSampler",
    "SetBatch",
    "SineSampler",
    "TaskPool",
    "TaskSampler",
    "TrueGP",
    "VectorBatch",
    "digit_sets",
    "digit_vectors",
    "gp1d",
    "gp1d_nps",
    "digits_split",
    "make_sampler",
    "mask_pixels",
    "mnist_sets",
    "mnist_vectors",
    "pixel_grid",
    "preset_options",
    "spatial_digits",
    "spatial_mnist",
    "to_image",
]
