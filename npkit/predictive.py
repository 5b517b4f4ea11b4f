"""The latent-sample axis, handled in one place.

A latent model's prediction has batch [S, B, N] (one slice per sample of z), a deterministic
model's has batch [B, N]. Code that consumes predictions goes through these functions and the
Distribution API only (``mean``, ``variance``, ``log_prob``, ``sample``), so it works for any
likelihood and any posterior:

    logmeanexp(t, dim)        log of the mean of exp(t) over the sample axis ``dim`` (stable)
    per_sample(model, pred)   batch [S, B, N] (S = 1 for deterministic models)
    marginal(model, pred)     batch [B, N]: the equal-weight mixture over the S samples
    predict(model, xc, yc, xt, num_samples)          the per-point predictive p(y_t | x_t, C)
    sample_functions(model, xc, yc, xt, num_samples)  [S, B, N, Dy] coherent function draws
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Distribution, Independent


def logmeanexp(t: Tensor, dim: int = 0) -> Tensor:
    """Log of the mean of exp(t) over one axis, computed stably.

    log (1/S) sum_s exp(t_s) over axis ``dim`` of size S: the log of a Monte-Carlo mean of
    likelihoods (mixtures over latent samples, importance-sampled marginals).

    Args:
        t: log-values of any shape, e.g. per-sample log-likelihoods `[num_samples, batch]`.
        dim: the axis averaged over (the sample axis).

    Returns:
        ``t`` reduced over ``dim`` (that axis removed).

    Examples:
        >>> npkit.logmeanexp(torch.log(torch.tensor([[1.0], [3.0]])), 0)   # log 2
        tensor([0.6931])
    """
    return torch.logsumexp(t, dim) - math.log(t.shape[dim])


class SampleMixture(Distribution):
    """Equal-weight mixture over the leading (sample) axis of a distribution.

    The result has batch shape ``components.batch_shape[1:]`` and the same event shape.
    ``torch.distributions.MixtureSameFamily`` needs the mixture axis rightmost and torch cannot
    move a distribution's batch axes, so this mixes over axis 0 using only the components'
    Distribution API: any likelihood (Normal, Bernoulli, flows) works. ``mean`` and
    ``variance`` are exact (law of total variance); ``cdf`` needs components with a CDF.

    Args:
        components: the mixed distributions, batch `[num_samples, *batch_shape]` (a latent
            model's prediction, batch `[num_samples, batch, n_target]`).

    Examples:
        >>> pred = model(xc, yc, xt, num_samples=16)     # batch [16, batch, n_target]
        >>> npkit.SampleMixture(pred).log_prob(yt)        # [batch, n_target]
    """

    arg_constraints: dict = {}
    has_rsample = False

    def __init__(self, components: Distribution) -> None:
        if len(components.batch_shape) < 1:
            raise ValueError("components need a leading sample axis in their batch shape")
        self.components = components
        super().__init__(components.batch_shape[1:], components.event_shape, validate_args=False)

    @property
    def num_components(self) -> int:
        return self.components.batch_shape[0]

    @property
    def support(self):
        return self.components.support

    @property
    def mean(self) -> Tensor:
        return self.components.mean.mean(0)

    @property
    def variance(self) -> Tensor:
        """Law of total variance: E_s[Var_s] + Var_s[E_s]."""
        means = self.components.mean
        return self.components.variance.mean(0) + means.var(0, unbiased=False)

    def log_prob(self, value: Tensor) -> Tensor:
        return logmeanexp(self.components.log_prob(value), 0)

    def sample(self, sample_shape: tuple[int, ...] = ()) -> Tensor:
        sample_shape = torch.Size(sample_shape)
        draws = self.components.sample(sample_shape)  # [*shape, S, *B, *E]
        axis = len(sample_shape)
        pick = torch.randint(self.num_components, sample_shape + self.batch_shape, device=draws.device)
        pick = pick.reshape(pick.shape + (1,) * len(self.event_shape)).unsqueeze(axis)
        pick = pick.expand(sample_shape + (1,) + self.batch_shape + self.event_shape)
        return draws.gather(axis, pick).squeeze(axis)

    def cdf(self, value: Tensor) -> Tensor:
        """Per-dimension CDF [*B, *E] of the mixture (components must expose one, see ``event_cdf``)."""
        return event_cdf(self.components, value).mean(0)


class Rescaled(Distribution):
    """A predictive in other units: y = loc + scale * u with u ~ ``base``, for any likelihood.

    The result has batch `[..., n_points]` (the task axis of ``base`` dropped) and event
    `[y_dim]`, or event `[]` with ``squeeze_event``. Exact: ``log_prob`` is the base's at the
    standardised value minus sum log scale, whatever the base (Normal, mixture, Student-t);
    computed in float64.

    Args:
        base: the predictive of the standardised values, batch `[..., 1, n_points]` (one task)
            and event `[y_dim]`.
        loc: the shift, `[y_dim]`.
        scale: the (positive) scale, `[y_dim]`.
        squeeze_event: drop the event axis (y_dim = 1: y given as a vector).
    """

    arg_constraints: dict = {}
    has_rsample = False

    def __init__(self, base: Distribution, loc: Tensor, scale: Tensor, squeeze_event: bool = False) -> None:
        if len(base.batch_shape) < 2 or base.batch_shape[-2] != 1:
            raise ValueError(f"base needs batch [..., 1, N] (one task), got {tuple(base.batch_shape)}")
        self.base, self.loc, self.scale, self.squeeze_event = base, loc.double(), scale.double(), squeeze_event
        event = torch.Size() if squeeze_event else base.event_shape
        super().__init__(base.batch_shape[:-2] + base.batch_shape[-1:], event, validate_args=False)

    def _out(self, u: Tensor) -> Tensor:
        """Base-shaped [..., 1, N, Dy] standardised values -> [..., N(, Dy)] in y's units."""
        y = self.loc + self.scale * u.double().squeeze(-3)
        return y[..., 0] if self.squeeze_event else y

    def _standardised(self, value: Tensor) -> Tensor:
        """[..., N(, Dy)] values in y's units -> [..., 1, N, Dy] for the base."""
        value = value.unsqueeze(-1) if self.squeeze_event else value
        return ((value.double() - self.loc) / self.scale).unsqueeze(-3)

    @property
    def mean(self) -> Tensor:
        return self._out(self.base.mean)

    @property
    def variance(self) -> Tensor:
        var = self.scale**2 * self.base.variance.double().squeeze(-3)
        return var[..., 0] if self.squeeze_event else var

    def log_prob(self, value: Tensor) -> Tensor:
        return self.base.log_prob(self._standardised(value)).squeeze(-2) - self.scale.log().sum()

    def sample(self, sample_shape: tuple[int, ...] = ()) -> Tensor:
        return self._out(self.base.sample(torch.Size(sample_shape)))

    def cdf(self, value: Tensor) -> Tensor:
        """Per-dimension CDF in y's units (the base's at the standardised value)."""
        u = event_cdf(self.base, self._standardised(value)).squeeze(-3)
        return u[..., 0] if self.squeeze_event else u


def event_cdf(dist: Distribution, value: Tensor) -> Tensor:
    """Per-dimension CDF of ``value`` under ``dist`` (``Independent`` wrappers looked through):
    shape batch + event. Raises ``NotImplementedError`` for distributions without a CDF."""
    while isinstance(dist, Independent):
        dist = dist.base_dist
    if isinstance(dist, SampleMixture):
        return dist.cdf(value)
    return dist.cdf(value)


def per_sample(model, pred: Distribution) -> Distribution:
    """``pred`` with a leading sample axis: batch [S, B, N] (S = 1 for deterministic models)."""
    return pred if model.is_latent else pred.expand(torch.Size([1]) + pred.batch_shape)


def marginal(model, pred: Distribution) -> Distribution:
    """The per-point predictive, batch [B, N]: the mixture over latent samples, or ``pred`` itself."""
    return SampleMixture(pred) if model.is_latent else pred


def predict(
    model, xc: Tensor, yc: Tensor, xt: Tensor, num_samples: int = 50, mask_c: Tensor | None = None
) -> Distribution:
    """The per-point predictive p(y_t | x_t, C) of any model.

    For latent models the equal-weight mixture (`SampleMixture`) over ``num_samples``
    z ~ p(z | C); for deterministic ones the model's own predictive.

    Args:
        model (NeuralProcess): any model of the family.
        xc: context inputs `[batch, n_context, x_dim]`.
        yc: context outputs `[batch, n_context, y_dim]`.
        xt: target inputs `[batch, n_target, x_dim]`.
        num_samples: z samples of latent models (ignored by deterministic ones).
        mask_c: optional `[batch, n_context]` bool, True where a context point is real.

    Returns:
        A `torch.distributions.Distribution` with batch shape `[batch, n_target]` and event
            shape `[y_dim]`.

    Examples:
        >>> pred = npkit.predict(model, xc, yc, xt, num_samples=32)
        >>> pred.mean, pred.stddev        # [batch, n_target, y_dim]
        >>> pred.log_prob(yt)             # [batch, n_target]
    """
    options = {"num_samples": num_samples} if model.is_latent else {}
    return marginal(model, model(xc, yc, xt, mask_c=mask_c, **options))


def sample_functions(
    model, xc: Tensor, yc: Tensor, xt: Tensor, num_samples: int = 10, noise: bool = False, mask_c: Tensor | None = None
) -> Tensor:
    """Functions drawn jointly over the targets from a latent model.

    One z ~ p(z | C) per function, then the predictive mean given z (``noise=False``) or a draw
    with observation noise. Deterministic models have no joint over targets (see
    `npkit.ar_sample` for one).

    Args:
        model (NeuralProcess): a latent model.
        xc: context inputs `[batch, n_context, x_dim]`.
        yc: context outputs `[batch, n_context, y_dim]`.
        xt: target inputs `[batch, n_target, x_dim]`.
        num_samples: functions drawn per task.
        noise: add observation noise (a draw of the likelihood) instead of taking its mean.
        mask_c: optional `[batch, n_context]` bool, True where a context point is real.

    Returns:
        The functions at the targets, `[num_samples, batch, n_target, y_dim]`.

    Raises:
        TypeError: ``model`` is deterministic.
    """
    if not model.is_latent:
        raise TypeError(
            f"{type(model).__name__} predicts each target independently, so it has no function samples; "
            "use predict(...).sample() for independent per-point draws"
        )
    pred = model(xc, yc, xt, num_samples=num_samples, mask_c=mask_c)
    return pred.sample() if noise else pred.mean
