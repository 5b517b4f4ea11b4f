"""Evaluation on a fixed, cached set of tasks: per-point log-likelihoods, MSE and coverage.

Conventions (BENCHMARKS.md, section 1). Every number is per point, averaged over the points of
a batch, then over batches:

- ``ctx_ll``: log-likelihood of the context observations when the predictive is queried at
  them (batches with no context point are skipped);
- ``tar_ll``: marginal per-point log-likelihood of the targets. For latent models, the log of
  the mean over the S samples of z ~ p(z | C) of each point's likelihood (``logmeanexp``);
- ``tar_ll_joint``: per task, ``logmeanexp`` over samples of the summed target log-likelihood,
  divided by Nt, then the mean over tasks. For deterministic models it equals ``tar_ll``; for
  the GP it is the joint Gaussian log-density / Nt (the joint column of BENCHMARKS.md);
- ``tar_ll_joint_iw`` (latent models only): the same joint quantity estimated by importance
  sampling with proposal q(z | C ∪ T) and weights p(z | C) / q(z | C ∪ T), same number of
  samples. Like ``tar_ll_joint`` it is a stochastic lower bound on log p(y_T | C) / Nt; it is
  the tighter one when q(z | C ∪ T) is close to the true posterior (a trained model) and can
  be far looser when it is not (an untrained model);
- ``mse``: squared error of the predictive mean (the mixture mean for latent models);
- ``coverage95``: fraction of target values inside the central 95% interval of the per-point
  predictive (u = predictive CDF at y, covered if 0.025 <= u <= 0.975);
- ``tar_ll_se``: standard error over batches of ``tar_ll`` (NaN with a single batch);
- ``num_tasks``: number of tasks evaluated.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from torch.distributions import Normal
from tqdm import tqdm

from npkit.baselines.gp import fitted_gp, oracle
from npkit.data.gp import TrueGP
from npkit.models.base import check_num_samples
from npkit.tasks import Batch

METRICS = ("ctx_ll", "tar_ll", "tar_ll_joint", "tar_ll_joint_iw", "mse", "coverage95", "tar_ll_se", "num_tasks")
_FORMAT_VERSION = 1


# ----------------------------------------------------------------------------- evaluation sets


def make_eval_set(sampler, num_batches: int, batch_size: int, seed: int) -> list[Batch]:
    """``num_batches`` batches of ``batch_size`` tasks drawn from ``sampler`` with one
    ``torch.Generator`` seeded by ``seed``: the same arguments always give the same tasks."""
    if num_batches < 1:
        raise ValueError(f"num_batches must be >= 1, got {num_batches}")
    generator = torch.Generator().manual_seed(seed)
    return [sampler.sample(batch_size, generator=generator) for _ in range(num_batches)]


_TENSOR_FIELDS = ("xc", "yc", "xt", "yt", "mask_c", "mask_t")


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def save_eval_set(batches: list[Batch], path: str | os.PathLike) -> None:
    """Write ``batches`` to ``path`` (safetensors, keys ``"{i}.{field}"``) and the non-tensor
    fields (counts, kernel name, float noise) to a JSON file beside it (``path`` with ``.json``).
    Both are written to temporary files first and then renamed, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, Tensor] = {}
    meta: dict = {"version": _FORMAT_VERSION, "batches": []}
    for i, batch in enumerate(batches):
        info: dict = {"fields": [], "gp": None}
        for name in _TENSOR_FIELDS:
            value = getattr(batch, name)
            if value is not None:
                tensors[f"{i}.{name}"] = value.detach().cpu().contiguous().clone()
                info["fields"].append(name)
        gp = batch.gp
        if gp is not None:
            info["gp"] = {
                "kernel": gp.kernel,
                "has_period": gp.period is not None,
                "noise_std": None if isinstance(gp.noise_std, Tensor) else float(gp.noise_std),
            }
            tensors[f"{i}.gp.scale"] = gp.scale.detach().cpu().contiguous().clone()
            tensors[f"{i}.gp.length"] = gp.length.detach().cpu().contiguous().clone()
            if gp.period is not None:
                tensors[f"{i}.gp.period"] = gp.period.detach().cpu().contiguous().clone()
            if isinstance(gp.noise_std, Tensor):
                tensors[f"{i}.gp.noise_std"] = gp.noise_std.detach().cpu().contiguous().clone()
        info["counts"] = [batch.batch_size, batch.num_context, batch.num_target]
        meta["batches"].append(info)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp_meta = path.with_name(path.name + f".json.tmp{os.getpid()}")
    save_file(tensors, str(tmp))
    tmp_meta.write_text(json.dumps(meta, indent=1))
    os.replace(tmp_meta, _sidecar(path))
    os.replace(tmp, path)


def load_eval_set(path: str | os.PathLike) -> list[Batch]:
    """Read batches written by :func:`save_eval_set` (no pickle involved)."""
    path = Path(path)
    meta = json.loads(_sidecar(path).read_text())
    if meta.get("version") != _FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported eval-set format version {meta.get('version')!r}")
    tensors = load_file(str(path))
    batches = []
    for i, info in enumerate(meta["batches"]):
        values = {name: tensors[f"{i}.{name}"] for name in info["fields"]}
        gp = None
        if info["gp"] is not None:
            g = info["gp"]
            noise = g["noise_std"] if g["noise_std"] is not None else tensors[f"{i}.gp.noise_std"]
            period = tensors[f"{i}.gp.period"] if g["has_period"] else None
            gp = TrueGP(g["kernel"], tensors[f"{i}.gp.scale"], tensors[f"{i}.gp.length"], period, noise)
        batch = Batch(**values, gp=gp)
        if [batch.batch_size, batch.num_context, batch.num_target] != info["counts"]:
            raise ValueError(f"{path}: batch {i} does not match the counts recorded beside it")
        batches.append(batch)
    return batches


def cached_eval_set(
    sampler,
    num_batches: int,
    batch_size: int,
    seed: int,
    cache_dir: str | os.PathLike | None = None,
) -> list[Batch]:
    """``make_eval_set(sampler, ...)``, cached in ``cache_dir`` (default: ``$NPKIT_CACHE``, else
    ``~/.cache/npkit``), so every model is evaluated on the same tasks.

    The file name holds the arguments and a hash of the sampler's full settings (its repr), so
    a sampler with other settings never reuses a stale set.
    """
    digest = hashlib.sha256(repr(sampler).encode()).hexdigest()[:10]
    label = type(sampler).__name__ + (f"-{sampler.kernel}" if hasattr(sampler, "kernel") else "")
    name = f"{label}_{num_batches}x{batch_size}_seed{seed}_{digest}.safetensors"
    if cache_dir is None:
        cache_dir = os.environ.get("NPKIT_CACHE") or Path.home() / ".cache" / "npkit"
    path = Path(cache_dir) / name
    if path.exists() and _sidecar(path).exists():
        return load_eval_set(path)
    batches = make_eval_set(sampler, num_batches, batch_size, seed)
    save_eval_set(batches, path)
    return batches


# ----------------------------------------------------------------------------- metrics


def _logmeanexp(t: Tensor, dim: int = 0) -> Tensor:
    return torch.logsumexp(t, dim) - math.log(t.shape[dim])


def _masked_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of values [B, N] over the points where mask [B, N] is True (all when None)."""
    if mask is None:
        return values.mean()
    return values[mask].mean()


def _point_stats(loc: Tensor, scale: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-point quantities of an equal-weight mixture over S Gaussians (S = 1: one Gaussian).

    loc, scale [S, B, N, Dy]; y [B, N, Dy]. Returns the per-sample log-likelihood [S, B, N]
    (summed over Dy), the marginal per-point log-likelihood [B, N] (``logmeanexp`` over S), the
    squared error of the mixture mean [B, N] (mean over Dy) and the 95% coverage indicator
    [B, N] (mean over Dy) from the mixture CDF.
    """
    normal = Normal(loc, scale)
    ll_samples = normal.log_prob(y).sum(-1)
    ll = _logmeanexp(ll_samples, 0)
    sq_err = (loc.mean(0) - y).pow(2).mean(-1)
    u = normal.cdf(y).mean(0)
    covered = ((u >= 0.025) & (u <= 0.975)).to(loc.dtype).mean(-1)
    return ll_samples, ll, sq_err, covered


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
        **({"tar_ll_joint_iw": mean("tar_ll_joint_iw")} if "tar_ll_joint_iw" in per_batch[0] else {}),
    }


def _split(t: Tensor, nc: int, dim: int) -> tuple[Tensor, Tensor]:
    return t.narrow(dim, 0, nc), t.narrow(dim, nc, t.shape[dim] - nc)


def _joint_importance_weighted(model, batch: Batch, num_samples: int) -> float:
    """Mean over tasks of log (1/S sum_s p(yt | z_s, C) p(z_s | C) / q(z_s | C ∪ T)) / Nt with
    z_s ~ q(z | C ∪ T): an importance-sampled estimate of the joint target log-likelihood."""
    prior = model.posterior(batch.xc, batch.yc, batch.mask_c)
    proposal = model.posterior(batch.x, batch.y, batch.mask)
    z = proposal.sample((num_samples,))
    ll = model(batch.xc, batch.yc, batch.xt, z=z, mask_c=batch.mask_c).log_prob(batch.yt)  # [S, B, Nt]
    num_t = ll.new_full(ll.shape[1:2], ll.shape[2]) if batch.mask_t is None else batch.mask_t.sum(1).to(ll.dtype)
    if batch.mask_t is not None:
        ll = ll.masked_fill(~batch.mask_t, 0.0)
    log_w = ll.sum(-1) + prior.log_prob(z) - proposal.log_prob(z)  # [S, B]
    scored = num_t > 0
    return (_logmeanexp(log_w, 0)[scored] / num_t[scored]).mean().item()


def evaluate(model, batches: list[Batch], num_samples: int = 50, progress: bool = False) -> dict[str, float]:
    """Metrics of ``model`` on ``batches`` (see the module docstring), keys ``METRICS``.

    The model is queried once per batch at ``batch.x`` (context then targets) with
    ``num_samples`` z for latent models; the first Nc outputs score the context, the rest the
    targets. ``mask_c`` is passed to the model; points masked out by ``mask_t`` are not scored.
    """
    check_num_samples(num_samples)
    was_training = model.training
    device = next(model.parameters()).device
    model.eval()
    per_batch = []
    try:
        with torch.no_grad():
            for batch in tqdm(batches, desc="evaluate", disable=not progress):
                if batch.yt is None:
                    raise ValueError("evaluation needs target outputs yt")
                batch = batch.to(device)
                pred = model(batch.xc, batch.yc, batch.x, num_samples=num_samples, mask_c=batch.mask_c)
                loc, scale = pred.base_dist.loc, pred.base_dist.scale
                if not model.is_latent:
                    loc, scale = loc.unsqueeze(0), scale.unsqueeze(0)  # one "sample": [1, B, N, Dy]
                nc = batch.num_context
                ll_s, ll, sq_err, covered = _point_stats(loc, scale, batch.y)
                ll_s_t = _split(ll_s, nc, 2)[1]
                if batch.mask_t is not None:
                    ll_s_t = ll_s_t.masked_fill(~batch.mask_t, 0.0)
                tar_joint = _logmeanexp(ll_s_t.sum(-1), 0)  # [B]
                ll_c, ll_t = _split(ll, nc, 1)
                metrics = _batch_metrics(
                    ll_c,
                    ll_t,
                    tar_joint,
                    _split(sq_err, nc, 1)[1],
                    _split(covered, nc, 1)[1],
                    batch.mask_c,
                    batch.mask_t,
                )
                if model.is_latent:
                    metrics["tar_ll_joint_iw"] = _joint_importance_weighted(model, batch, num_samples)
                per_batch.append(metrics)
    finally:
        model.train(was_training)
    return _aggregate(per_batch)


def evaluate_gp(
    batches: list[Batch], kind: str = "oracle", fit_steps: int = 100, fit_restarts: int = 4, progress: bool = False
) -> dict[str, float]:
    """The same metrics as :func:`evaluate` for the exact GP: ``kind="oracle"`` uses the true
    per-task kernel and noise (``batch.gp``), ``kind="fitted"`` a GP of the same kernel family
    fitted per task to the context (``fitted_gp``: ``fit_steps`` Adam steps, ``fit_restarts``).

    Marginal metrics use the predictive's diagonal at ``batch.x``; ``tar_ll_joint`` is the joint
    Gaussian log-density of the targets / Nt. Masked contexts are not supported (ValueError);
    points masked out by ``mask_t`` are not scored.
    """
    if kind not in ("oracle", "fitted"):
        raise ValueError(f"kind must be 'oracle' or 'fitted', got {kind!r}")
    per_batch = []
    with torch.no_grad():
        for batch in tqdm(batches, desc=f"evaluate_gp[{kind}]", disable=not progress):
            if batch.yt is None:
                raise ValueError("evaluation needs target outputs yt")
            if batch.mask_c is not None:
                raise ValueError("evaluate_gp does not support masked contexts (mask_c)")
            if kind == "oracle":
                mvn = oracle(batch, batch.x)
            else:
                mvn = fitted_gp(batch, batch.x, steps=fit_steps, restarts=fit_restarts)
            nc = batch.num_context
            y = batch.y.double()  # [B, N, 1]
            mean, var = mvn.mean.unsqueeze(-1), mvn.variance.unsqueeze(-1)  # [B, N, 1]
            _, ll, sq_err, covered = _point_stats(mean[None], var.sqrt()[None], y)
            # Joint density of the targets: the target block of the predictive at batch.x.
            mean_t = _split(mvn.mean, nc, 1)[1]
            cov_t = mvn.covariance_matrix[:, nc:, nc:]
            y_t = y[:, nc:, 0]
            const = 0.0
            if batch.mask_t is not None:
                # Decouple masked points (unit variance, observed at their mean), then remove
                # their constant -0.5 log(2 pi) each: the density of the real points only.
                keep = batch.mask_t.to(torch.float64)
                pair = keep.unsqueeze(-1) * keep.unsqueeze(-2)
                eye = torch.eye(cov_t.shape[-1], dtype=torch.float64)
                cov_t = cov_t * pair + eye * (1 - keep).unsqueeze(-1)
                y_t = torch.where(batch.mask_t, y_t, mean_t)
                const = 0.5 * math.log(2 * math.pi) * (~batch.mask_t).sum(1).to(torch.float64)
            joint = torch.distributions.MultivariateNormal(mean_t, covariance_matrix=cov_t)
            tar_joint = joint.log_prob(y_t) + const
            ll_c, ll_t = _split(ll, nc, 1)
            per_batch.append(
                _batch_metrics(
                    ll_c, ll_t, tar_joint, _split(sq_err, nc, 1)[1], _split(covered, nc, 1)[1], None, batch.mask_t
                )
            )
    return _aggregate(per_batch)


# ----------------------------------------------------------------------------- reporting


def format_table(results: dict[str, dict[str, float]]) -> str:
    """Plain-text table: one row per model name, one column per metric (``METRICS`` first)."""
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
