"""Evaluation on a fixed, cached set of tasks: per-point log-likelihoods, MSE and coverage.

Conventions (docs/benchmarks/protocols.md, protocol 1). Every number is per point, averaged over
the points of a batch, then over batches:

- ``ctx_ll``: log-likelihood of the context observations when the predictive is queried at
  them (batches with no context point are skipped);
- ``tar_ll``: marginal per-point log-likelihood of the targets. For latent models, the log of
  the mean over the S samples of z ~ p(z | C) of each point's likelihood (``logmeanexp``);
- ``tar_ll_joint``: per task, ``logmeanexp`` over samples of the summed target log-likelihood,
  divided by Nt, then the mean over tasks. For deterministic models it equals ``tar_ll``; for
  the GP it is the joint Gaussian log-density / Nt (the joint column of the gp1d tables);
- ``tar_ll_joint_iw`` (latent models only): the same joint quantity estimated by importance
  sampling with proposal q(z | C ∪ T) and weights p(z | C) / q(z | C ∪ T), same number of
  samples (NaN where p(z | C) cannot score foreign z: a planar flow). Like ``tar_ll_joint`` it
  is a stochastic lower bound on log p(y_T | C) / Nt; it is
  the tighter one when q(z | C ∪ T) is close to the true posterior (a trained model) and can
  be far looser when it is not (an untrained model);
- ``mse``: squared error of the predictive mean (the mixture mean for latent models);
- ``coverage95``: fraction of target values inside the central 95% interval of the per-point
  predictive (u = predictive CDF at y, covered if 0.025 <= u <= 0.975; NaN for likelihoods
  without a CDF, such as Bernoulli);
- ``tar_ll_gaussian`` (``evaluate_gp(kind="bayes")`` only): ``tar_ll`` of the moment-matched
  Gaussian of each point's predictive;
- ``tar_ll_se``: standard error over batches of ``tar_ll`` (NaN with a single batch);
- ``num_tasks``: number of tasks evaluated.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Distribution, Independent, Normal
from tqdm import tqdm

from npkit.autoregressive import ar_log_prob
from npkit.baselines.bayes_gp import hyper_marginal_gp
from npkit.baselines.gp import fit_gp, gp_posterior
from npkit.baselines.knn import MIN_STD, knn_predictive
from npkit.data.evalset import EvalSet, cached_eval_set, load_eval_set, make_eval_set, save_eval_set
from npkit.data.gp import GPSampler
from npkit.models.base import check_num_samples
from npkit.objectives import foreign_log_prob, importance_estimate
from npkit.predictive import SampleMixture, logmeanexp, per_sample
from npkit.tasks import Batch, validated_inputs

METRICS = (
    "ctx_ll",
    "tar_ll",
    "tar_ll_joint",
    "tar_ll_joint_iw",
    "tar_ll_ar",
    "mse",
    "coverage95",
    "tar_ll_se",
    "num_tasks",
)
COVERAGE = 0.95
# Largest [S, B, n, Dy] tensor of per-sample statistics that evaluate builds at once: the model is
# queried on chunks of points (all with the same latent samples), so memory is bounded in targets.
EVAL_CHUNK_ELEMENTS = 2**22
# Most context points per task the fitted GP of evaluate_gp conditions on (a random subset beyond).
GP_MAX_CONTEXT = 200

__all__ = [
    "METRICS",
    "EvalSet",
    "cached_eval_set",
    "evaluate",
    "evaluate_gp",
    "evaluate_knn",
    "format_table",
    "load_eval_set",
    "make_eval_set",
    "save_eval_set",
]


def _masked_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of values [B, N] over the points where mask [B, N] is True (all when None)."""
    if mask is None:
        return values.mean()
    return values[mask].mean()


def _point_stats(components: Distribution, y: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-point quantities of the equal-weight mixture over the S ``components`` (batch [S, B, N]).

    y [B, N, Dy]. Returns the per-sample log-likelihood [S, B, N], the marginal per-point
    log-likelihood [B, N] (``logmeanexp`` over S), the squared error of the mixture mean [B, N]
    (mean over Dy) and the coverage indicator [B, N] (mean over Dy; NaN without a CDF).
    """
    ll_samples = components.log_prob(y)
    mixture = SampleMixture(components)
    sq_err = (mixture.mean - y).pow(2).mean(-1)
    tail = (1 - COVERAGE) / 2
    try:
        u = mixture.cdf(y)
        covered = ((u >= tail) & (u <= 1 - tail)).to(sq_err.dtype).mean(-1)
    except NotImplementedError:
        covered = torch.full_like(sq_err, math.nan)
    return ll_samples, logmeanexp(ll_samples, 0), sq_err, covered


def _batch_metrics(
    ctx_ll: Tensor | None,
    tar_ll: Tensor,
    tar_joint: Tensor,
    sq_err: Tensor,
    covered: Tensor,
    mask_c: Tensor | None,
    mask_t: Tensor | None,
) -> dict[str, float]:
    """One batch's metrics from per-point ctx_ll [B, Nc] (None: skipped), tar_ll, sq_err,
    covered [B, Nt] and the summed joint target log-likelihood per task tar_joint [B]."""
    num_t = tar_ll.new_full(tar_ll.shape[:1], tar_ll.shape[1]) if mask_t is None else mask_t.sum(1)
    scored = num_t > 0  # tasks with at least one real target point
    if not scored.any():
        raise ValueError("a batch has no target points to evaluate (n_target = 0)")
    out = {
        "tar_ll": _masked_mean(tar_ll, mask_t).item(),
        "tar_ll_joint": (tar_joint[scored] / num_t[scored]).mean().item(),
        "mse": _masked_mean(sq_err, mask_t).item(),
        "coverage95": _masked_mean(covered, mask_t).item(),
        "num_tasks": tar_ll.shape[0],
    }
    has_context = ctx_ll is not None and ctx_ll.shape[1] > 0 and (mask_c is None or mask_c.any())
    if has_context:
        out["ctx_ll"] = _masked_mean(ctx_ll, mask_c).item()
    return out


def _aggregate(per_batch: list[dict[str, float]]) -> dict[str, float]:
    """Mean over batches (ctx_ll over the batches that have a context), tar_ll_se, num_tasks."""
    if not per_batch:
        raise ValueError("no batches to evaluate")
    mean = lambda key: sum(b[key] for b in per_batch) / len(per_batch)
    ctx = [b["ctx_ll"] for b in per_batch if "ctx_ll" in b]
    tar = torch.tensor([b["tar_ll"] for b in per_batch], dtype=torch.float64)
    se = (tar.std() / math.sqrt(len(tar))).item() if len(tar) > 1 else float("nan")
    return {
        "ctx_ll": sum(ctx) / len(ctx) if ctx else float("nan"),
        "tar_ll": mean("tar_ll"),
        "tar_ll_joint": mean("tar_ll_joint"),
        "mse": mean("mse"),
        "coverage95": mean("coverage95"),
        "tar_ll_se": se,
        "num_tasks": float(sum(b["num_tasks"] for b in per_batch)),
        **{key: mean(key) for key in ("tar_ll_joint_iw", "tar_ll_ar", "tar_ll_gaussian") if key in per_batch[0]},
    }


def _split(t: Tensor, nc: int, dim: int) -> tuple[Tensor, Tensor]:
    return t.narrow(dim, 0, nc), t.narrow(dim, nc, t.shape[dim] - nc)


def _chunks(model, batch: Batch, x: Tensor, z: Tensor | None):
    """(points, components) for consecutive chunks of the points of x [B, N, Dx]: the slice and
    the per-sample predictive there (batch [S, B, n]), every chunk with the same latent samples
    z [S, B, z_dim] (None for deterministic models), at most ``EVAL_CHUNK_ELEMENTS`` per
    [S, B, n, Dy] tensor. At least one chunk, empty when N = 0."""
    per_point = (1 if z is None else z.shape[0]) * x.shape[0] * batch.yc.shape[-1]
    size = max(1, EVAL_CHUNK_ELEMENTS // max(1, per_point))
    options = {} if z is None else {"z": z}
    for start in range(0, max(1, x.shape[1]), size):
        points = slice(start, start + size)
        pred = model(batch.xc, batch.yc, x[:, points], mask_c=batch.mask_c, **options)
        yield points, per_sample(model, pred)


def _summed_log_lik(log_lik: Tensor, keep: Tensor | None) -> Tensor:
    """Sum over points of log_lik [S, B, n] where keep [B, n] is True (all when None) -> [S, B]."""
    return (log_lik if keep is None else log_lik.masked_fill(~keep, 0.0)).sum(-1)


def _scored_targets(batch: Batch) -> Tensor:
    """bool [B, N] over ``batch.x``: the real target points (the joint sums the targets only)."""
    nc = batch.num_context
    scored = torch.ones(batch.x.shape[:2], dtype=torch.bool, device=batch.x.device)
    scored[:, :nc] = False
    if batch.mask_t is not None:
        scored[:, nc:] = batch.mask_t
    return scored


def _split_metrics(
    batch: Batch, ll: Tensor, tar_joint: Tensor, sq_err: Tensor, covered: Tensor, mask_c: Tensor | None
) -> dict[str, float]:
    """``_batch_metrics`` from per-point ll, sq_err, covered [B, N] over ``batch.x`` (context then
    targets) and the summed joint target log-likelihood per task tar_joint [B]."""
    nc = batch.num_context
    ll_c, ll_t = _split(ll, nc, 1)
    t = lambda v: _split(v, nc, 1)[1]
    return _batch_metrics(ll_c, ll_t, tar_joint, t(sq_err), t(covered), mask_c, batch.mask_t)


def _batch_stats(model, batch: Batch, z: Tensor | None) -> dict[str, float]:
    """Metrics of one batch: the model queried at ``batch.x`` (context then targets) chunk by
    chunk with the latent samples z, keeping only per-point [B, N] and per-sample [S, B] sums."""
    scored = _scored_targets(batch)
    y = batch.y
    ll, sq_err, covered, joint = [], [], [], 0.0
    for points, components in _chunks(model, batch, batch.x, z):
        ll_s, ll_part, sq_part, covered_part = _point_stats(components, y[:, points])
        joint = joint + _summed_log_lik(ll_s, scored[:, points])
        ll.append(ll_part)
        sq_err.append(sq_part)
        covered.append(covered_part)
    ll, sq_err, covered = (torch.cat(parts, 1) for parts in (ll, sq_err, covered))
    tar_joint = logmeanexp(joint, 0)  # [B]
    return _split_metrics(batch, ll, tar_joint, sq_err, covered, batch.mask_c)


def _joint_importance_weighted(model, batch: Batch, num_samples: int) -> float:
    """Mean over tasks of log p(yt | C) / Nt, importance-sampled with proposal q(z | C ∪ T): the
    estimate of ``npkit.objectives.log_marginal_estimate`` (targets only), with the targets'
    log-likelihoods summed chunk by chunk."""
    p = model.posterior(batch.xc, batch.yc, batch.mask_c)
    q = model.posterior(batch.x, batch.y, batch.mask)
    z = q.rsample((num_samples,))
    log_p = foreign_log_prob(p, z)  # [S, B]
    if log_p is None:
        return math.nan
    log_lik = 0.0  # [S, B] once summed over the chunks of targets
    for points, components in _chunks(model, batch, batch.xt, z):
        keep = None if batch.mask_t is None else batch.mask_t[:, points]
        log_lik = log_lik + _summed_log_lik(components.log_prob(batch.yt[:, points]), keep)
    return _per_target_mean(batch, importance_estimate(log_lik, log_p, q.log_prob(z)))


def _per_target_mean(batch: Batch, per_task: Tensor) -> float:
    """Mean over the tasks with targets of a per-task total [B] divided by the task's Nt."""
    num_t = batch.mask_t.sum(1) if batch.mask_t is not None else torch.full_like(per_task, batch.num_target)
    scored = num_t > 0
    return (per_task[scored] / num_t[scored]).mean().item()


def _autoregressive(model, batch: Batch, num_samples: int) -> float:
    """Mean over tasks of log p(yt | C) / Nt under the autoregressive joint."""
    log_p = ar_log_prob(model, batch.xc, batch.yc, batch.xt, batch.yt, batch.mask_c, batch.mask_t, num_samples)
    return _per_target_mean(batch, log_p)


def evaluate(
    model, batches, num_samples: int = 50, progress: bool = False, autoregressive: bool = False
) -> dict[str, float]:
    """Per-point metrics of a model on fixed batches: log-likelihoods, MSE and coverage.

    The model is queried at ``batch.x`` (context then targets) with ``num_samples`` z ~ p(z | C)
    for latent models; the first Nc outputs score the context, the rest the targets. ``mask_c``
    is passed to the model; points masked out by ``mask_t`` are not scored. Points are queried
    in chunks sharing the same z (``EVAL_CHUNK_ELEMENTS``) and decoded in smaller ones
    (``npkit.models.chunking.PREDICT_CHUNK_ELEMENTS``), so memory stays bounded in targets and samples.
    Runs in eval mode without gradients; the model's mode is restored afterwards.

    Args:
        model (NeuralProcess): the model, on any device (batches are moved to it).
        batches (EvalSet | list[Batch]): an `EvalSet` or a list of batches, with ``yt``.
        num_samples: z samples per task of latent models.
        progress: show a progress bar.
        autoregressive: add ``tar_ll_ar``, the autoregressive joint (`npkit.ar_log_prob`;
            n_target forward passes' worth of work per batch).

    Returns:
        The metrics, keys of ``npkit.evaluation.metrics.METRICS`` (``ctx_ll``, ``tar_ll``,
            ``tar_ll_joint``, ``mse``, ``coverage95``, ``tar_ll_se``, ``num_tasks``; latent models
            also ``tar_ll_joint_iw``), defined in the module docstring, averaged over batches.

    Examples:
        >>> evalset = npkit.cached_eval_set(npkit.make_sampler("gp1d"), 50, 16, seed=1234)
        >>> npkit.evaluate(model, evalset, num_samples=50)["tar_ll"]
    """
    check_num_samples(num_samples)
    was_training = model.training
    device = next(model.parameters()).device
    model.eval()
    per_batch = []
    try:
        with torch.no_grad(), validated_inputs():
            for batch in tqdm(batches, desc="evaluate", disable=not progress):
                if batch.yt is None:
                    raise ValueError("evaluation needs target outputs yt")
                batch = batch.to(device)
                z = None
                if model.is_latent:  # drawn as the model draws them: z ~ p(z | C)
                    z = model.posterior(batch.xc, batch.yc, batch.mask_c).rsample((num_samples,))
                metrics = _batch_stats(model, batch, z)
                if model.is_latent:
                    metrics["tar_ll_joint_iw"] = _joint_importance_weighted(model, batch, num_samples)
                if autoregressive:
                    metrics["tar_ll_ar"] = _autoregressive(model, batch, num_samples)
                per_batch.append(metrics)
    finally:
        model.train(was_training)
    return _aggregate(per_batch)


def evaluate_gp(
    evalset: EvalSet,
    kind: str = "oracle",
    fit_steps: int = 100,
    fit_restarts: int = 4,
    progress: bool = False,
    max_context: int | None = GP_MAX_CONTEXT,
    prior: GPSampler | None = None,
) -> dict[str, float]:
    """The metrics of `evaluate` for an exact GP: the oracle, a fitted GP or the Bayes-optimal one.

    ``kind="bayes"`` is the Bayes-optimal predictive, which no model can beat in expectation;
    its ``tar_ll`` is the mixture's per-point marginal and ``tar_ll_gaussian`` that of the
    moment-matched Gaussian, the ceiling of a per-point Gaussian predictive.

    The fitted GP handles any x_dim and y_dim C >= 1 (images: x = pixel coordinates, y = the C
    intensities): each output channel is an independent zero-mean GP with its own
    hyper-parameters, all tasks and channels fitted at once. It is fitted to and conditioned on
    at most ``max_context`` context points per task (default 200; None: all), a random subset
    (drawn by a generator seeded 0, so results are reproducible) when a task has more, so that
    784-pixel contexts stay tractable; ``ctx_ll`` still scores every context point. The oracle
    always conditions on the full context.

    Marginal metrics use the predictive's diagonal at ``batch.x`` (per-point log-likelihoods
    summed over channels, as for models); ``tar_ll_joint`` is the joint Gaussian log-density of
    the targets (summed over the independent channels) / Nt. Masked contexts are not supported
    (ValueError); points masked out by ``mask_t`` are not scored.

    Args:
        evalset: the tasks, with their generating GPs for the oracle (`make_eval_set`,
            `cached_eval_set`).
        kind: "oracle": the true per-task kernel and noise of each batch (``evalset.gps``);
            "fitted": a GP of the same kernel family (RBF when the set has no generating GPs,
            e.g. images) fitted per task to the context by marginal likelihood
            (`npkit.fit_gp`); "bayes": the GP averaged over the posterior of the
            hyper-parameters under ``prior`` (`npkit.hyper_marginal_gp`).
        fit_steps: Adam steps of each fit ("fitted"; 0: GPyTorch's default hyper-parameters).
        fit_restarts: initial length scales tried per task ("fitted").
        progress: show a progress bar.
        max_context: most context points per task the fitted GP is fitted to and conditioned
            on (a random subset beyond; None: all).
        prior: the `GPSampler` that drew the set ("bayes" only).

    Returns:
        The metrics of `evaluate` (no ``tar_ll_joint_iw``; ``tar_ll_gaussian`` for
            "bayes").
    """
    if kind not in ("oracle", "fitted", "bayes"):
        raise ValueError(f"kind must be 'oracle', 'fitted' or 'bayes', got {kind!r}")
    if kind == "bayes" and not isinstance(prior, GPSampler):
        raise ValueError("kind='bayes' needs prior=the GPSampler that drew the evaluation set")
    if not isinstance(evalset, EvalSet):
        raise TypeError("evaluate_gp needs an EvalSet (from make_eval_set or cached_eval_set)")
    if kind == "oracle" and evalset.gps is None:
        raise ValueError("the oracle needs GP tasks: this evaluation set has no generating GPs")
    if max_context is not None and max_context < 1:
        raise ValueError(f"max_context must be >= 1 or None, got {max_context}")
    generator = torch.Generator().manual_seed(0)
    per_batch = []
    with torch.no_grad():
        for i, batch in enumerate(tqdm(evalset, desc=f"evaluate_gp[{kind}]", disable=not progress)):
            if batch.yt is None:
                raise ValueError("evaluation needs target outputs yt")
            if batch.mask_c is not None:
                raise ValueError("evaluate_gp does not support masked contexts (mask_c)")
            gp = evalset.gps[i] if evalset.gps is not None else None
            if kind == "bayes":
                per_batch.append(_bayes_metrics(prior, batch))
                continue
            if kind == "oracle":
                mvn = gp_posterior(gp, batch.xc, batch.yc, batch.x)
            else:
                kernel = gp.kernel if gp is not None else "rbf"
                mvn = _fitted_gp_channels(batch, kernel, fit_steps, fit_restarts, max_context, generator)
            per_batch.append(_gp_metrics(mvn, batch))
    return _aggregate(per_batch)


def _bayes_metrics(prior: GPSampler, batch: Batch) -> dict[str, float]:
    """Metrics of the hyper-parameter-marginalised GP on one batch (no masks)."""
    if batch.mask_t is not None:
        raise ValueError("evaluate_gp(kind='bayes') does not support masked targets (mask_t)")
    nc = batch.num_context
    pred = hyper_marginal_gp(prior, batch.x, batch.y, nc)
    y = batch.y.squeeze(-1).double()
    tail = (1 - COVERAGE) / 2
    covered = ((pred.cdf >= tail) & (pred.cdf <= 1 - tail)).double()
    out = _split_metrics(batch, pred.log_prob, pred.joint_log_prob, (pred.mean - y) ** 2, covered, None)
    out["tar_ll_gaussian"] = pred.gaussian_log_prob[:, nc:].mean().item()
    return out


def _fitted_gp_channels(
    batch: Batch, kernel: str, steps: int, restarts: int, max_context: int | None, generator: torch.Generator
):
    """Predictive at ``batch.x`` of per-task, per-channel GPs fitted to (a random subset of at
    most ``max_context`` points of) the context: batch [B * C] (index b * C + c), event [N]."""
    xc, yc, x = batch.xc, batch.yc, batch.x
    (b, nc, dx), c, n = xc.shape, yc.shape[-1], x.shape[1]
    if max_context is not None and nc > max_context:
        keep = torch.rand(b, nc, generator=generator).argsort(1)[:, :max_context].to(xc.device)
        xc = torch.gather(xc, 1, keep.unsqueeze(-1).expand(-1, -1, dx))
        yc = torch.gather(yc, 1, keep.unsqueeze(-1).expand(-1, -1, c))
        nc = max_context
    per_channel = lambda t, m: t.unsqueeze(1).expand(b, c, m, t.shape[-1]).reshape(b * c, m, t.shape[-1])
    xc_bc, x_bc = per_channel(xc, nc), per_channel(x, n)
    yc_bc = yc.transpose(1, 2).reshape(b * c, nc, 1)
    gp = fit_gp(xc_bc, yc_bc, kernel=kernel, steps=steps, restarts=restarts)
    return gp_posterior(gp, xc_bc, yc_bc, x_bc)


def _gp_metrics(mvn, batch: Batch) -> dict[str, float]:
    """Metrics of a GP predictive ``mvn`` at ``batch.x`` with batch [B * C] (index b * C + c, one
    independent GP per output channel of y [B, N, C]) and event [N]."""
    nc = batch.num_context
    y = batch.y.double()  # [B, N, C]
    b, n, c = y.shape
    mean = mvn.mean.view(b, c, n)
    per_point = Independent(Normal(mean.transpose(1, 2), mvn.variance.sqrt().view(b, c, n).transpose(1, 2)), 1)
    _, ll, sq_err, covered = _point_stats(per_point.expand(torch.Size([1]) + per_point.batch_shape), y)
    # Joint density of the targets: the target block of each channel's predictive at batch.x.
    mean_t = mean[..., nc:]  # [B, C, Nt]
    cov_t = mvn.covariance_matrix.view(b, c, n, n)[..., nc:, nc:]
    y_t = y[:, nc:].transpose(1, 2)
    const = 0.0
    if batch.mask_t is not None:
        # Decouple masked points (unit variance, observed at their mean), then remove
        # their constant -0.5 log(2 pi) each: the density of the real points only.
        keep = batch.mask_t.to(torch.float64).unsqueeze(1)  # [B, 1, Nt]
        pair = keep.unsqueeze(-1) * keep.unsqueeze(-2)
        eye = torch.eye(cov_t.shape[-1], dtype=torch.float64, device=cov_t.device)
        cov_t = cov_t * pair + eye * (1 - keep).unsqueeze(-1)
        y_t = torch.where(batch.mask_t.unsqueeze(1), y_t, mean_t)
        const = 0.5 * math.log(2 * math.pi) * c * (~batch.mask_t).sum(1).to(torch.float64)
    log_density = torch.distributions.MultivariateNormal(mean_t, covariance_matrix=cov_t).log_prob(y_t)
    tar_joint = log_density.sum(1) + const
    return _split_metrics(batch, ll, tar_joint, sq_err, covered, None)


def evaluate_knn(batches, k: int = 5, min_std: float = MIN_STD, progress: bool = False) -> dict[str, float]:
    """The metrics of `evaluate` for k-nearest-neighbour regression in input space.

    Per task and point, a Gaussian with the mean of the k = min(k, Nc) nearest context values
    and their standard deviation, floored at ``min_std`` (kNN has no likelihood of its own; see
    ``npkit.baselines.knn``). The predictive is queried at ``batch.x`` (context then targets);
    ``mask_c`` selects the real context points, points masked out by ``mask_t`` are not scored.
    Points are independent, so ``tar_ll_joint`` equals ``tar_ll``.

    Args:
        batches (EvalSet | list[Batch]): an `EvalSet` or a list of batches, with ``yt``.
        k: neighbours per point.
        min_std: floor of the predictive std.
        progress: show a progress bar.

    Returns:
        The metrics of `evaluate` (no ``tar_ll_joint_iw``).
    """
    per_batch = []
    for batch in tqdm(batches, desc="evaluate_knn", disable=not progress):
        if batch.yt is None:
            raise ValueError("evaluation needs target outputs yt")
        pred = knn_predictive(batch.xc, batch.yc, batch.x, k=k, min_std=min_std, mask_c=batch.mask_c)
        ll_s, ll, sq_err, covered = _point_stats(pred.expand(torch.Size([1]) + pred.batch_shape), batch.y.double())
        tar_joint = _summed_log_lik(ll_s, _scored_targets(batch))[0]
        per_batch.append(_split_metrics(batch, ll, tar_joint, sq_err, covered, batch.mask_c))
    return _aggregate(per_batch)


# ----------------------------------------------------------------------------- reporting


def format_table(results: dict[str, dict[str, float]]) -> str:
    """Format metrics as a plain-text table: one row per method, one column per metric.

    Args:
        results: method name -> its metrics (as `evaluate` returns them); columns are
            the metrics of ``METRICS`` that occur, then any others sorted.

    Returns:
        The table, one line per row, missing values shown as "-".

    Examples:
        >>> print(npkit.format_table({"np": npkit.evaluate(model, evalset)}))
    """
    columns = [m for m in METRICS if any(m in r for r in results.values())]
    columns += sorted({k for r in results.values() for k in r} - set(columns))

    def cell(key: str, value) -> str:
        if value is None:
            return "-"
        if key == "num_tasks" and math.isfinite(value):
            return str(int(value))
        return f"{value:.4f}"

    rows = [["model", *columns]]
    rows += [[name, *(cell(c, r.get(c)) for c in columns)] for name, r in results.items()]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths))) for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
