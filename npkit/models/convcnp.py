"""Convolutional Conditional Neural Process in 1D (ConvCNP, Gordon et al. 2020).

A set convolution puts the context on a uniform grid (a density channel and the density-normalised
y), a UNet maps the grid to a representation, and a second set convolution reads it at each
target: r(x_t) = sum_u w(x_t - u) f(u), w an RBF with a learnable length scale. The decoder reads
r alone (not x_t), so the model is translation equivariant.

The UNet is the default of ``neuralprocesses`` (Bruinsma et al.): ``conv_layers`` ordinary
convolutions of ``kernel_size`` points and stride 2, each halving the grid, then as many transposed
convolutions of stride 2 back up, each reading the previous one's output concatenated with the
activations of the same resolution on the way down (skip connections); ReLU after every layer.

The grid has spacing 1 / points_per_unit and is aligned to ``2 ** conv_layers`` grid steps: its
first point (counted from 0, or with ``x_range`` from the grid point at or below x_range[0] -
margin) and its length are multiples of them, so every coarser level of the UNet sits on fixed
multiples of its own spacing. Each task's window covers its real context +- ``margin`` and, when
given, ``x_range``, rounded out to those multiples; the batch's grid is the union of the windows,
and the activations of every level are zeroed outside each task's window (skipped when every
window is the whole grid, as whenever ``x_range`` covers the context: then every task has the same
window). A task therefore sees exactly the zero-padded grid it would see alone, whatever the rest
of the batch: a strided or transposed convolution over zeros outside an aligned window computes
inside it what it computes on that window alone. (Per-task windows rather than one shared grid,
so that padded and ragged batches stay exact also without ``x_range``.)

Equivariance: without ``x_range``, shifting context and targets by a multiple of
``2 ** conv_layers / points_per_unit`` shifts every level of the grid by whole steps, so the
prediction is exactly unchanged; other shifts are equivariant only up to the grid's resolution
(as in every grid ConvCNP). With ``x_range`` the part of the grid that the range fixes does not
move with the data. Targets beyond a task's window get r -> 0, the learned far-field prediction:
``x_range`` (or ``margin``) should reach the targets, since the context is encoded before the
targets are known.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from npkit.models.base import ModelConfig, NeuralProcess

EPS = 1e-8  # added to the density before normalising the data channels (as the reference code)
RBF_CUTOFF = 80.0  # largest squared distance, in length scales, that the RBF tells apart


@dataclass
class ConvCNPConfig(ModelConfig):
    """Options of the ConvCNP: the fields of ModelConfig, read as the UNet's, plus its grid.

    ``r_dim`` is the UNet's channels, ``decoder_layers`` / ``hidden_dim`` the MLP from r to the
    likelihood (1: linear, as the paper); ``encoder_layers`` only sizes the optional
    ``global_paths`` (which read absolute x, so they break translation equivariance). x_dim must
    be 1.

    Attributes:
        points_per_unit: grid points per unit of x.
        margin: the grid's extent beyond each task's context (and targets) on either side.
        x_range: [low, high] that the grid always covers (None: the points +- margin alone).
        conv_layers: the UNet's depth: halvings of the grid, as many strided convolutions down
            and transposed ones up.
        kernel_size: the convolutions' width in grid points (odd).
    """

    points_per_unit: int = 64
    margin: float = 0.1
    x_range: list[float] | None = None
    conv_layers: int = 6
    kernel_size: int = 5

    POSITIVE: ClassVar[tuple[str, ...]] = (*ModelConfig.POSITIVE, "points_per_unit", "conv_layers", "kernel_size")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.x_dim != 1:
            raise ValueError(f"x_dim must be 1 for the ConvCNP (a 1D grid), got {self.x_dim}")
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {self.kernel_size}")
        if isinstance(self.margin, bool) or not isinstance(self.margin, numbers.Real) or not self.margin >= 0:
            raise ValueError(f"margin must be a number >= 0, got {self.margin!r}")
        if self.x_range is not None:
            r = self.x_range
            ok = isinstance(r, (list, tuple)) and len(r) == 2
            ok = ok and all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) for v in r)
            if not (ok and r[0] < r[1]):
                raise ValueError(f"x_range must be two finite increasing numbers [low, high] or None, got {r!r}")
            self.x_range = [float(r[0]), float(r[1])]


def rbf(x: Tensor, u: Tensor, log_scale: Tensor) -> Tensor:
    """w[b, n, g] = exp(-min((x[b, n] - u[g])^2 / l^2, RBF_CUTOFF) / 2) for x [B, N], u [G] and
    l = exp(log_scale): the RBF, held at exp(-40) ~ 4e-18 beyond sqrt(RBF_CUTOFF) ~ 9 length
    scales (nothing in float32), since exp of far more negative numbers is ~30 times slower on
    CPUs and its denormal results slow every product downstream. Computed in place, with a
    backward pass of two sweeps (`RBF`) when x and u need no gradient."""
    if x.requires_grad or u.requires_grad:
        return torch.exp(-0.5 * ((x[..., None] - u) / log_scale.exp()).square().clamp(max=RBF_CUTOFF))
    return RBF.apply(x, u, log_scale)


class RBF(torch.autograd.Function):
    """`rbf` with a gradient for log_scale alone: dw / dlog_scale = 2 q w, q the clamped
    exponent (where the clamp holds, the true gradient is 0 and this gives 2 q w < 4e-16)."""

    @staticmethod
    def forward(ctx, x: Tensor, u: Tensor, log_scale: Tensor) -> Tensor:
        scale = math.sqrt(0.5) * torch.exp(-log_scale)
        minus_q = (x * scale)[..., None] - u * scale  # then (.)^2 clamped and negated, in place
        minus_q.square_().clamp_(max=RBF_CUTOFF / 2).neg_()
        w = torch.exp(minus_q)
        ctx.save_for_backward(w, minus_q)
        return w

    @staticmethod
    def backward(ctx, grad: Tensor):
        w, minus_q = ctx.saved_tensors
        weighted = (grad * w).reshape(-1)
        return None, None, -2 * torch.dot(weighted, minus_q.reshape(-1))


def grid(
    xc: Tensor,
    mask: Tensor | None,
    points_per_unit: int,
    margin: float,
    multiple: int = 1,
    x_range: list[float] | None = None,
) -> tuple[Tensor, Tensor]:
    """Grid points u [G] and each task's window [B, G]. A task's window covers its real context
    +- margin and ``x_range``, rounded out to multiples of ``multiple`` grid steps (all False for
    a task with neither); u, multiples of 1 / points_per_unit, is the union of the windows, its
    first index and its length multiples of ``multiple`` (``multiple`` points from 0 when no
    window has any)."""
    x = xc.detach()[..., 0]  # [B, Nc]
    real = torch.ones_like(x, dtype=torch.bool) if mask is None else mask
    far = x.new_full((x.shape[0], 1), math.inf)  # so that a task without points has lo = inf > hi
    lo = torch.cat([torch.where(real, x, far), far], -1).amin(-1) - margin  # [B]
    hi = torch.cat([torch.where(real, x, -far), -far], -1).amax(-1) + margin
    if x_range is not None:
        lo, hi = lo.clamp(max=x_range[0]), hi.clamp(min=x_range[1])
    has = lo <= hi
    # window [start, end) in grid steps, start - origin and end - origin multiples of `multiple`
    origin = 0 if x_range is None else math.floor((x_range[0] - margin) * points_per_unit)
    start = ((lo * points_per_unit).floor() - origin).div(multiple).floor() * multiple + origin
    end = ((hi * points_per_unit).ceil() + 1 - origin).div(multiple).ceil() * multiple + origin
    start, end = torch.where(has, start, origin), torch.where(has, end, origin)  # none: empty
    first, last = (start[has].min().item(), end[has].max().item()) if has.any() else (origin, origin + multiple)
    index = torch.arange(int(first), int(last), dtype=x.dtype, device=x.device)  # [G]
    window = (index >= start[:, None]) & (index < end[:, None])  # [B, G]
    return index / points_per_unit, window


class UNet(nn.Module):
    """The UNet of ``neuralprocesses`` (its default layout) on h [B, G, in] -> [B, G, channels], G a
    multiple of 2 ** depth. ``masks[level]`` [B, 1, 1, G / 2 ** level] (or None) zeroes the
    activations of each level outside each task's window. The layers keep their parameters as
    ``nn.Conv1d`` / ``nn.ConvTranspose1d`` but run as 2D convolutions of height 1 in channels-last
    memory (the layout of h, so no copies): the same numbers, ~10 % faster on CPUs (oneDNN)."""

    def __init__(self, in_channels: int, channels: int, depth: int, kernel_size: int) -> None:
        super().__init__()
        self.pad = kernel_size // 2
        self.down = nn.ModuleList(
            nn.Conv1d(in_channels if i == 0 else channels, channels, kernel_size, stride=2, padding=self.pad)
            for i in range(depth)
        )
        self.up = nn.ModuleList(  # up[i]: level i + 1 -> level i, reading the skip of level i + 1 (but the deepest)
            nn.ConvTranspose1d(
                channels if i == depth - 1 else 2 * channels, channels, kernel_size, 2, self.pad, output_padding=1
            )
            for i in range(depth)
        )

    def forward(self, h: Tensor, masks: list[Tensor] | None) -> Tensor:
        keep = (lambda t, level: t) if masks is None else (lambda t, level: t * masks[level])
        h = h.transpose(1, 2).unsqueeze(2)  # [B, in, 1, G], channels last: a view of h
        skips = []
        for level, conv in enumerate(self.down, 1):
            h = F.conv2d(h, conv.weight.unsqueeze(2), conv.bias, stride=(1, 2), padding=(0, self.pad))
            h = keep(torch.relu_(h), level)
            skips.append(h)
        for level in reversed(range(len(self.up))):
            conv = self.up[level]
            x = skips[level] if level == len(self.up) - 1 else torch.cat([skips[level], h], 1)
            h = F.conv_transpose2d(
                x, conv.weight.unsqueeze(2), conv.bias, stride=(1, 2), padding=(0, self.pad), output_padding=(0, 1)
            )
            h = keep(torch.relu_(h), level)
        return h.squeeze(2).transpose(1, 2)  # [B, G, channels]


class SetConvPath(nn.Module):
    """Set convolution onto the grid, UNet, set convolution back: r [B, Nt, r_dim]."""

    def __init__(self, cfg: ConvCNPConfig) -> None:
        super().__init__()
        self.points_per_unit, self.margin, self.x_range = cfg.points_per_unit, cfg.margin, cfg.x_range
        self.depth = cfg.conv_layers
        init = torch.tensor(math.log(2.0 / cfg.points_per_unit))
        self.log_scale_in = nn.Parameter(init.clone())
        self.log_scale_out = nn.Parameter(init.clone())
        self.unet = UNet(1 + cfg.y_dim, cfg.r_dim, cfg.conv_layers, cfg.kernel_size)
        self.out_dim = cfg.r_dim

    def set_conv(self, xc: Tensor, yc: Tensor, mask: Tensor | None, u: Tensor) -> Tensor:
        """Density h0(u) = sum_i w(u - x_i) and data sum_i w(u - x_i) y_i / (h0 + eps): [B, G, 1 + y_dim]."""
        w = rbf(xc[..., 0], u, self.log_scale_in)  # [B, Nc, G]
        ones = torch.ones_like(yc[..., :1]) if mask is None else mask[..., None].to(yc.dtype)
        if mask is not None:  # padding: weight exactly 0, whatever it holds
            yc = torch.where(mask[..., None], yc, torch.zeros_like(yc))
        sums = w.transpose(1, 2) @ torch.cat([ones, yc], -1)  # [B, G, 1 + y_dim]
        density = sums[..., :1]
        return torch.cat([density, sums[..., 1:] / (density + EPS)], -1)

    def encode(self, xc: Tensor, yc: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        """The grid u [G] and the UNet's output on it, [B, G, r_dim] (zero outside each window)."""
        u, window = grid(xc, mask, self.points_per_unit, self.margin, 2**self.depth, self.x_range)
        masks = None
        if not window.all():
            window = window[:, None, None, :].to(xc.dtype)  # [B, 1, 1, G]
            masks = [window[..., :: 2**level] for level in range(self.depth + 1)]
        h = self.set_conv(xc, yc, mask, u)
        if masks is not None:
            h = h * masks[0][:, 0, 0, :, None]
        return u, self.unet(h, masks)

    def forward(self, xt: Tensor, encoded: tuple[Tensor, Tensor]) -> Tensor:
        u, f = encoded
        return rbf(xt[..., 0], u, self.log_scale_out) @ f  # [B, Nt, G] @ [B, G, r_dim]


class ConvCNP(NeuralProcess):
    """Convolutional CNP in 1D: p(y_t | C) = likelihood(decoder(r(x_t))), r a set convolution of a UNet.

    The context is put on a grid, mapped by a UNet and read at each target; the decoder does
    not read x_t, so the model is translation equivariant (see the module docstring).
    Deterministic, registered as "convcnp"; x_dim must be 1.

    Args:
        config: a ``ConvCNPConfig``: the fields of `ModelConfig` (``r_dim`` the UNet's
            channels) plus ``points_per_unit`` (grid density, default 64), ``margin`` (grid
            beyond the context, default 0.1), ``x_range`` (a ``[low, high]`` the grid always
            covers, default None), ``conv_layers`` (UNet depth, default 6) and ``kernel_size``
            (odd, default 5). None: built from ``options``.
        **options (Any): the fields of ``ConvCNPConfig`` as keywords, instead of ``config``.
    """

    name = "convcnp"
    is_latent = False
    config_class = ConvCNPConfig
    decoder_reads_x = False

    def build_deterministic(self, cfg: ConvCNPConfig) -> SetConvPath:
        return SetConvPath(cfg)
