"""Images as flat vectors, for models of single items (the VAE).

A batch holds B items: ``x`` [B, D] (an image [C, H, W] flattened, D = C * H * W) and optional
``labels`` [B]. `ImageVectors` draws batches from a seeded ``torch.Generator`` alone, with
optional dynamic binarisation (each draw samples Bernoulli pixels from the intensities);
`digit_vectors` builds it from scikit-learn's 8x8 digits, `mnist_vectors` from MNIST.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import torch
from torch import Tensor

from npkit.data.sets import _check_count


@dataclass
class VectorBatch:
    """B items: x [B, D] float, labels [B] int64 or None."""

    x: Tensor
    labels: Tensor | None = None

    def __post_init__(self) -> None:
        if self.x.dim() != 2 or not self.x.is_floating_point():
            raise ValueError(f"x must be a float [batch, x_dim] tensor, got {list(self.x.shape)} {self.x.dtype}")
        if self.labels is not None and self.labels.shape != self.x.shape[:1]:
            raise ValueError(f"labels must have shape [{self.batch_size}], got {list(self.labels.shape)}")

    @property
    def batch_size(self) -> int:
        return self.x.shape[0]

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> VectorBatch:
        """Every tensor on ``device``; ``x`` also converted to ``dtype`` when given."""
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        moved = {k: v if v is None else v.to(device) for k, v in moved.items()}
        moved["x"] = moved["x"].to(dtype=dtype) if dtype is not None else moved["x"]
        return replace(self, **moved)


@dataclass(eq=False)
class ImageVectors:
    """Images [N, C, H, W] in [0, 1] with labels [N] int64, drawn uniformly with replacement as
    vectors x [B, C * H * W]. ``binarize``: x ~ Bernoulli(intensity), a fresh draw every time
    (dynamic binarisation, for a Bernoulli likelihood)."""

    images: Tensor = field(repr=False)
    labels: Tensor = field(repr=False)
    binarize: bool = False
    source: str = "images"

    def __post_init__(self) -> None:
        if not isinstance(self.images, Tensor) or self.images.dim() != 4 or not self.images.is_floating_point():
            raise ValueError(
                f"images must be a float tensor [n, channels, height, width], got {_describe(self.images)}"
            )
        if not isinstance(self.labels, Tensor) or self.labels.shape != self.images.shape[:1]:
            raise ValueError(f"labels must be a tensor of shape [{self.images.shape[0]}], got {_describe(self.labels)}")
        if len(self.images) == 0 or self.images.min() < 0 or self.images.max() > 1:
            raise ValueError("images must be a non-empty set with every value in [0, 1]")
        if not isinstance(self.binarize, bool):
            raise ValueError(f"binarize must be a bool, got {self.binarize!r}")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def x_dim(self) -> int:
        """Length of one vector, C * H * W."""
        return self.images[0].numel()

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> VectorBatch:
        """x [batch_size, C * H * W], labels [batch_size]."""
        _check_count("batch_size", batch_size)
        return self.batch_of(torch.randint(len(self.images), (batch_size,), generator=generator), generator)

    def batch_of(self, chosen: Tensor, generator: torch.Generator | None = None) -> VectorBatch:
        """The images at indices ``chosen`` [B] (binarised with ``generator`` if ``binarize``)."""
        x = self.images[chosen].flatten(1)
        return VectorBatch(torch.bernoulli(x, generator=generator) if self.binarize else x, self.labels[chosen])


def _describe(value) -> str:
    return f"shape {list(value.shape)} {value.dtype}" if isinstance(value, Tensor) else type(value).__name__


def digit_vectors(split: str = "train", binarize: bool = False) -> ImageVectors:
    """scikit-learn's 8x8 digits as 64-vectors, with the split of ``npkit.data.digits_split``
    (``"test"`` is the last 360 images)."""
    from npkit.data import digits_split  # npkit.data imports the samplers

    images, labels = digits_split(split)
    return ImageVectors(images, labels, binarize, source=f"digits:{split}")


def mnist_vectors(root=None, split: str = "train", binarize: bool = False) -> ImageVectors:
    """MNIST's 28x28 digits as 784-vectors (files under ``root``, default ``$NPKIT_DATA``; see
    ``npkit.data.image_datasets.load_mnist``)."""
    from npkit.data.image_datasets import load_mnist

    images, labels = load_mnist(root=root, split=split)
    return ImageVectors(images, labels, binarize, source=f"mnist:{split}")
