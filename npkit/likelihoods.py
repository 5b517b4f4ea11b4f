"""Likelihoods: decoder parameters [..., N, num_params] -> a ``torch.distributions`` object with
batch [..., N] and event [y_dim]. Decoders only output parameters; the likelihood gives them a
meaning, so a new observation model is one class here and no change to models or objectives.

- gaussian:  N(mu, sigma^2), sigma = min_sigma + (1 - min_sigma) softplus(raw), or fixed_sigma
- mixture:   sum_k w_k N(mu_k, sigma_k^2) per output dimension, K = ``components`` (weights by a
             softmax of logits, each sigma_k as the gaussian's): ``MixtureSameFamily``
- student_t: StudentT(nu, mu, sigma), nu = 2 + softplus(raw) (heavy tails, finite variance),
             sigma as the gaussian's
- bernoulli: Bernoulli(logits) for binary outputs (e.g. binarised pixels)

Every continuous likelihood's distribution has ``mean``, ``variance``, ``log_prob``, ``sample``
and a per-dimension ``cdf`` (for coverage), so evaluation, plots and the autoregressive mode
use any of them unchanged.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Bernoulli as BernoulliDist
from torch.distributions import Categorical, Distribution, Independent, MixtureSameFamily, Normal, StudentT


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
    """Base of the predictive heads: decoder parameters in, a distribution out.

    A head says how many parameters it needs per point (``num_params(y_dim)``) and turns
    decoder outputs `[..., n_points, num_params]` into a distribution with batch
    `[..., n_points]` and event `[y_dim]` (``head(params)``). A new observation model is one
    subclass; models and objectives need no change.
    """

    name: str

    @abstractmethod
    def num_params(self, y_dim: int) -> int:
        """Decoder outputs per point for ``y_dim`` outputs."""

    @abstractmethod
    def __call__(self, params: Tensor) -> Distribution:
        """params [..., N, num_params] -> batch [..., N], event [y_dim]."""


def check_min_sigma(min_sigma: float) -> None:
    if not 0.0 <= min_sigma < 1.0:
        raise ValueError(f"min_sigma must lie in [0, 1), got {min_sigma}")


def floored_std(raw: Tensor, min_sigma: float) -> Tensor:
    """sigma = min_sigma + (1 - min_sigma) softplus(raw): at least min_sigma, 1 near raw = 0.55."""
    return min_sigma + (1 - min_sigma) * F.softplus(raw)


class Gaussian(Likelihood):
    """Independent Normal per output dimension, with a learned std above a floor or a fixed one.

    Parameters per point: (mu, raw std), each `[..., n_points, y_dim]`, with
    sigma = min_sigma + (1 - min_sigma) softplus(raw); or mu alone with ``fixed_sigma``.

    Args:
        min_sigma: floor of the learned std, in [0, 1).
        fixed_sigma: a constant std (> 0) instead of a learned one (None: learned).
    """

    name = "gaussian"

    def __init__(self, min_sigma: float = 0.1, fixed_sigma: float | None = None) -> None:
        check_min_sigma(min_sigma)
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
        return PointwiseIndependent(Normal(mu, floored_std(raw, self.min_sigma)), 1)


class GaussianMixture(Likelihood):
    """A mixture of K Gaussians per point and output dimension.

    The parameters `[..., n_points, 3 K y_dim]` are (logits, means, raw stds), each
    `[..., n_points, y_dim, K]` in that order; each std is floored as `Gaussian`'s. With
    K = 1 the logits are ignored and the head equals `Gaussian`'s.

    Args:
        components: K, the Gaussians per point and output dimension.
        min_sigma: floor of each component's std, in [0, 1).
    """

    name = "mixture"

    def __init__(self, components: int = 3, min_sigma: float = 0.0) -> None:
        if isinstance(components, bool) or not isinstance(components, int) or components < 1:
            raise ValueError(f"mixture_components must be a positive integer, got {components!r}")
        check_min_sigma(min_sigma)
        self.components = components
        self.min_sigma = min_sigma

    def num_params(self, y_dim: int) -> int:
        return 3 * self.components * y_dim

    def __call__(self, params: Tensor) -> Distribution:
        params = at_least_float32(params)
        logits, mu, raw = params.unflatten(-1, (3, -1, self.components)).unbind(-3)  # each [..., N, Dy, K]
        mixture = MixtureSameFamily(
            Categorical(logits=logits), Normal(mu, floored_std(raw, self.min_sigma)), validate_args=False
        )
        return PointwiseIndependent(mixture, 1)


class StudentTCDF(StudentT):
    """``torch.distributions.StudentT`` with the CDF torch lacks (scipy's ``stdtr``; no gradient),
    so that coverage can be measured."""

    def cdf(self, value: Tensor) -> Tensor:
        from scipy.special import stdtr

        t = ((value - self.loc) / self.scale).detach()
        df = self.df.detach().expand_as(t)
        return torch.as_tensor(stdtr(df.cpu().double().numpy(), t.cpu().double().numpy())).to(t)


class StudentTHead(Likelihood):
    """Independent Student-t per output dimension, for heavy-tailed outputs.

    Parameters per point: (loc, raw scale, raw df), each `[..., n_points, y_dim]`; the scale is
    floored as `Gaussian`'s std and df = 2 + softplus(raw) > 2 (finite variance). Its
    ``cdf`` (for coverage) uses scipy and carries no gradient.

    Args:
        min_sigma: floor of the scale, in [0, 1).
    """

    name = "student_t"

    def __init__(self, min_sigma: float = 0.0) -> None:
        check_min_sigma(min_sigma)
        self.min_sigma = min_sigma

    def num_params(self, y_dim: int) -> int:
        return 3 * y_dim

    def __call__(self, params: Tensor) -> Distribution:
        loc, raw_scale, raw_df = at_least_float32(params).chunk(3, dim=-1)
        df = 2.0 + F.softplus(raw_df)
        scale = floored_std(raw_scale, self.min_sigma)
        return PointwiseIndependent(StudentTCDF(df, loc, scale, validate_args=False), 1)


class Bernoulli(Likelihood):
    """Independent Bernoulli per output dimension, parameterised by logits; y in {0, 1}.

    One parameter (the logit) per point and output dimension. Takes no arguments.
    """

    name = "bernoulli"

    def num_params(self, y_dim: int) -> int:
        return y_dim

    def __call__(self, params: Tensor) -> Distribution:
        return PointwiseIndependent(BernoulliDist(logits=at_least_float32(params)), 1)


LIKELIHOODS: dict[str, type[Likelihood]] = {c.name: c for c in (Gaussian, GaussianMixture, StudentTHead, Bernoulli)}


def build_likelihood(
    name: str, min_sigma: float = 0.1, fixed_sigma: float | None = None, components: int = 3
) -> Likelihood:
    """The likelihood ``name`` (one of ``LIKELIHOODS``). ``min_sigma`` floors the std (scale) of
    the continuous ones; ``fixed_sigma`` applies to ``gaussian``, ``components`` to ``mixture``."""
    if name not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood {name!r}; expected one of {sorted(LIKELIHOODS)}")
    if fixed_sigma is not None and name != "gaussian":
        raise ValueError(f"fixed_sigma applies to the gaussian likelihood only, not {name!r}")
    if name == "gaussian":
        return Gaussian(min_sigma, fixed_sigma)
    if name == "mixture":
        return GaussianMixture(components, min_sigma)
    if name == "student_t":
        return StudentTHead(min_sigma)
    return Bernoulli()
