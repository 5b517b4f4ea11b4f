"""The one model interface and the parts every Neural Process is assembled from.

    pred = model(xc, yc, xt, num_samples=16)   # xc [B, Nc, Dx], yc [B, Nc, Dy], xt [B, Nt, Dx]
    pred.mean, pred.stddev                      # [S, B, Nt, Dy] latent models, [B, Nt, Dy] else
    pred.log_prob(yt)                           # [S, B, Nt] / [B, Nt]: summed over y_dim

Latent models also expose ``model.posterior(xc, yc)``: the distribution of z, [B, z_dim].
Models never know how they are trained: losses live in ``npkit.objectives``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, Independent, MixtureSameFamily, Normal

from npkit.config import from_options
from npkit.nn import SelfAttention, init_weights, masked_mean, mlp
from npkit.nn.attention import MultiheadAttention
from npkit.nn.init import INITS
from npkit.tasks import check_context


@dataclass
class ModelConfig:
    """Sizes and choices shared by the Neural Process family (unused fields are ignored).

    Output std: ``min_sigma + (1 - min_sigma) * softplus(raw)``, or the constant ``fixed_sigma``.
    Latent std: ``latent_min_sigma + (1 - latent_min_sigma) * sigmoid(raw)`` (NP/ANP papers).
    """

    x_dim: int = 1
    y_dim: int = 1
    hidden_dim: int = 128
    r_dim: int = 128
    z_dim: int = 128
    encoder_layers: int = 3
    decoder_layers: int = 3
    attention_layers: int = 2
    num_heads: int = 8
    min_sigma: float = 0.1
    fixed_sigma: float | None = None
    latent_min_sigma: float = 0.1
    init: str = "default"
    init_std: float = 0.1
    num_samples: int = 1

    def __post_init__(self) -> None:
        for f in (
            "x_dim",
            "y_dim",
            "hidden_dim",
            "r_dim",
            "z_dim",
            "encoder_layers",
            "decoder_layers",
            "num_heads",
            "num_samples",
        ):
            value = getattr(self, f)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{f} must be a positive integer, got {value!r}")
        if not isinstance(self.attention_layers, int) or self.attention_layers < 0:
            raise ValueError(f"attention_layers must be an integer >= 0, got {self.attention_layers!r}")
        for f in ("min_sigma", "latent_min_sigma"):
            if not 0.0 <= getattr(self, f) < 1.0:
                raise ValueError(f"{f} must lie in [0, 1), got {getattr(self, f)}")
        if self.fixed_sigma is not None and not self.fixed_sigma > 0:
            raise ValueError(f"fixed_sigma must be > 0 or None, got {self.fixed_sigma}")
        if self.init not in INITS:
            raise ValueError(f"unknown init scheme {self.init!r}; expected one of {list(INITS)}")

    @classmethod
    def from_dict(cls, values: dict) -> ModelConfig:
        return from_options(cls, values, "model")

    def to_dict(self) -> dict:
        return asdict(self)


def check_num_samples(num_samples: int) -> int:
    """num_samples must be a positive integer (bool excluded)."""
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
    return num_samples


def at_least_float32(t: Tensor) -> Tensor:
    """Distribution parameters in float32 or wider, also under bf16/fp16 autocast."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


class MeanEncoder(nn.Module):
    """r = mean_i MLP([x_i, y_i]): one representation for every target, [B, Nt, r_dim]."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.net = mlp(cfg.x_dim + cfg.y_dim, cfg.hidden_dim, cfg.r_dim, cfg.encoder_layers)

    def forward(self, xc: Tensor, yc: Tensor, xt: Tensor, mask: Tensor | None) -> Tensor:
        r = masked_mean(self.net(torch.cat([xc, yc], -1)), mask)
        return r.unsqueeze(1).expand(-1, xt.shape[1], -1)


class AttentiveEncoder(nn.Module):
    """Self-attention over the context, then multi-head cross-attention from each target:
    r_t = Attn(q = MLP(x_t), k = MLP(x_c), v = SelfAttn(MLP([x_c, y_c]))), [B, Nt, r_dim]."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.values = mlp(cfg.x_dim + cfg.y_dim, cfg.hidden_dim, cfg.r_dim, cfg.encoder_layers)
        self.self_attention = SelfAttention(cfg.r_dim, cfg.num_heads, cfg.attention_layers)
        self.embed_x = mlp(cfg.x_dim, cfg.hidden_dim, cfg.r_dim, 2)
        self.cross_attention = MultiheadAttention(cfg.r_dim, cfg.num_heads)

    def forward(self, xc: Tensor, yc: Tensor, xt: Tensor, mask: Tensor | None) -> Tensor:
        values = self.self_attention(self.values(torch.cat([xc, yc], -1)), mask)
        return self.cross_attention(self.embed_x(xt), self.embed_x(xc), values, mask)


class LatentEncoder(nn.Module):
    """q(z | C) = N(mu(s), sigma(s)) with s = mean_i h_i, h = MLP([x, y]) (then self-attention)."""

    def __init__(self, cfg: ModelConfig, self_attention: bool = False) -> None:
        super().__init__()
        self.net = mlp(cfg.x_dim + cfg.y_dim, cfg.hidden_dim, cfg.hidden_dim, cfg.encoder_layers)
        self.self_attention = (
            SelfAttention(cfg.hidden_dim, cfg.num_heads, cfg.attention_layers) if self_attention else None
        )
        self.head = mlp(cfg.hidden_dim, cfg.hidden_dim, 2 * cfg.z_dim, 2)
        self.min_sigma = cfg.latent_min_sigma

    def forward(self, xc: Tensor, yc: Tensor, mask: Tensor | None) -> Distribution:
        h = self.net(torch.cat([xc, yc], -1))
        if self.self_attention is not None:
            h = self.self_attention(h, mask)
        mu, raw = at_least_float32(self.head(masked_mean(h, mask))).chunk(2, dim=-1)
        sigma = self.min_sigma + (1 - self.min_sigma) * torch.sigmoid(raw)
        return Independent(Normal(mu, sigma), 1)


class GaussianDecoder(nn.Module):
    """p(y | x, r, z) = N(mu, sigma) from MLP([x, r, z]).

    h [B, N, D] holds the per-point inputs [x, r]; z [S, B, z_dim] the per-task latent samples.
    The first layer is applied as W_h h + W_z z + b, so the per-point part is computed once
    rather than once per sample (same parameters as one Linear on the concatenation).
    """

    def __init__(self, cfg: ModelConfig, in_dim: int) -> None:
        super().__init__()
        self.fixed_sigma = cfg.fixed_sigma
        self.min_sigma = cfg.min_sigma
        out = cfg.y_dim if cfg.fixed_sigma is not None else 2 * cfg.y_dim
        self.net = mlp(in_dim, cfg.hidden_dim, out, cfg.decoder_layers)

    def forward(self, h: Tensor, z: Tensor | None = None) -> Distribution:
        if z is None:
            out = self.net(h)
        else:
            first, d = self.net[0], h.shape[-1]
            per_point = F.linear(h, first.weight[:, :d], first.bias)  # [B, N, H]
            per_sample = F.linear(z, first.weight[:, d:])  # [S, B, H]
            out = self.net[1:](per_point.unsqueeze(0) + per_sample.unsqueeze(2))  # [S, B, N, out]
        out = at_least_float32(out)
        if self.fixed_sigma is not None:
            return Independent(Normal(out, torch.full_like(out, self.fixed_sigma)), 1)
        mu, raw = out.chunk(2, dim=-1)
        return Independent(Normal(mu, self.min_sigma + (1 - self.min_sigma) * F.softplus(raw)), 1)


class NeuralProcess(nn.Module):
    """Base of the family: an optional deterministic path r(C, x_t), an optional latent path
    z ~ q(z | C), and a Gaussian decoder of [x_t, r, z]. Subclasses only choose the paths."""

    name: ClassVar[str]
    is_latent: ClassVar[bool]

    def __init__(self, config: ModelConfig | None = None, **options) -> None:
        super().__init__()
        if config is not None and options:
            raise ValueError("pass either a ModelConfig or keyword options, not both")
        self.config = config if config is not None else ModelConfig.from_dict(options)
        cfg = self.config
        self.deterministic = self.build_deterministic(cfg)
        self.latent = self.build_latent(cfg)
        in_dim = cfg.x_dim + (cfg.r_dim if self.deterministic else 0) + (cfg.z_dim if self.latent else 0)
        self.decoder = GaussianDecoder(cfg, in_dim)
        init_weights(self, cfg.init, cfg.init_std)

    def build_deterministic(self, cfg: ModelConfig) -> nn.Module | None:
        return None

    def build_latent(self, cfg: ModelConfig) -> nn.Module | None:
        return None

    def _check(self, xc: Tensor, yc: Tensor, xt: Tensor | None, mask_c: Tensor | None) -> None:
        check_context(xc, yc, xt, mask_c)
        for name, t, dim, want in (("xc", xc, -1, self.config.x_dim), ("yc", yc, -1, self.config.y_dim)):
            if t.shape[dim] != want:
                field = "x_dim" if name == "xc" else "y_dim"
                raise ValueError(f"{name} has last dimension {t.shape[dim]}, but the model has {field}={want}")

    def posterior(self, xc: Tensor, yc: Tensor, mask: Tensor | None = None) -> Distribution:
        """Distribution of z given a set: Independent Normal with batch [B], event [z_dim]."""
        if self.latent is None:
            raise TypeError(f"{type(self).__name__} has no latent variable, so no posterior")
        self._check(xc, yc, None, mask)
        return self.latent(xc, yc, mask)

    def forward(
        self,
        xc: Tensor,
        yc: Tensor,
        xt: Tensor,
        num_samples: int | None = None,
        *,
        z: Tensor | None = None,
        mask_c: Tensor | None = None,
    ) -> Distribution:
        """Predictive distribution of y at xt given the context.

        Latent models draw ``num_samples`` z from ``posterior(xc, yc)`` unless ``z`` [S, B, z_dim]
        is given, and return a distribution with batch [S, B, Nt], event [y_dim].
        """
        self._check(xc, yc, xt, mask_c)
        parts = [xt]
        if self.deterministic is not None:
            parts.append(self.deterministic(xc, yc, xt, mask_c))
        if self.latent is None:
            return self.decoder(torch.cat(parts, -1))
        if z is None:
            samples = check_num_samples(self.config.num_samples if num_samples is None else num_samples)
            z = self.latent(xc, yc, mask_c).rsample((samples,))
        elif z.dim() != 3 or z.shape[1:] != (xt.shape[0], self.config.z_dim):
            expected = f"[num_samples, {xt.shape[0]}, {self.config.z_dim}]"
            raise ValueError(f"z must have shape {expected}, got {tuple(z.shape)}")
        return self.decoder(torch.cat(parts, -1), z)


def mixture_over_samples(pred: Distribution) -> Distribution:
    """Per-point marginal of a latent model's predictive: the equal-weight mixture over the
    S samples. pred has batch [S, B, N], event [Dy]; the result has batch [B, N], event [Dy]."""
    normal = pred.base_dist
    loc, scale = normal.loc.movedim(0, -2), normal.scale.movedim(0, -2)  # [B, N, S, Dy]
    weights = Categorical(logits=torch.zeros(loc.shape[:-1], device=loc.device, dtype=loc.dtype))
    return MixtureSameFamily(weights, Independent(Normal(loc, scale), 1))
