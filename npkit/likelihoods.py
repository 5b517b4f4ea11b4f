"""Likelihoods: decoder parameters [..., N, num_params] -> a ``torch.distributions`` object with
batch [..., N] and event [y_dim]. Decoders only output parameters; the likelihood gives them a
meaning, so a new observation model is one class here and no change to models or objectives.

- gaussian:  N(mu, sigma^2), sigma = min_sigma + (1 - min_sigma) softplus(raw), or fixed_sigma
- bernoulli: Bernoulli(logits) for binary outputs (e.g. binarised pixels)
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Bernoulli as BernoulliDist
from torch.distributions import Distribution, Independent, Normal


def at_least_float32(t: Tensor) -> Tensor:
    """Distribution parameters in float32 or wider, also under bf16/fp16 autocast."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


class PointwiseIndependent(Independent):
    """``Independent`` over the output dimension whose ``log_prob`` refuses a value that would
    broadcast silently: the value must end with the distribution's last two batch dimensions and
    its event shape ([..., N, y_dim]); leading batch dimensions (latent samples) may be omitted."""

    def log_prob(self, value: Tensor) -> Tensor:
        full = self.batch_shape + self.event_shape
        needed = min(len(self.batch_shape), 2) + len(self.event_shape)
        if value.dim() < needed or value.dim() > len(full) or value.shape != full[len(full) - value.dim() :]:
            expected = "[" + ", ".join(str(n) for n in full[len(full) - needed :]) + "]"
            raise ValueError(
                f"y has shape {list(value.shape)}, but this prediction is for points of shape {expected} "
                f"([..., n_points, y_dim]); pass the targets that match xt"
            )
        return super().log_prob(value)


class Likelihood(ABC):
    """Base: ``num_params(y_dim)`` parameters per point, ``__call__(params)`` the distribution."""

    name: str

    @abstractmethod
    def num_params(self, y_dim: int) -> int:
        """Decoder outputs per point for ``y_dim`` outputs."""

    @abstractmethod
    def __call__(self, params: Tensor) -> Distribution:
        """params [..., N, num_params] -> batch [..., N], event [y_dim]."""


class Gaussian(Likelihood):
    """Independent Normal per output dimension; learned std with a floor, or a constant one."""

    name = "gaussian"

    def __init__(self, min_sigma: float = 0.1, fixed_sigma: float | None = None) -> None:
        if not 0.0 <= min_sigma < 1.0:
            raise ValueError(f"min_sigma must lie in [0, 1), got {min_sigma}")
        if fixed_sigma is not None and not fixed_sigma > 0:
            raise ValueError(f"fixed_sigma must be > 0 or None, got {fixed_sigma}")
        self.min_sigma = min_sigma
        self.fixed_sigma = fixed_sigma

    def num_params(self, y_dim: int) -> int:
        return y_dim if self.fixed_sigma is not None else 2 * y_dim

    def __call__(self, params: Tensor) -> Distribution:
        params = at_least_float32(params)
        if self.fixed_sigma is not None:
            return PointwiseIndependent(Normal(params, torch.full_like(params, self.fixed_sigma)), 1)
        mu, raw = params.chunk(2, dim=-1)
        return PointwiseIndependent(Normal(mu, self.min_sigma + (1 - self.min_sigma) * F.softplus(raw)), 1)


class Bernoulli(Likelihood):
    """Independent Bernoulli per output dimension, parameterised by logits; y in {0, 1}."""

    name = "bernoulli"

    def num_params(self, y_dim: int) -> int:
        return y_dim

    def __call__(self, params: Tensor) -> Distribution:
        return PointwiseIndependent(BernoulliDist(logits=at_least_float32(params)), 1)


LIKELIHOODS: dict[str, type[Likelihood]] = {c.name: c for c in (Gaussian, Bernoulli)}


def build_likelihood(name: str, min_sigma: float = 0.1, fixed_sigma: float | None = None) -> Likelihood:
    """The likelihood ``name`` (one of ``LIKELIHOODS``); the sigma options apply to ``gaussian``."""
    if name == "gaussian":
        return Gaussian(min_sigma, fixed_sigma)
    if name == "bernoulli":
        return Bernoulli()
    raise ValueError(f"unknown likelihood {name!r}; expected one of {sorted(LIKELIHOODS)}")
