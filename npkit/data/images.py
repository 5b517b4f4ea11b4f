"""Images as functions: a task is one image, observed at pixel coordinates.

x is the pixel position (row, column) [B, N, 2], y the intensities [B, N, C]. The context is a
random subset of the pixels (a fresh permutation per task) or, with ``mask``, a fixed region;
the targets are other pixels, so context and targets are disjoint. `to_image` goes back
from points to an image (for completion plots).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from npkit.data.sampling import randint
from npkit.tasks import Batch

COORDS = ("unit", "centered")
VALUES = ("unit", "centered")
MASKS = ("top", "bottom", "left", "right", "center")


def pixel_grid(height: int, width: int, coords: str = "unit") -> Tensor:
    """Coordinates [H * W, 2] (row, column) of every pixel in row-major order, float32:
    ``unit`` maps pixel (i, j) to (i / (H-1), j / (W-1)) in [0, 1]^2, ``centered`` to
    (2i / (H-1) - 1, 2j / (W-1) - 1) in [-1, 1]^2 (BNP/TNP)."""
    _check_choice("coords", coords, COORDS)
    if height < 2 or width < 2:
        raise ValueError(f"images need at least 2 x 2 pixels, got {height} x {width}")
    rows = torch.arange(height, dtype=torch.float64) / (height - 1)
    cols = torch.arange(width, dtype=torch.float64) / (width - 1)
    grid = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), -1).reshape(-1, 2)
    if coords == "centered":
        grid = 2 * grid - 1
    return grid.float()


def mask_pixels(name: str, height: int, width: int) -> Tensor:
    """The bool [H, W] of the context pixels of a named mask (the targets are the others):
    ``top`` rows i < H // 2, ``bottom`` rows i >= H // 2, ``left`` columns j < W // 2,
    ``right`` columns j >= W // 2; ``center`` hides the centre block, rows H // 4 to
    H // 4 + H // 2 - 1 and columns W // 4 to W // 4 + W // 2 - 1: the context is every
    pixel outside it (the inpainting convention)."""
    _check_choice("mask", name, MASKS)
    rows = torch.arange(height).unsqueeze(1).expand(height, width)
    cols = torch.arange(width).unsqueeze(0).expand(height, width)
    if name == "top":
        return rows < height // 2
    if name == "bottom":
        return rows >= height // 2
    if name == "left":
        return cols < width // 2
    if name == "right":
        return cols >= width // 2
    r0, c0 = height // 4, width // 4
    block = (rows >= r0) & (rows < r0 + height // 2) & (cols >= c0) & (cols < c0 + width // 2)
    return ~block


def to_image(
    x: Tensor,
    y: Tensor,
    shape: tuple[int, int],
    coords: str = "unit",
    values: str = "unit",
    fill: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """Scatter points back into images: x [..., N, 2] (row, column, in the ``coords``
    convention) and y [..., N, C] -> (image [..., C, H, W], observed [..., H, W] bool), with
    ``shape = (H, W)``. ``values="centered"`` adds 0.5 back; unobserved pixels hold ``fill``.
    Raises if a coordinate is not on the pixel grid (a wrong convention or shape)."""
    _check_choice("coords", coords, COORDS)
    _check_choice("values", values, VALUES)
    height, width = shape
    if x.shape[-1] != 2 or x.shape[:-1] != y.shape[:-1]:
        raise ValueError(f"x must be [..., N, 2] and y [..., N, C] alike, got {tuple(x.shape)} and {tuple(y.shape)}")
    unit = (x.double() + 1) / 2 if coords == "centered" else x.double()
    scaled = unit * torch.tensor([height - 1, width - 1], dtype=torch.float64, device=x.device)
    index = scaled.round()
    if (scaled - index).abs().max() > 1e-3 or index.min() < 0 or (index >= torch.tensor([height, width])).any():
        raise ValueError(f"x is not on the {height} x {width} pixel grid of coords={coords!r}")
    flat = (index[..., 0] * width + index[..., 1]).long()  # [..., N]
    lead, channels = y.shape[:-2], y.shape[-1]
    image = torch.full((*lead, height * width, channels), fill, dtype=y.dtype, device=y.device)
    image.scatter_(-2, flat.unsqueeze(-1).expand(*flat.shape, channels), y + 0.5 if values == "centered" else y)
    observed = torch.zeros((*lead, height * width), dtype=torch.bool, device=y.device)
    observed.scatter_(-1, flat, True)
    image = image.transpose(-1, -2).reshape(*lead, channels, height, width)
    return image, observed.reshape(*lead, height, width)


def _check_choice(name: str, value: str | None, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")


@dataclass
class ImageSampler:
    """Image-completion tasks: each task is one image, a function from pixel coordinates to intensities.

    Each task is an image drawn uniformly from ``images``; x `[batch, n_points, 2]` = (row,
    column), y `[batch, n_points, channels]` = its intensities (float32, contiguous).

    - Without ``mask``: Nc ~ U{num_context} drawn once per batch (all tasks share it); each
      task takes a random permutation of its pixels, the first Nc are the context and the next
      Nt the targets, Nt ~ U{num_target[0], min(num_target[1], max_points - Nc)} once per
      batch, or every remaining pixel when ``num_target`` is None (context ∪ targets = the
      image).
    - With ``mask`` (see ``npkit.data.mask_pixels``): the context is exactly the masked pixels
      (row-major order, ``num_context`` unused); the targets are every other pixel, or a
      random Nt of them per task when ``num_target`` is given.

    Attributes:
        images: the images `[n_images, channels, height, width]`, float in [0, 1].
        source: names the data (``"digits"``, ``"mnist:train"``): the repr shows it and not
            the images, so cached evaluation sets are told apart by it.
        num_context: (low, high) of the context size (None: (1, H * W // 2)).
        num_target: (low, high) of the target size (None: every remaining pixel).
        max_points: cap on Nc + Nt (None: H * W).
        mask: a named context region, "top", "bottom", "left", "right" or "center" (None:
            random pixels).
        coords: "unit": coordinates in [0, 1]^2; "centered": in [-1, 1]^2 (BNP/TNP).
        values: "unit": y = pixel; "centered": y = pixel - 0.5.
    """

    images: Tensor = field(repr=False, compare=False)
    source: str = "images"
    num_context: tuple[int, int] | None = None
    num_target: tuple[int, int] | None = None
    max_points: int | None = None
    mask: str | None = None
    coords: str = "unit"
    values: str = "unit"

    def __post_init__(self) -> None:
        images = self.images
        if not isinstance(images, Tensor) or images.dim() != 4 or not images.is_floating_point():
            got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise ValueError(f"images must be a float tensor [N, C, H, W], got {got}")
        n, _, height, width = images.shape
        if n < 1 or height < 2 or width < 2:
            raise ValueError(f"images must hold at least one image of at least 2 x 2 pixels, got {tuple(images.shape)}")
        if images.min() < 0 or images.max() > 1:
            raise ValueError("images must have values in [0, 1]")
        self.images = images.float().contiguous()
        if not isinstance(self.source, str) or not self.source:
            raise ValueError(f"source must be a non-empty string naming the data, got {self.source!r}")
        _check_choice("coords", self.coords, COORDS)
        _check_choice("values", self.values, VALUES)
        if self.mask is not None:
            _check_choice("mask", self.mask, MASKS)
        pixels = height * width
        if self.max_points is None:
            self.max_points = pixels
        if not 1 <= self.max_points <= pixels:
            raise ValueError(f"max_points must lie in [1, {pixels}] (pixels per image), got {self.max_points}")
        if self.num_context is None:
            self.num_context = (1, pixels // 2)
        self.num_context = tuple(self.num_context)
        lo_c, hi_c = self.num_context
        if not 0 <= lo_c <= hi_c:
            raise ValueError(f"num_context must satisfy 0 <= low <= high, got {self.num_context}")
        if self.mask is None and hi_c >= self.max_points:
            raise ValueError(
                f"num_context={self.num_context} leaves no target pixel: its high must be below "
                f"{self.max_points} (max_points; the images have {height} x {width} = {pixels} pixels)"
            )
        if self.num_target is not None:
            self.num_target = tuple(self.num_target)
            lo_t, hi_t = self.num_target
            if not 1 <= lo_t <= hi_t:
                raise ValueError(f"num_target must satisfy 1 <= low <= high, got {self.num_target}")
            room = self.max_points - hi_c if self.mask is None else pixels - int(self.context_mask.sum())
            if lo_t > room:
                raise ValueError(
                    f"num_target={self.num_target} asks for {lo_t} target pixels but only {room} remain "
                    f"({height} x {width} images, num_context={self.num_context}, mask={self.mask!r})"
                )

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the images."""
        return tuple(self.images.shape[-2:])

    @property
    def context_mask(self) -> Tensor:
        """bool [H, W] of the context pixels of ``mask`` (requires a mask)."""
        if self.mask is None:
            raise ValueError("this sampler has no mask: its contexts are random pixels")
        return mask_pixels(self.mask, *self.shape)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Batch:
        """A batch of ``batch_size`` image tasks; draws, in order, the counts, the images and
        the pixel permutations from ``generator``."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        height, width = self.shape
        pixels = height * width
        if self.mask is None:
            nc = randint(*self.num_context, generator)
            nt = pixels - nc if self.num_target is None else self._draw_targets(self.max_points - nc, generator)
            index = torch.randint(len(self.images), (batch_size,), generator=generator)
            order = torch.rand(batch_size, pixels, generator=generator).argsort(dim=1)
            context, targets = order[:, :nc], order[:, nc : nc + nt]
        else:
            inside = self.context_mask.reshape(-1)
            context_pixels, rest = inside.nonzero().squeeze(1), (~inside).nonzero().squeeze(1)
            nt = len(rest) if self.num_target is None else self._draw_targets(len(rest), generator)
            index = torch.randint(len(self.images), (batch_size,), generator=generator)
            context = context_pixels.expand(batch_size, -1)
            if self.num_target is None:
                targets = rest.expand(batch_size, -1)
            else:
                targets = rest[torch.rand(batch_size, len(rest), generator=generator).argsort(dim=1)[:, :nt]]
        return self.tasks(index, context, targets)

    def tasks(self, index: Tensor, context: Tensor, targets: Tensor) -> Batch:
        """The batch of images ``images[index]`` (index [B]) observed at the pixels ``context``
        [B, Nc] (flat row-major pixel indices) with targets ``targets`` [B, Nt], which may
        overlap the context (e.g. every pixel, for completion metrics)."""
        height, width = self.shape
        pixels, channels = height * width, self.images.shape[1]
        for name, which in (("context", context), ("targets", targets)):
            if (
                which.dim() != 2
                or len(which) != len(index)
                or (which.numel() and not 0 <= which.min() <= which.max() < pixels)
            ):
                raise ValueError(
                    f"{name} must be [{len(index)}, n] pixel indices in [0, {pixels}), got shape {tuple(which.shape)}"
                )
        grid = pixel_grid(height, width, self.coords)
        intensities = self.images[index].reshape(len(index), channels, pixels).transpose(1, 2)  # [B, HW, C]
        if self.values == "centered":
            intensities = intensities - 0.5

        def points(which: Tensor) -> tuple[Tensor, Tensor]:
            y = torch.gather(intensities, 1, which.unsqueeze(-1).expand(-1, -1, channels))
            return grid[which].contiguous(), y.contiguous()

        xc, yc = points(context)
        xt, yt = points(targets)
        return Batch(xc=xc, yc=yc, xt=xt, yt=yt)

    def _draw_targets(self, room: int, generator: torch.Generator | None) -> int:
        return randint(self.num_target[0], min(self.num_target[1], room), generator)

    def to_image(self, x: Tensor, y: Tensor, fill: float = 0.0) -> tuple[Tensor, Tensor]:
        """`to_image` with this sampler's shape and conventions."""
        return to_image(x, y, self.shape, self.coords, self.values, fill)
