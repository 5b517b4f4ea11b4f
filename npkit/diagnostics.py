"""Posterior-collapse diagnostics for any latent model on any task sampler.

Two failure modes are told apart (see ``docs/collapse.md``):

- **point-mass collapse** (the NP critique): q(z | C) and q(z | C ∪ T) shrink together to a
  near point mass; the KL between them costs nothing, the function samples all coincide and the
  model is confident far from the data;
- **an unused latent** (KL vanishing, as in VAEs): q(z | S) no longer depends on the data, so z
  carries no information (no active unit, mutual information near 0).

:func:`diagnose` measures, on ``num_tasks`` tasks drawn with ``seed``:

- ``std_context`` / ``std_full``: the posterior std of z under q(z | C) and q(z | C ∪ T), mean
  over tasks and dimensions;
- ``kl``: KL(q(z | C ∪ T) || q(z | C)) per task (summed over dimensions), mean over tasks;
- ``active_units``: dimensions whose posterior mean E_q(z | C ∪ T)[z] varies across tasks with
  variance above ``ACTIVE_VARIANCE`` (0.01, Burda et al. 2016);
- ``mutual_information``: I(z; task) under q(z | C ∪ T) with the tasks' aggregate posterior as
  the marginal, estimated as mean_n [log q(z_n | D_n) - log 1/N sum_m q(z_n | D_m)] with
  z_n ~ q(z | D_n) (Hoffman & Johnson 2016); between 0 and log N nats;
- ``far_spread``: the std over ``num_samples`` function samples (predictive means of z ~ q(z | C))
  of the prediction at ``far_x`` (points away from the data; default 20 points of [-4, -3] for
  1D tasks), mean over points and tasks.

The verdict: "collapsed: point mass" when ``std_context < POINT_MASS_STD`` and ``far_spread <
FLAT_SPREAD``; "collapsed: latent unused" when ``active_units == 0``; "healthy" otherwise.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from npkit.objectives import kl_per_dim
from npkit.predictive import sample_functions

ACTIVE_VARIANCE = 0.01  # a unit is active when Var_tasks(E_q[z_d]) exceeds this (Burda et al. 2016)
POINT_MASS_STD = 0.05  # posterior std below this ...
FLAT_SPREAD = 0.05  # ... and function samples that agree to this far from the data: a point mass
MOMENT_SAMPLES = 256  # samples behind the KL and moments of posteriors without closed forms (flows)
FAR_RANGE = (-4.0, -3.0)  # 1D tasks: where the far spread is measured (the critique's x = -4)


@dataclass
class Diagnosis:
    """The numbers of :func:`diagnose` (see the module docstring) and the verdict."""

    std_context: float
    std_full: float
    kl: float
    active_units: int
    z_dim: int
    mutual_information: float
    far_spread: float
    num_tasks: int

    @property
    def verdict(self) -> str:
        if self.std_context < POINT_MASS_STD and self.far_spread < FLAT_SPREAD:
            return "collapsed: point mass"
        if self.active_units == 0:
            return "collapsed: latent unused"
        return "healthy"

    def as_dict(self) -> dict:
        return {**asdict(self), "verdict": self.verdict}

    def __str__(self) -> str:
        return (
            f"{self.verdict}: posterior std {self.std_context:.4f} (context) / {self.std_full:.4f} (context + "
            f"targets), KL {self.kl:.4f} nats, {self.active_units}/{self.z_dim} active units, mutual information "
            f"{self.mutual_information:.3f} nats (max {math.log(self.num_tasks):.2f}), far spread {self.far_spread:.4f}"
        )


def _moments(q) -> tuple[Tensor, Tensor]:
    """Mean and std [B, z_dim] of a posterior: its own, or from MOMENT_SAMPLES samples (flows)."""
    try:
        return q.mean, q.stddev
    except NotImplementedError:
        z = q.sample((MOMENT_SAMPLES,))
        return z.mean(0), z.std(0)


def mutual_information(posterior, num_samples: int = 1) -> Tensor:
    """Estimate of I(z; task) from a batch of posteriors (batch [N], event [z_dim]), the
    aggregate posterior over the batch as marginal: mean over n and ``num_samples`` z ~ q_n of
    log q_n(z) - log 1/N sum_m q_m(z). Lies in [0, log N] up to Monte-Carlo error."""
    z = posterior.sample((num_samples,))  # [S, N, z_dim]
    n = z.shape[1]
    own = posterior.log_prob(z)  # [S, N]
    cross = posterior.log_prob(z.unsqueeze(2))  # [S, N, N]: q_m(z_n), the batch broadcast over m
    aggregate = torch.logsumexp(cross, dim=-1) - math.log(n)
    return (own - aggregate).mean()


def far_inputs(x_dim: int, num_points: int = 20) -> Tensor:
    """The default far-from-data inputs: ``num_points`` evenly spaced over ``FAR_RANGE``, [num_points, 1]."""
    if x_dim != 1:
        raise ValueError(f"far_x must be given for x_dim = {x_dim}; the default [-4, -3] is for 1D tasks")
    return torch.linspace(*FAR_RANGE, num_points).unsqueeze(-1)


def diagnose(
    model,
    sampler,
    num_tasks: int = 256,
    num_samples: int = 100,
    far_x: Tensor | None = None,
    seed: int = 0,
) -> Diagnosis:
    """Collapse diagnostics of latent ``model`` on ``num_tasks`` tasks of ``sampler`` (drawn with
    ``seed``, as is every z): see the module docstring. ``far_x`` [N_far, x_dim] are the inputs
    the far spread is measured at (default: 20 points of [-4, -3], 1D tasks only)."""
    if not getattr(model, "is_latent", False):
        raise TypeError(f"diagnose needs a latent model; {type(model).__name__} has no posterior over z")
    if num_tasks < 2 or num_samples < 2:
        raise ValueError(f"num_tasks and num_samples must be >= 2, got {num_tasks} and {num_samples}")
    batch = sampler.sample(num_tasks, generator=torch.Generator().manual_seed(seed))
    device = next(model.parameters()).device
    batch = batch.to(device)
    far = (far_inputs(batch.xc.shape[-1]) if far_x is None else far_x).to(device=device, dtype=batch.xc.dtype)
    if far.dim() != 2 or far.shape[-1] != batch.xc.shape[-1]:
        raise ValueError(f"far_x must be [N_far, {batch.xc.shape[-1]}] (x_dim), got {tuple(far.shape)}")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            torch.manual_seed(seed)
            q_context = model.posterior(batch.xc, batch.yc, batch.mask_c)
            q_full = model.posterior(batch.x, batch.y, batch.mask)
            (mean_full, std_full), (_, std_context) = _moments(q_full), _moments(q_context)
            kl = kl_per_dim(q_full, q_context, q_full.sample((MOMENT_SAMPLES,))).sum(-1)  # [B]
            samples = sample_functions(model, batch.xc, batch.yc, far.expand(num_tasks, -1, -1), num_samples)
            return Diagnosis(
                std_context=std_context.mean().item(),
                std_full=std_full.mean().item(),
                kl=kl.mean().item(),
                active_units=int((mean_full.var(0) > ACTIVE_VARIANCE).sum()),
                z_dim=mean_full.shape[-1],
                mutual_information=mutual_information(q_full, num_samples=8).item(),
                far_spread=samples.std(0).mean().item(),
                num_tasks=num_tasks,
            )
    finally:
        model.train(was_training)
