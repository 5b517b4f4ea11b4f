"""Training objectives, separate from models. Every loss is normalised per scored point.

By default the scored points are ``context ∪ targets`` (``batch.x``, ``batch.y``), the
convention of the published 1D GP benchmarks; ``include_context=False`` scores targets only.

- nll:  -1/N sum_n log p(y_n | x_n, C)                                   (CNP)
- elbo: -1/N [E_q(z|C∪T) sum_n log p(y_n | x_n, z, C) - beta KL(q(z|C∪T) || p(z))],
        p(z) = q(z|C) ("conditional", the NP paper) or N(0, I) ("fixed"), optional free bits;
        a posterior without ``rsample`` gradients gets the score-function gradient
- iwae: -1/N log 1/S sum_s p(y | z_s) p(z_s|C) / q(z_s|C∪T),  z_s ~ q(z|C∪T)
- ml:   -1/N log 1/S sum_s p(y | z_s),  z_s ~ p(z|C)  (maximum likelihood, Foong et al. 2020)

The KL of the ELBO is analytic where torch has one registered for the posterior and prior (and
then per latent dimension, for free bits); otherwise, e.g. for a posterior wrapped in a normalising
flow, it is the Monte-Carlo estimate mean_s [log q(z_s) - log p(z_s)] from the ELBO's own samples.
``fit`` also takes any callable ``(model, batch[, step]) -> LossOutput | Tensor``, such as
`KLAnnealing`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.distributions import Distribution, Independent, Normal, kl_divergence

from npkit.models.base import NeuralProcess, check_num_samples
from npkit.models.statistician import NeuralStatistician
from npkit.models.vae import VAE
from npkit.predictive import logmeanexp
from npkit.tasks import Batch

if TYPE_CHECKING:
    from npkit.data.sets import SetBatch
    from npkit.data.vectors import VectorBatch


@dataclass
class LossOutput:
    """What an objective returns: the loss and, for logging, its terms.

    Attributes:
        loss: the scalar to minimise.
        log_lik: the log-likelihood term, per scored point (None: not reported).
        kl: the KL term, per scored point (None: no KL).
    """

    loss: Tensor
    log_lik: Tensor | None = None
    kl: Tensor | None = None


def _scored(batch: Batch, include_context: bool) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
    """Inputs [B, N, Dx], outputs [B, N, Dy], mask [B, N] and point counts [B] to score."""
    if batch.yt is None:
        raise ValueError("objectives need target outputs: batch.yt is None")
    x, y, mask = (batch.x, batch.y, batch.mask) if include_context else (batch.xt, batch.yt, batch.mask_t)
    if y.shape[1] == 0:
        raise ValueError("no points to score: the batch has no targets (and no context included)")
    counts = mask.sum(-1).to(y.dtype) if mask is not None else y.new_full((y.shape[0],), y.shape[1])
    return x, y, mask, counts


def _sum_points(log_prob: Tensor, mask: Tensor | None) -> Tensor:
    """Sum [..., B, N] log-likelihoods over the (unmasked) points -> [..., B]."""
    return (log_prob * mask).sum(-1) if mask is not None else log_prob.sum(-1)


def _check_model(model: NeuralProcess, objective: str) -> None:
    """nll is for deterministic models, every other objective for latent ones."""
    if objective == "nll" and model.is_latent:
        raise TypeError(f"nll is for deterministic models; train {type(model).__name__} with 'elbo', 'ml' or 'iwae'")
    if objective != "nll" and not model.is_latent:
        raise TypeError(f"{objective} needs a latent model; {type(model).__name__} has no z: use 'nll'")


def nll(model: NeuralProcess, batch: Batch, include_context: bool = True) -> LossOutput:
    """Negative log-likelihood per point of a deterministic (conditional) model.

    -1/N sum_n log p(y_n | x_n, C) under the model's predictive head, averaged over tasks.

    Args:
        model: a deterministic model (CNP, CANP, ConvCNP, TNPD).
        batch: the tasks, with target outputs ``yt``.
        include_context: score ``context ∪ targets`` (the convention of the published 1D GP
            benchmarks); False scores the targets only.

    Returns:
        The loss and its log-likelihood term (no KL).

    Raises:
        TypeError: ``model`` is latent (train it with ``elbo``, ``ml`` or ``iwae``).
    """
    _check_model(model, "nll")
    x, y, mask, n = _scored(batch, include_context)
    log_lik = (
        _sum_points(model(batch.xc, batch.yc, x, mask_c=batch.mask_c).log_prob(y), mask) / n.clamp_min(1.0)
    ).mean()
    return LossOutput(-log_lik, log_lik)


def standard_normal_like(z: Tensor) -> Distribution:
    """N(0, I) over one sample of z [S, B, z_dim]: batch [B], event [z_dim], the fixed prior of the ELBO."""
    loc = torch.zeros_like(z[0])
    return Independent(Normal(loc, torch.ones_like(loc)), 1)


PRIORS = ("conditional", "fixed", "both")


def elbo(
    model: NeuralProcess,
    batch: Batch,
    num_samples: int = 1,
    prior: str = "conditional",
    beta: float = 1.0,
    free_bits: float = 0.0,
    include_context: bool = True,
) -> LossOutput:
    """Negative ELBO per point of a latent model.

    -1/N [E_q(z|C∪T) sum_n log p(y_n | x_n, z, C) - beta KL(q(z|C∪T) || p(z))], averaged over
    tasks. The KL is analytic where torch has one, else a Monte-Carlo estimate from the same
    samples; a posterior without reparameterised samples (Deep Prior "standard") gets the
    score-function gradient.

    Args:
        model: a latent model (LatentCNP, NP, ANP, DeepPrior).
        batch: the tasks, with target outputs ``yt``.
        num_samples: z samples from q(z | C ∪ T).
        prior: "conditional": p(z) = q(z | C) (the NP paper); "fixed": N(0, I); "both": the
            sum of the two KLs (the fixed one keeps both posteriors from shrinking together).
        beta: weight of the KL term (>= 0).
        free_bits: nats per latent dimension and task (Kingma et al. 2016) below which a
            dimension's batch-averaged KL is floored, so it gets no KL gradient (0: off).
        include_context: score ``context ∪ targets`` (the convention of the published 1D GP
            benchmarks); False scores the targets only.

    Returns:
        The loss with its per-point log-likelihood and KL terms.

    Examples:
        >>> out = npkit.elbo(model, batch, num_samples=4, prior="fixed", beta=0.5)
        >>> out.loss.backward()
    """
    _check_model(model, "elbo")
    if prior not in PRIORS:
        raise ValueError(f"prior must be one of {list(PRIORS)}, got {prior!r}")
    if beta < 0 or free_bits < 0:
        raise ValueError(f"beta and free_bits must be >= 0, got beta={beta}, free_bits={free_bits}")
    check_num_samples(num_samples)
    x, y, mask, n = _scored(batch, include_context)
    q = model.posterior(batch.x, batch.y, batch.mask)
    z = q.rsample((num_samples,))
    pred = model(batch.xc, batch.yc, x, z=z, mask_c=batch.mask_c)
    n = n.clamp_min(1.0)
    log_lik_s = _sum_points(pred.log_prob(y), mask) / n  # [S, B]
    log_lik = log_lik_s.mean(0)  # [B]
    if not q.has_rsample:
        log_lik = log_lik + score_function_surrogate(log_lik_s, q.log_prob(z))
    kls = []
    if prior in ("conditional", "both"):
        kls.append(kl_per_dim(q, model.posterior(batch.xc, batch.yc, batch.mask_c), z))
    if prior in ("fixed", "both"):
        kls.append(kl_per_dim(q, standard_normal_like(z), z))
    if len({k.shape for k in kls}) > 1:  # one analytic per dimension, one Monte-Carlo total
        kls = [k.sum(-1, keepdim=True) for k in kls]
    kl = sum(kls)  # [B, K]
    kl_points = kl / n[:, None]  # per point
    floor = free_bits * (z.shape[-1] / kl.shape[-1]) * n.reciprocal().mean()
    kl_term = kl_points.mean(0).clamp_min(floor).sum()
    return LossOutput(-(log_lik.mean() - beta * kl_term), log_lik.mean(), kl_points.sum(-1).mean())


def score_function_surrogate(signal: Tensor, log_q: Tensor) -> Tensor:
    """Zero-valued term [B] whose gradient is the score-function (REINFORCE) estimate of the
    gradient of E_q[signal] with respect to q's parameters, for samples that carry no gradient:
    mean_s (signal_s - b_s) grad log q(z_s), signal and log_q [S, B]. The baseline b_s is the mean
    of the task's other samples (leave-one-out), or with one sample the mean over the other tasks."""
    num_samples, num_tasks = signal.shape
    signal = signal.detach()
    if num_samples > 1:
        baseline = (signal.sum(0, keepdim=True) - signal) / (num_samples - 1)
    elif num_tasks > 1:
        baseline = (signal.sum(1, keepdim=True) - signal) / (num_tasks - 1)
    else:
        baseline = torch.zeros_like(signal)
    return ((signal - baseline) * (log_q - log_q.detach())).mean(0)


# What log_prob raises at points a flow without an inverse did not sample (Pyro's planar flows
# raise KeyError: the inverse is looked up in the cache of their own samples).
UNSCORABLE = (KeyError, NotImplementedError)


def foreign_log_prob(q: Distribution, z: Tensor) -> Tensor | None:
    """log q(z) at points z [..., B, z_dim] that q did not sample itself, or None where q cannot
    score them: a flow without an inverse scores only its own samples."""
    try:
        return q.log_prob(z)
    except UNSCORABLE:
        return None


def kl_per_dim(q: Distribution, p: Distribution, z: Tensor) -> Tensor:
    """KL(q || p) per task, [B, K]: analytic per latent dimension (K = z_dim) when q and p are
    factorised (``Independent``) with a KL registered in torch; otherwise the Monte-Carlo estimate
    of the total (K = 1), mean_s [log q(z_s) - log p(z_s)] with the samples z [S, B, z_dim] of q."""
    if isinstance(q, Independent) and isinstance(p, Independent):
        if q.reinterpreted_batch_ndims == p.reinterpreted_batch_ndims == 1:
            try:
                return kl_divergence(q.base_dist, p.base_dist)
            except NotImplementedError:
                pass
    return (q.log_prob(z) - p.log_prob(z)).mean(0).unsqueeze(-1)


def log_marginal_estimate(
    model: NeuralProcess,
    batch: Batch,
    num_samples: int,
    proposal: str = "posterior",
    include_context: bool = True,
) -> tuple[Tensor, Tensor]:
    """Importance-sampled log p(y | C) per task, [B], and the number of scored points, [B]:
    log 1/S sum_s p(y | z_s, C) p(z_s | C) / r(z_s), z_s ~ r, where the proposal r is q(z | C ∪ T)
    ("posterior") or p(z | C) ("context", weights 1). A stochastic lower bound, tight as S grows."""
    if proposal not in ("posterior", "context"):
        raise ValueError(f"proposal must be 'posterior' or 'context', got {proposal!r}")
    check_num_samples(num_samples)
    x, y, mask, n = _scored(batch, include_context)
    p = model.posterior(batch.xc, batch.yc, batch.mask_c)
    q = p if proposal == "context" else model.posterior(batch.x, batch.y, batch.mask)
    if not q.has_rsample and torch.is_grad_enabled():
        raise ValueError(
            f"iwae and ml need a reparameterised posterior to train; {type(model).__name__}'s has none: use 'elbo'"
        )
    z = q.rsample((num_samples,))
    log_lik = _sum_points(model(batch.xc, batch.yc, x, z=z, mask_c=batch.mask_c).log_prob(y), mask)  # [S, B]
    return importance_estimate(log_lik, *_log_weights(z, p, q)), n


def _log_weights(z: Tensor, prior: Distribution, proposal: Distribution) -> tuple[Tensor | None, Tensor | None]:
    """(log prior(z), log proposal(z)) [S, B] of the samples z, or (None, None) when the
    proposal is the prior (weights 1)."""
    return (None, None) if proposal is prior else (prior.log_prob(z), proposal.log_prob(z))


def importance_estimate(log_lik: Tensor, log_prior: Tensor | None = None, log_proposal: Tensor | None = None) -> Tensor:
    """log 1/S sum_s p(y | z_s) prior(z_s) / proposal(z_s), [B], from the log-likelihoods
    log_lik [S, B] of S samples of the proposal and their log-densities (both None: the proposal
    is the prior, weights 1). The one importance estimate of npkit: objectives, evaluation, VAEs."""
    log_w = log_lik if log_prior is None else log_lik + log_prior - log_proposal
    return logmeanexp(log_w, 0)


def iwae(
    model: NeuralProcess,
    batch: Batch,
    num_samples: int = 16,
    proposal: str = "posterior",
    include_context: bool = True,
) -> LossOutput:
    """Importance-weighted objective of a latent model: an estimate of -log p(y | C) per point.

    -1/N log 1/S sum_s p(y | z_s, C) p(z_s | C) / r(z_s) with z_s ~ r, averaged over tasks; a
    stochastic lower bound on log p(y | C) that tightens as S grows.

    Args:
        model: a latent model whose posterior has reparameterised samples.
        batch: the tasks, with target outputs ``yt``.
        num_samples: S, the importance samples.
        proposal: r: "posterior" for q(z | C ∪ T), "context" for p(z | C) (weights 1: the
            maximum-likelihood objective `ml`).
        include_context: score ``context ∪ targets`` (the convention of the published 1D GP
            benchmarks); False scores the targets only.

    Returns:
        The loss and its log-likelihood term.
    """
    _check_model(model, "iwae")
    estimate, n = log_marginal_estimate(model, batch, num_samples, proposal, include_context)
    log_lik = (estimate / n.clamp_min(1.0)).mean()
    return LossOutput(-log_lik, log_lik)


def ml(model: NeuralProcess, batch: Batch, num_samples: int = 16, include_context: bool = True) -> LossOutput:
    """Maximum-likelihood objective of a latent model: `iwae` with proposal p(z | C).

    -1/N log 1/S sum_s p(y | z_s, C), z_s ~ p(z | C) (Foong et al. 2020).

    Args:
        model: a latent model whose posterior has reparameterised samples.
        batch: the tasks, with target outputs ``yt``.
        num_samples: z samples from p(z | C).
        include_context: score ``context ∪ targets`` (the convention of the published 1D GP
            benchmarks); False scores the targets only.

    Returns:
        The loss and its log-likelihood term.
    """
    return iwae(model, batch, num_samples, proposal="context", include_context=include_context)


def statistician_elbo_terms(model: NeuralStatistician, batch: SetBatch) -> dict[str, Tensor]:
    """The terms of the Neural Statistician's ELBO (Edwards & Storkey 2017, eq. 3), each divided
    by its dataset's number of items n_b and averaged over the B datasets (one sample of c and z):

        log_lik = mean_b 1/n_b sum_i log p(x_i | z_i, c)
        kl_c    = mean_b 1/n_b KL(q(c | D_b) || N(0, I))
        kl_z    = [mean_b 1/n_b sum_i KL(q(z_l | z_{l+1}, x_i, c) || p(z_l | z_{l+1}, c))], layers top (z_L) first

    so elbo = log_lik - kl_c - kl_z.sum(). The context KL is divided by n_b too: the whole
    per-dataset bound is normalised per item, as the public re-implementations do (a sum over
    B * N items); not confirmed against the paper's own text. Masked items count neither
    in n_b nor in the sums. KLs are analytic."""
    if not isinstance(model, NeuralStatistician):
        raise TypeError(f"statistician_elbo needs a NeuralStatistician, got {type(model).__name__}")
    x, mask = batch.x, batch.mask
    out = model(x, mask)
    n = mask.sum(-1).to(x.dtype) if mask is not None else x.new_full((x.shape[0],), x.shape[1])
    n = n.clamp_min(1.0)
    prior_c = Independent(Normal(torch.zeros_like(out.c), torch.ones_like(out.c)), 1)
    log_lik = _sum_points(out.p_x.log_prob(x), mask) / n  # [B]
    kl_c = kl_divergence(out.q_c, prior_c) / n  # [B]
    kl_z = torch.stack([_sum_points(kl_divergence(q, p), mask) / n for q, p in zip(out.q_z, out.p_z)])  # [L, B]
    return {"log_lik": log_lik.mean(), "kl_c": kl_c.mean(), "kl_z": kl_z.mean(-1)}


def statistician_elbo(model: NeuralStatistician, batch: SetBatch) -> LossOutput:
    """Negative ELBO per item of the Neural Statistician on a `SetBatch`;
    ``kl`` is the context and latent KLs together (see `statistician_elbo_terms`)."""
    terms = statistician_elbo_terms(model, batch)
    kl = terms["kl_c"] + terms["kl_z"].sum()
    return LossOutput(-(terms["log_lik"] - kl), terms["log_lik"], kl)


def _vae_log_lik(model: VAE, p_x: Distribution, x: Tensor) -> Tensor:
    """log p(x | z_s) [S, B] for p_x with batch [S, B] and x [B, x_dim]."""
    if model.config.likelihood == "bernoulli" and not ((x == 0) | (x == 1)).all():
        raise ValueError("the bernoulli likelihood needs x in {0, 1}: binarise the data (ImageVectors(binarize=True))")
    return p_x.log_prob(x.expand(p_x.batch_shape + x.shape[-1:]))


def _vae_labels(model: VAE, labels: Tensor | None) -> Tensor | None:
    """The batch's labels for a conditional VAE; an unconditional one ignores them."""
    return labels if model.config.num_classes else None


def _check_vae(model: VAE, objective: str) -> None:
    if not isinstance(model, VAE):
        raise TypeError(f"{objective} needs a VAE, got {type(model).__name__}")


def vae_elbo(model: VAE, batch: VectorBatch, num_samples: int = 1) -> LossOutput:
    """Negative ELBO per image (nats, not per pixel) of a VAE.

        loss = -mean_b [1/S sum_s log p(x_b | z_s) - beta KL(q(z | x_b) || N(0, I))],  z_s ~ q(z | x_b)

    with ``beta`` from the model's config and the KL analytic.

    Args:
        model: a `VAE`.
        batch: a `VectorBatch`: items x `[batch, x_dim]` (and
            labels `[batch]` for a conditional VAE).
        num_samples: S, the z samples per item.

    Returns:
        The loss and its two terms averaged over the batch, so loss = -(log_lik - beta * kl).
    """
    _check_vae(model, "vae_elbo")
    out = model(batch.x, _vae_labels(model, batch.labels), num_samples)
    log_lik = _vae_log_lik(model, out.p_x, batch.x).mean(0).mean()
    kl = kl_divergence(out.q_z, model.prior(batch.x.shape[0])).mean()
    return LossOutput(-(log_lik - model.config.beta * kl), log_lik, kl)


def importance_log_likelihood(model: VAE, x: Tensor, num_samples: int = 500, labels: Tensor | None = None) -> Tensor:
    """Importance-sampled log-likelihood log p(x) of each item under a VAE (Burda et al. 2016).

        log 1/K sum_k p(x | z_k) p(z_k) / q(z_k | x),  z_k ~ q(z | x)

    a stochastic lower bound on log p(x), tight as K grows (K = 1: the ELBO with beta = 1). Memory
    grows as K * batch * x_dim: chunk large test sets over images.

    Args:
        model: a `VAE`.
        x: the items `[batch, x_dim]`.
        num_samples: K, the importance samples per item.
        labels: `[batch]` int64 labels for a conditional VAE (ignored by an unconditional one).

    Returns:
        log p(x) per item, `[batch]`, in nats.
    """
    _check_vae(model, "importance_log_likelihood")
    labels = _vae_labels(model, labels)
    q = model.encode(x, labels)
    z = q.sample((check_num_samples(num_samples),))
    log_lik = _vae_log_lik(model, model.decode(z, labels), x)
    return importance_estimate(log_lik, *_log_weights(z, model.prior(x.shape[0]), q))


OBJECTIVES: dict[str, Callable[..., LossOutput]] = {
    "nll": nll,
    "elbo": elbo,
    "iwae": iwae,
    "ml": ml,
    "statistician_elbo": statistician_elbo,
    "vae_elbo": vae_elbo,
}
Objective = Callable[[NeuralProcess, Batch], LossOutput]
StepObjective = Callable[[NeuralProcess, Batch, int], LossOutput]


def get_objective(name: str, model: NeuralProcess | None = None, **options) -> Objective:
    """The objective ``name`` with its options bound, as a callable ``(model, batch) -> LossOutput``.

    Args:
        name: a key of ``npkit.OBJECTIVES`` ("nll", "elbo", "iwae", "ml", ...) or "auto":
            ``nll`` for deterministic models, ``elbo`` for latent ones.
        model: the model to check the objective against (needed for "auto"; None: unchecked).
        **options (Any): keyword arguments of the objective (``num_samples``, ``beta``, ...);
            unknown names raise a ``ValueError``.

    Returns:
        The objective with ``options`` bound (a ``functools.partial``).

    Examples:
        >>> loss_fn = npkit.get_objective("elbo", model, num_samples=4, prior="fixed")
        >>> loss_fn(model, batch).loss
    """
    if name == "auto":
        if model is None:
            raise ValueError("objective 'auto' needs the model to choose between nll and elbo")
        name = "elbo" if model.is_latent else "nll"
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; expected one of {sorted(OBJECTIVES)} or 'auto'")
    fn = OBJECTIVES[name]
    allowed = set(inspect.signature(fn).parameters) - {"model", "batch"}
    unknown = set(options) - allowed
    if unknown:
        raise ValueError(
            f"unknown option(s) {sorted(unknown)} for objective {name!r}; expected some of {sorted(allowed)}"
        )
    if model is not None:
        _check_model(model, name)
    return partial(fn, **options)


class KLAnnealing:
    """The ELBO with a KL weight rising linearly from 0 to ``beta`` over the first steps.

    A step objective ``(model, batch, step) -> LossOutput`` for `npkit.fit`.

    Args:
        warmup_steps: steps over which the KL weight rises to ``beta`` (>= 1).
        beta: the final KL weight.
        **options (Any): the other keyword arguments of `elbo` (``num_samples``,
            ``prior``, ``free_bits``, ``include_context``).

    Examples:
        >>> npkit.fit(model, data, npkit.KLAnnealing(2000, num_samples=4), steps=10_000)
    """

    def __init__(self, warmup_steps: int, beta: float = 1.0, **options) -> None:
        if warmup_steps < 1:
            raise ValueError(f"warmup_steps must be >= 1, got {warmup_steps}")
        self.warmup_steps, self.beta, self.options = warmup_steps, beta, options

    def __call__(self, model: NeuralProcess, batch: Batch, step: int) -> LossOutput:
        return elbo(model, batch, beta=self.beta * min(1.0, step / self.warmup_steps), **self.options)

    def __repr__(self) -> str:
        return f"KLAnnealing(warmup_steps={self.warmup_steps}, beta={self.beta}, options={self.options})"


def _takes_step(fn: Callable) -> bool:
    """Whether a user objective takes the step: a parameter named ``step``, or three positional ones."""
    params = list(inspect.signature(fn).parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return (
        any(p.name == "step" for p in params)
        or len(positional) >= 3
        and positional[2].default is inspect.Parameter.empty
    )


class _StepObjective:
    """A named or user objective as ``(model, batch, step) -> LossOutput``."""

    def __init__(self, fn: Callable, takes_step: bool) -> None:
        self.fn, self.takes_step = fn, takes_step

    def __call__(self, model: NeuralProcess, batch: Batch, step: int) -> LossOutput:
        out = self.fn(model, batch, step) if self.takes_step else self.fn(model, batch)
        if isinstance(out, LossOutput):
            return out
        if isinstance(out, Tensor) and out.dim() == 0:
            return LossOutput(out)
        raise TypeError(f"an objective must return a LossOutput or a scalar tensor, got {type(out).__name__}")


def as_step_objective(objective: str | Callable, model: NeuralProcess, **options) -> StepObjective:
    """``objective`` (a name for `get_objective` with ``options``, or a callable
    ``(model, batch[, step])``) as a callable ``(model, batch, step) -> LossOutput``. The
    ``elbo`` also takes ``warmup_steps`` (so configs can ask for it): `KLAnnealing`."""
    if isinstance(objective, str):
        if "warmup_steps" in options:
            if objective != "elbo":
                raise ValueError(f"warmup_steps (KL annealing) applies to the elbo objective, not {objective!r}")
            options = dict(options)
            warmup = options.pop("warmup_steps")
            get_objective("elbo", model, **options)  # checks the other options now, not at the first step
            return _StepObjective(KLAnnealing(warmup, **options), takes_step=True)
        return _StepObjective(get_objective(objective, model, **options), takes_step=False)
    if not callable(objective):
        raise TypeError(f"objective must be a name or a callable, got {type(objective).__name__}")
    if options:
        raise ValueError("objective_options apply to named objectives; bind options into your callable instead")
    return _StepObjective(objective, _takes_step(objective))
