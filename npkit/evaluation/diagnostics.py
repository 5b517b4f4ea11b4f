"""Posterior-collapse diagnostics for any latent model on any task sampler.

Three collapse modes, and one milder symptom, are told apart (see ``docs/collapse.md``):

- **point-mass collapse** (the NP critique): q(z | C) and q(z | C ∪ T) shrink together to a
  near point mass; the KL between them costs nothing and the function samples all coincide;
- **an unused latent** (KL vanishing, as in VAEs): q(z | C) no longer depends on the data, so z
  carries no information (no active unit, mutual information near 0);
- **z ignored by the decoder**: q(z | C) depends on the context, but the decoder has learned to
  disregard z: giving a task another task's z barely changes its prediction;
- **overconfident** (not a collapse of z): the decoder uses z, but the posterior is so narrow
  for what z does that the function samples agree at the unobserved targets or far from the
  data (the critique's confident prediction at x = -4).

`diagnose` measures, on ``num_tasks`` tasks drawn with ``seed``:

- ``std_context`` / ``std_full``: the posterior std of z under q(z | C) and q(z | C ∪ T), mean
  over tasks and dimensions;
- ``kl``: KL(q(z | C ∪ T) || q(z | C)) per task (summed over dimensions), mean over tasks;
- ``active_units``: dimensions whose mean E_q(z | C)[z] varies across tasks with variance above
  ``ACTIVE_VARIANCE`` (0.01, Burda et al. 2016);
- ``mutual_information``: I(z; C) under q(z | C) with the tasks' aggregate as the marginal,
  estimated as mean_n [log q(z_n | C_n) - log 1/N sum_m q(z_n | C_m)] with z_n ~ q(z | C_n)
  (Hoffman & Johnson 2016); between 0 and log N nats.

  Both use q(z | C), the distribution predictions are drawn from, rather than q(z | C ∪ T)
  (both NaN for a posterior that scores only its own samples: planar flows);
  on a task family with one function (the critique's sine5) every C ∪ T is the same set, so
  only the contexts differ between tasks;
- ``z_effect``: the RMS change of the predictive mean at the targets when each task decodes the
  z drawn for the next task in the batch instead of its own (how much the decoder reads z);
- ``target_spread``: the std over ``num_samples`` function samples (predictive means of
  z ~ q(z | C)) of the prediction at the tasks' target inputs, mean over points and tasks;
- ``far_spread``: the same at ``far_x`` (points away from the data; default 20 points of
  [-4, -3] for 1D tasks, none (NaN) otherwise).

The verdict, first match: "collapsed: point mass" when ``std_context < POINT_MASS_STD`` and
``target_spread < FLAT_SPREAD``; "collapsed: latent unused" when ``active_units == 0``;
"collapsed: z ignored" when ``z_effect < FLAT_SPREAD``; "overconfident" when ``target_spread``
or ``far_spread < FLAT_SPREAD``; "healthy" otherwise (a NaN far spread, x_dim > 1 without
``far_x``, never counts as small). Spreads are in the units of y (the thresholds suit outputs of
order 1). On a task family with a single function (sine5) small spreads are the right answer.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from npkit.objectives import UNSCORABLE, foreign_log_prob, kl_per_dim
from npkit.predictive import logmeanexp, sample_functions
from npkit.rng import seeded

ACTIVE_VARIANCE = 0.01  # a unit is active when Var_tasks(E_q[z_d]) exceeds this (Burda et al. 2016)
POINT_MASS_STD = 0.05  # posterior std below this ...
FLAT_SPREAD = 0.05  # ... and function samples that agree to this at the targets: a point mass
MOMENT_SAMPLES = 256  # samples behind the KL and moments of posteriors without closed forms (flows)
FAR_RANGE = (-4.0, -3.0)  # 1D tasks: where the far spread is measured (the critique's x = -4)


@dataclass
class Diagnosis:
    """The numbers of `diagnose` (see the module docstring) and the verdict."""

    std_context: float
    std_full: float
    kl: float
    active_units: int
    z_dim: int
    mutual_information: float
    z_effect: float
    target_spread: float
    far_spread: float
    num_tasks: int

    @property
    def verdict(self) -> str:
        if self.std_context < POINT_MASS_STD and self.target_spread < FLAT_SPREAD:
            return "collapsed: point mass"
        if self.active_units == 0:
            return "collapsed: latent unused"
        if self.z_effect < FLAT_SPREAD:
            return "collapsed: z ignored"
        if self.target_spread < FLAT_SPREAD or self.far_spread < FLAT_SPREAD:
            return "overconfident"
        return "healthy"

    def as_dict(self) -> dict:
        return {**asdict(self), "verdict": self.verdict}

    def __str__(self) -> str:
        return (
            f"{self.verdict}: posterior std {self.std_context:.4f} (context) / {self.std_full:.4f} (context + "
            f"targets), KL {self.kl:.4f} nats, {self.active_units}/{self.z_dim} active units, mutual information "
            f"{self.mutual_information:.3f} nats (max {math.log(self.num_tasks):.2f}), z effect {self.z_effect:.4f}, "
            f"sample spread "
            f"{self.target_spread:.4f} at the targets / {self.far_spread:.4f} far from the data"
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
    cross = foreign_log_prob(posterior, z.unsqueeze(2).expand(-1, -1, n, -1))  # [S, N, N]: q_m(z_n)
    if cross is None:
        return torch.tensor(math.nan)
    aggregate = logmeanexp(cross, -1)
    return (own - aggregate).mean()


def far_inputs(x_dim: int, num_points: int = 20) -> Tensor | None:
    """The default far-from-data inputs: for 1D tasks ``num_points`` evenly spaced over
    ``FAR_RANGE``, [num_points, 1]; None for other x_dim (no default)."""
    return torch.linspace(*FAR_RANGE, num_points).unsqueeze(-1) if x_dim == 1 else None


def diagnose(
    model,
    sampler,
    num_tasks: int = 256,
    num_samples: int = 100,
    far_x: Tensor | None = None,
    seed: int = 0,
) -> Diagnosis:
    """Posterior-collapse diagnostics of a latent model on a batch of tasks, with a verdict.

    Measures the posterior stds, the KL between q(z | C ∪ T) and q(z | C), active units,
    mutual information, how much the decoder reads z and the spread of function samples (see
    the module docstring), on tasks drawn with ``seed``, as is every z, without touching the
    caller's CPU random state. Runs in eval mode without gradients.

    Args:
        model (NeuralProcess): a latent model.
        sampler (TaskSampler): the task sampler the tasks are drawn from.
        num_tasks: tasks in the one batch measured (>= 2).
        num_samples: z samples per task behind the spreads (>= 2).
        far_x: inputs `[n_far, x_dim]` the far spread is measured at (None: 20 points of
            [-4, -3] for 1D tasks; for others the far spread is then NaN).
        seed: seeds the tasks and every z.

    Returns:
        A ``Diagnosis``: the numbers as attributes, ``verdict`` ("healthy", "overconfident"
            or "collapsed: ..."), ``as_dict()`` and a one-paragraph ``str()``.

    Examples:
        >>> d = npkit.diagnose(model, npkit.make_sampler("sine5"))
        >>> d.verdict, d.std_context, d.z_effect
    """
    if not getattr(model, "is_latent", False):
        raise TypeError(f"diagnose needs a latent model; {type(model).__name__} has no posterior over z")
    if num_tasks < 2 or num_samples < 2:
        raise ValueError(f"num_tasks and num_samples must be >= 2, got {num_tasks} and {num_samples}")
    batch = sampler.sample(num_tasks, generator=torch.Generator().manual_seed(seed))
    device = next(model.parameters()).device
    batch = batch.to(device)
    far = far_inputs(batch.xc.shape[-1]) if far_x is None else far_x
    if far is not None and (far.dim() != 2 or far.shape[-1] != batch.xc.shape[-1]):
        raise ValueError(f"far_x must be [N_far, {batch.xc.shape[-1]}] (x_dim), got {tuple(far.shape)}")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), seeded(seed):
            q_context = model.posterior(batch.xc, batch.yc, batch.mask_c)
            q_full = model.posterior(batch.x, batch.y, batch.mask)
            (_, std_full), (mean_context, std_context) = _moments(q_full), _moments(q_context)
            try:
                kl = kl_per_dim(q_full, q_context, q_full.sample((MOMENT_SAMPLES,))).sum(-1)  # [B]
            except UNSCORABLE:
                kl = torch.tensor(math.nan)
            draws = sample_functions(model, batch.xc, batch.yc, batch.xt, num_samples)  # [S, B, Nt, Dy]
            at_targets = draws.std(0).mean().item()
            swapped = model(batch.xc, batch.yc, batch.xt, z=q_context.sample((num_samples,)).roll(1, dims=1))
            z_effect = (swapped.mean - draws).square().mean().sqrt().item()
            spread = math.nan
            if far is not None:
                far = far.to(device=device, dtype=batch.xc.dtype).expand(num_tasks, -1, -1)
                spread = sample_functions(model, batch.xc, batch.yc, far, num_samples).std(0).mean().item()
            return Diagnosis(
                std_context=std_context.mean().item(),
                std_full=std_full.mean().item(),
                kl=kl.mean().item(),
                active_units=int((mean_context.var(0) > ACTIVE_VARIANCE).sum()),
                z_dim=mean_context.shape[-1],
                mutual_information=mutual_information(q_context, num_samples=8).item(),
                z_effect=z_effect,
                target_spread=at_targets,
                far_spread=spread,
                num_tasks=num_tasks,
            )
    finally:
        model.train(was_training)


class CollapseMonitor:
    """A ``fit`` callback logging `diagnose` every few steps: the training curves of collapse.

    Logs ``diag/<name>`` columns (``std_context``, ``kl``, ``active_units``, ...). Its tasks
    and z come from their own seeded generator, so training draws the same batches with or
    without it. ``TrainConfig(diagnose_every=N)`` adds one.

    Args:
        sampler (TaskSampler): the task sampler the diagnosed tasks are drawn from.
        every: steps between diagnoses (>= 1).
        num_tasks: tasks per diagnosis.
        num_samples: z samples per task.
        seed: seeds the tasks and z of every diagnosis (the same tasks each time).

    Examples:
        >>> npkit.fit(model, data, callbacks=[npkit.CollapseMonitor(data, every=200)])
    """

    def __init__(self, sampler, every: int = 500, num_tasks: int = 128, num_samples: int = 50, seed: int = 0):
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.sampler, self.every, self.num_tasks, self.num_samples, self.seed = (
            sampler,
            every,
            num_tasks,
            num_samples,
            seed,
        )

    def __call__(self, step: int, model, output=None) -> dict[str, float]:
        if step % self.every:
            return {}
        d = diagnose(model, self.sampler, self.num_tasks, self.num_samples, seed=self.seed)
        names = ("std_context", "std_full", "kl", "active_units", "mutual_information", "z_effect", "target_spread")
        names += ("far_spread",)
        return {f"diag/{name}": float(getattr(d, name)) for name in names}
