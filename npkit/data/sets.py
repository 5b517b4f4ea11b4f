"""Datasets of i.i.d. items, for models of whole sets (the Neural Statistician).

A batch holds B datasets of N items each: ``x`` [B, N, D], optional ``labels`` [B] (the family or
class each dataset was drawn from, for evaluation only) and an optional ``mask`` [B, N] of the
items that are present. Samplers draw batches from a seeded ``torch.Generator`` alone:

- `DistributionSets`: 1D samples from a random family with a random mean and std (the
  paper's synthetic experiment);
- `PointSets`: one image as a cloud of 2D points drawn where it is bright ("spatial MNIST");
  `spatial_digits` builds it from scikit-learn's 8x8 digits, `spatial_mnist` from MNIST;
- `ClassSets`: several distinct images of one class, each item a whole flattened image (the
  paper's few-shot OMNIGLOT setting, section 5.4); `digit_sets` builds it from the 8x8
  digits, `mnist_sets` from MNIST.

Both image samplers also give the episodes of ``npkit.evaluation.statistician.few_shot_accuracy``:
``support_sets(indices [ways, k])`` and ``query_sets(indices [q])``, so that the prototype of a
class is always ``features(support.x).view(ways, -1, F).mean(1)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace

import torch
from torch import Tensor

FAMILIES = ("gaussian", "exponential", "uniform", "laplace")
_OPEN_UNIT = 1e-12  # uniforms are kept in [eps, 1 - eps], where every quantile function is finite


@dataclass
class SetBatch:
    """B datasets of N items: x [B, N, D] float, labels [B] int64 or None, mask [B, N] bool or None."""

    x: Tensor
    labels: Tensor | None = None
    mask: Tensor | None = None

    def __post_init__(self) -> None:
        if self.x.dim() != 3 or not self.x.is_floating_point():
            raise ValueError(
                f"x must be a float [batch, n_items, x_dim] tensor, got {list(self.x.shape)} {self.x.dtype}"
            )
        if self.labels is not None and self.labels.shape != self.x.shape[:1]:
            raise ValueError(f"labels must have shape [{self.batch_size}], got {list(self.labels.shape)}")
        if self.mask is not None and (self.mask.dtype != torch.bool or self.mask.shape != self.x.shape[:2]):
            raise ValueError(f"mask must be bool [{self.batch_size}, {self.num_items}], got {list(self.mask.shape)}")

    @property
    def batch_size(self) -> int:
        return self.x.shape[0]

    @property
    def num_items(self) -> int:
        return self.x.shape[1]

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> SetBatch:
        """Every tensor on ``device``; ``x`` also converted to ``dtype`` when given."""
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        moved = {k: v if v is None else v.to(device) for k, v in moved.items()}
        moved["x"] = moved["x"].to(dtype=dtype) if dtype is not None else moved["x"]
        return replace(self, **moved)


def _check_images(images: Tensor, labels: Tensor) -> None:
    if images.dim() != 4 or images.shape[1] != 1:
        raise ValueError(f"images must have shape [n, 1, height, width], got {list(images.shape)}")
    if labels.shape != images.shape[:1]:
        raise ValueError(f"labels must have shape [{images.shape[0]}], got {list(labels.shape)}")


def _keep_classes(sampler) -> None:
    """Keep the images of ``sampler.classes`` (sorted, deduplicated) when it is given."""
    if sampler.classes is not None:
        sampler.classes = tuple(sorted({int(c) for c in sampler.classes}))
        keep = torch.isin(sampler.labels, torch.tensor(sampler.classes))
        if not keep.any():
            raise ValueError(f"classes={list(sampler.classes)} selects no image of {sampler.source}")
        sampler.images, sampler.labels = sampler.images[keep], sampler.labels[keep]


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_range(name: str, bounds: tuple[float, float], lowest: float = -math.inf) -> None:
    if len(bounds) != 2 or not lowest < bounds[0] <= bounds[1]:
        raise ValueError(f"{name} must be (low, high) with {lowest} < low <= high, got {bounds}")


def standardised_quantile(family: str, u: Tensor) -> Tensor:
    """The quantile function of ``family``, standardised to mean 0 and std 1, at u in (0, 1)."""
    if family == "gaussian":
        return torch.special.ndtri(u)
    if family == "exponential":  # Exp(1) has mean 1 and std 1
        return -torch.log1p(-u) - 1.0
    if family == "uniform":  # U(-sqrt 3, sqrt 3)
        return math.sqrt(3.0) * (2.0 * u - 1.0)
    if family == "laplace":  # Laplace(0, b = 1 / sqrt 2)
        centred = u - 0.5
        return -torch.sign(centred) * torch.log1p(-2.0 * centred.abs()) / math.sqrt(2.0)
    raise ValueError(f"unknown family {family!r}; expected one of {list(FAMILIES)}")


@dataclass
class DistributionSets:
    """1D datasets of ``num_items`` i.i.d. samples, x = mean + std * eps, where eps follows a
    family drawn uniformly from ``families`` (each standardised to mean 0, std 1), mean ~
    U(``mean_range``) and std ~ U(``std_range``) per dataset; labels index ``families``.

    The paper (section 5.1) uses 200 samples from exponential, Gaussian, uniform and Laplacian
    distributions with a random mean in [-1, 1] and a random spread in [0.5, 2]; whether that
    spread is the variance or the std could not be confirmed from its text here: this uses the
    std. Samples are drawn by inverse transform from one uniform draw of the generator.
    """

    num_items: int = 200
    mean_range: tuple[float, float] = (-1.0, 1.0)
    std_range: tuple[float, float] = (0.5, 2.0)
    families: tuple[str, ...] = FAMILIES

    def __post_init__(self) -> None:
        _check_count("num_items", self.num_items)
        _check_range("mean_range", self.mean_range)
        _check_range("std_range", self.std_range, lowest=0.0)
        unknown = sorted(set(self.families) - set(FAMILIES))
        if unknown or not self.families:
            raise ValueError(f"families must be a non-empty subset of {list(FAMILIES)}, got {list(self.families)}")

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> SetBatch:
        """x [batch_size, num_items, 1], labels [batch_size] (index into ``families``)."""
        _check_count("batch_size", batch_size)
        labels = torch.randint(len(self.families), (batch_size,), generator=generator)
        mean = _uniform((batch_size, 1), self.mean_range, generator)
        std = _uniform((batch_size, 1), self.std_range, generator)
        u = torch.rand(batch_size, self.num_items, generator=generator, dtype=torch.float64)
        u = u.clamp(_OPEN_UNIT, 1.0 - _OPEN_UNIT)
        every_family = torch.stack([standardised_quantile(f, u) for f in self.families])  # [F, B, N]
        eps = every_family[labels, torch.arange(batch_size)]
        return SetBatch((mean + std * eps).unsqueeze(-1).float(), labels)


def _uniform(shape: tuple[int, ...], bounds: tuple[float, float], generator: torch.Generator | None) -> Tensor:
    low, high = bounds
    return low + (high - low) * torch.rand(shape, generator=generator, dtype=torch.float64)


@dataclass(eq=False)
class PointSets:
    """Each dataset is one image [1, H, W] seen as ``num_points`` (row, column) points in [0, 1]^2:
    pixels drawn with probability proportional to their intensity (with replacement), each point
    jittered uniformly within its pixel, then divided by (H, W). Labels are the images' classes.

    ``images`` [N, 1, H, W] in [0, 1], every one with some ink; ``labels`` [N] int64;
    ``classes`` keeps only the images with those labels.
    """

    images: Tensor = field(repr=False)
    labels: Tensor = field(repr=False)
    num_points: int = 50
    classes: tuple[int, ...] | None = None
    source: str = "images"

    def __post_init__(self) -> None:
        _check_count("num_points", self.num_points)
        _check_images(self.images, self.labels)
        if self.images.min() < 0 or self.images.max() > 1 or (self.images.flatten(1).sum(1) <= 0).any():
            raise ValueError("images must lie in [0, 1] and each have a positive total intensity")
        _keep_classes(self)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> SetBatch:
        """x [batch_size, num_points, 2] (row, column) in [0, 1]^2, labels [batch_size]."""
        _check_count("batch_size", batch_size)
        return self.points_of(torch.randint(len(self.images), (batch_size,), generator=generator), generator)

    def points_of(self, chosen: Tensor, generator: torch.Generator | None = None) -> SetBatch:
        """The point sets of the images at indices ``chosen`` [B]: x [B, num_points, 2], labels [B]."""
        height, width = self.images.shape[-2:]
        intensity = self.images[chosen].flatten(1).double()  # [B, H * W]
        pixel = torch.multinomial(intensity, self.num_points, replacement=True, generator=generator)
        corner = torch.stack([pixel // width, pixel % width], -1).double()  # [B, P, 2]
        jitter = torch.rand(corner.shape, generator=generator, dtype=torch.float64)
        scale = torch.tensor([height, width], dtype=torch.float64)
        return SetBatch(((corner + jitter) / scale).float(), self.labels[chosen])

    def support_sets(self, indices: Tensor, generator: torch.Generator | None = None) -> SetBatch:
        """Few-shot support: every one of the images ``indices`` [ways, k] is its own point set ->
        x [ways * k, num_points, 2] (class by class), labels [ways * k]."""
        return self.points_of(indices.reshape(-1), generator)

    def query_sets(self, indices: Tensor, generator: torch.Generator | None = None) -> SetBatch:
        """Few-shot queries: the point sets of the images ``indices`` [q] -> x [q, num_points, 2]."""
        return self.points_of(indices, generator)


@dataclass(eq=False)
class ClassSets:
    """Each dataset is ``set_size`` distinct images of one class (the class uniform over the kept
    ones), every item a whole image flattened to [H * W] in [0, 1]: the paper's few-shot setting
    (section 5.4, OMNIGLOT), where c summarises a class. Labels are the sets' classes.

    ``images`` [N, 1, H, W] in [0, 1]; ``labels`` [N] int64; ``classes`` keeps only the images with
    those labels (each kept class needs at least ``set_size`` images); ``binarize``: every pixel
    ~ Bernoulli(intensity), drawn afresh each time (dynamic binarisation, for a Bernoulli likelihood).
    """

    images: Tensor = field(repr=False)
    labels: Tensor = field(repr=False)
    set_size: int = 5
    classes: tuple[int, ...] | None = None
    binarize: bool = False
    source: str = "images"

    def __post_init__(self) -> None:
        _check_count("set_size", self.set_size)
        _check_images(self.images, self.labels)
        if len(self.images) == 0 or self.images.min() < 0 or self.images.max() > 1:
            raise ValueError("images must be a non-empty set with every value in [0, 1]")
        if not isinstance(self.binarize, bool):
            raise ValueError(f"binarize must be a bool, got {self.binarize!r}")
        _keep_classes(self)
        self._members = [torch.nonzero(self.labels == c).squeeze(1) for c in self.class_list]
        for c, members in zip(self.class_list, self._members):
            if len(members) < self.set_size:
                raise ValueError(f"set_size={self.set_size} exceeds the {len(members)} image(s) of class {c}")

    @property
    def class_list(self) -> list[int]:
        """The classes present, sorted."""
        return sorted(set(self.labels.tolist()))

    @property
    def x_dim(self) -> int:
        """Length of one item, H * W."""
        return self.images[0].numel()

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> SetBatch:
        """x [batch_size, set_size, H * W], each set ``set_size`` distinct images of one class;
        labels [batch_size]."""
        _check_count("batch_size", batch_size)
        picked = torch.randint(len(self._members), (batch_size,), generator=generator).tolist()
        chosen = []
        for k in picked:
            members = self._members[k]
            chosen.append(members[torch.randperm(len(members), generator=generator)[: self.set_size]])
        return self.sets_of(torch.stack(chosen), generator)

    def sets_of(self, indices: Tensor, generator: torch.Generator | None = None) -> SetBatch:
        """The images ``indices`` [B, n], each row one dataset -> x [B, n, H * W], labels [B] (those
        of each row's first image; binarised with ``generator`` if ``binarize``)."""
        x = self.images[indices].flatten(2)
        x = torch.bernoulli(x, generator=generator) if self.binarize else x
        return SetBatch(x, self.labels[indices[:, 0]])

    def support_sets(self, indices: Tensor, generator: torch.Generator | None = None) -> SetBatch:
        """Few-shot support: the k images of each class in ``indices`` [ways, k] form ONE dataset
        -> x [ways, k, H * W], labels [ways]."""
        return self.sets_of(indices, generator)

    def query_sets(self, indices: Tensor, generator: torch.Generator | None = None) -> SetBatch:
        """Few-shot queries: each image of ``indices`` [q] is a dataset of one item -> x [q, 1, H * W]."""
        return self.sets_of(indices.unsqueeze(1), generator)


def spatial_digits(split: str = "train", classes=None, num_points: int = 50) -> PointSets:
    """Spatial digits: `PointSets` of scikit-learn's 8x8 digits, with the split of
    ``npkit.data.digits`` (``"test"`` is the last 360 images); ``classes`` keeps those digits."""
    from npkit.data import digits_split  # npkit.data imports this module

    images, labels = digits_split(split)
    return PointSets(images, labels, num_points, classes, source=f"digits:{split}")


def spatial_mnist(root=None, split: str = "train", classes=None, num_points: int = 50) -> PointSets:
    """Spatial MNIST (the paper's section 5.3): `PointSets` of MNIST's 28x28 digits of
    ``split`` (files under ``root``, default ``$NPKIT_DATA``; see
    ``npkit.data.image_datasets.load_mnist``); ``classes`` keeps those digits."""
    from npkit.data.image_datasets import load_mnist

    images, labels = load_mnist(root=root, split=split)
    return PointSets(images, labels, num_points, classes, source=f"mnist:{split}")


def digit_sets(split: str = "train", classes=None, set_size: int = 5, binarize: bool = False) -> ClassSets:
    """Sets of digits: `ClassSets` of scikit-learn's 8x8 digits (64 pixels per item), with
    the split of ``npkit.data.digits`` (``"test"`` is the last 360 images); ``classes`` keeps those digits."""
    from npkit.data import digits_split  # npkit.data imports this module

    images, labels = digits_split(split)
    return ClassSets(images, labels, set_size, classes, binarize, source=f"digits:{split}")


def mnist_sets(root=None, split: str = "train", classes=None, set_size: int = 5, binarize: bool = False) -> ClassSets:
    """Sets of MNIST digits: `ClassSets` of MNIST's 28x28 digits of ``split`` (784 pixels
    per item; files under ``root``, default ``$NPKIT_DATA``); ``classes`` keeps those digits."""
    from npkit.data.image_datasets import load_mnist

    images, labels = load_mnist(root=root, split=split)
    return ClassSets(images, labels, set_size, classes, binarize, source=f"mnist:{split}")
