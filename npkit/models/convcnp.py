"""Convolutional Conditional Neural Process in 1D (ConvCNP, Gordon et al. 2020).

A set convolution puts the context on a uniform grid (a density channel and the density-normalised
y), a CNN of residual depthwise-separable convolutions maps the grid to a representation, and a
second set convolution reads it at each target: r(x_t) = sum_u w(x_t - u) f(u), w an RBF with a
learnable length scale. The decoder reads r alone (not x_t), so the model is translation
equivariant.

The grid has spacing 1 / points_per_unit and sits on integer multiples of it, so shifting the data
by a multiple of the spacing shifts the grid exactly. Each task's window is its own real context
range +- ``margin``, and the CNN's activations are zeroed outside it after every block: a task sees
exactly the zero-padded grid it would see alone, whatever the rest of the batch. The CNN has stride
1 (no UNet down-sampling), so the equivariance is exact for every shift by whole grid steps and the
grid needs no rounding of its length. Targets beyond a window get r -> 0, the learned far-field
prediction; ``margin`` should reach the targets (on gp1d, 2 leaves 0.2 % of them outside).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from npkit.models.base import ModelConfig, NeuralProcess

EPS = 1e-8  # added to the density before normalising the data channels (as the reference code)


@dataclass
class ConvCNPConfig(ModelConfig):
    """ConvCNP sizes in npkit's names: ``r_dim`` the CNN's channels, ``conv_layers`` its residual
    blocks (one depthwise convolution of ``kernel_size`` grid points and one pointwise each),
    ``decoder_layers`` / ``hidden_dim`` the MLP from r to the likelihood (1: linear, as the paper).
    ``encoder_layers`` only sizes the optional ``global_paths`` (which read absolute x, so they
    break translation equivariance). x_dim must be 1."""

    points_per_unit: int = 64
    margin: float = 2.0
    conv_layers: int = 7
    kernel_size: int = 41

    POSITIVE: ClassVar[tuple[str, ...]] = (*ModelConfig.POSITIVE, "points_per_unit", "conv_layers", "kernel_size")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.x_dim != 1:
            raise ValueError(f"x_dim must be 1 for the ConvCNP (a 1D grid), got {self.x_dim}")
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {self.kernel_size}")
        if isinstance(self.margin, bool) or not self.margin >= 0:
            raise ValueError(f"margin must be a number >= 0, got {self.margin!r}")


def rbf(d: Tensor, log_scale: Tensor) -> Tensor:
    """exp(-d^2 / (2 l^2)) for differences d and l = exp(log_scale)."""
    return torch.exp(-0.5 * (d / log_scale.exp()) ** 2)


def grid(xc: Tensor, mask: Tensor | None, points_per_unit: int, margin: float) -> tuple[Tensor, Tensor]:
    """Grid points u [G] (multiples of 1 / points_per_unit covering every task's real context +-
    margin) and each task's window [B, G] (its own range; all False for a task without context)."""
    x = xc.detach()[..., 0]  # [B, Nc]
    real = torch.ones_like(x, dtype=torch.bool) if mask is None else mask
    far = x.new_full((x.shape[0], 1), math.inf)  # so that a task without points has lo = inf > hi
    lo = torch.cat([torch.where(real, x, far), far], -1).amin(-1)  # [B]
    hi = torch.cat([torch.where(real, x, -far), -far], -1).amax(-1)
    lo, hi = ((lo - margin) * points_per_unit).floor(), ((hi + margin) * points_per_unit).ceil()
    has = real.any(-1)
    first, last = (lo[has].min().item(), hi[has].max().item()) if has.any() else (0, 0)
    index = torch.arange(int(first), int(last) + 1, dtype=x.dtype, device=x.device)  # [G]
    window = (index >= lo[:, None]) & (index <= hi[:, None])  # [B, G]
    return index / points_per_unit, window


class ConvBlock(nn.Module):
    """h + pointwise(relu(depthwise(relu(h)))) on h [B, C, G]."""

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels)
        self.pointwise = nn.Conv1d(channels, channels, 1)

    def forward(self, h: Tensor) -> Tensor:
        return h + self.pointwise(torch.relu(self.depthwise(torch.relu(h))))


class SetConvPath(nn.Module):
    """Set convolution onto the grid, CNN, set convolution back: r [B, Nt, r_dim]."""

    def __init__(self, cfg: ConvCNPConfig) -> None:
        super().__init__()
        self.points_per_unit, self.margin = cfg.points_per_unit, cfg.margin
        init = torch.tensor(math.log(2.0 / cfg.points_per_unit))
        self.log_scale_in = nn.Parameter(init.clone())
        self.log_scale_out = nn.Parameter(init.clone())
        self.input = nn.Conv1d(1 + cfg.y_dim, cfg.r_dim, 1)
        self.blocks = nn.ModuleList(ConvBlock(cfg.r_dim, cfg.kernel_size) for _ in range(cfg.conv_layers))
        self.out_dim = cfg.r_dim

    def set_conv(self, xc: Tensor, yc: Tensor, mask: Tensor | None, u: Tensor) -> Tensor:
        """Density h0(u) = sum_i w(u - x_i) and data sum_i w(u - x_i) y_i / (h0 + eps): [B, G, 1 + y_dim]."""
        w = rbf(u[:, None] - xc[:, None, :, 0], self.log_scale_in)  # [B, G, Nc]
        if mask is not None:
            w = torch.where(mask[:, None, :], w, torch.zeros_like(w))
        density = w.sum(-1, keepdim=True)  # [B, G, 1]
        return torch.cat([density, (w @ yc) / (density + EPS)], -1)

    def encode(self, xc: Tensor, yc: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        """The grid u [G] and the CNN's output on it, [B, G, r_dim] (zero outside each window)."""
        u, window = grid(xc, mask, self.points_per_unit, self.margin)
        window = window[:, None, :].to(xc.dtype)  # [B, 1, G]
        h = self.input(self.set_conv(xc, yc, mask, u).transpose(1, 2)) * window  # [B, r_dim, G]
        for block in self.blocks:
            h = block(h) * window
        return u, h.transpose(1, 2)

    def forward(self, xt: Tensor, encoded: tuple[Tensor, Tensor]) -> Tensor:
        u, f = encoded
        return rbf(xt[..., 0, None] - u, self.log_scale_out) @ f  # [B, Nt, G] @ [B, G, r_dim]


class ConvCNP(NeuralProcess):
    """p(y_t | C) = N(decoder(r(x_t))), r the set convolution of a CNN of the gridded context."""

    name = "convcnp"
    is_latent = False
    config_class = ConvCNPConfig
    decoder_reads_x = False

    def build_deterministic(self, cfg: ConvCNPConfig) -> SetConvPath:
        return SetConvPath(cfg)
