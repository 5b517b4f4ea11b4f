"""Exact Gaussian-process predictions, in float64: the oracle of every GP benchmark, and the
same GP with hyper-parameters fitted per task by marginal likelihood (GPyTorch).

With K = k(xc, xc) + s2 I, the predictive of noisy observations at xq is
    mean = k(xq, xc) K^-1 yc,   cov = k(xq, xq) + s2 I - k(xq, xc) K^-1 k(xc, xq).
"""

from __future__ import annotations

import gpytorch
import torch
from torch import Tensor
from torch.distributions import MultivariateNormal

from npkit.data.gp import TrueGP
from npkit.tasks import Batch


def gp_posterior(gp: TrueGP, xc: Tensor, yc: Tensor, xq: Tensor) -> MultivariateNormal:
    """The exact GP predictive of noisy observations at the query points, given the context.

    Computed in float64 with a Cholesky factor of the context's covariance. An empty context
    gives the prior predictive.

    Args:
        gp: the kernel, per-task hyper-parameters and noise (``gp.noise_std``: a float, or a
            tensor `[batch]` of per-task values as `fit_gp` returns).
        xc: context inputs `[batch, n_context, x_dim]`.
        yc: context outputs `[batch, n_context, 1]`.
        xq: query inputs `[batch, n_query, x_dim]`.

    Returns:
        A float64 ``MultivariateNormal`` with batch `[batch]` and event `[n_query]`, the
            observation noise included.
    """
    xc, yc, xq = xc.double(), yc.double(), xq.double()
    noise = torch.as_tensor(gp.noise_std, dtype=torch.float64, device=xq.device) ** 2
    noise = noise.reshape(-1, 1, 1) if noise.dim() else noise
    eye_q = torch.eye(xq.shape[1], dtype=torch.float64, device=xq.device)
    prior_cov = gp.covariance(xq, xq) + noise * eye_q
    if xc.shape[1] == 0:
        return MultivariateNormal(xq.new_zeros(xq.shape[:2]), covariance_matrix=prior_cov)
    eye_c = torch.eye(xc.shape[1], dtype=torch.float64, device=xc.device)
    chol = torch.linalg.cholesky(gp.covariance(xc, xc) + noise * eye_c)
    k_cq = gp.covariance(xc, xq)
    a = torch.linalg.solve_triangular(chol, k_cq, upper=False)  # L^-1 k(xc, xq)
    b = torch.linalg.solve_triangular(chol, yc, upper=False)  # L^-1 yc
    mean = (a.transpose(-1, -2) @ b).squeeze(-1)
    cov = prior_cov - a.transpose(-1, -2) @ a
    cov = 0.5 * (cov + cov.transpose(-1, -2))
    return MultivariateNormal(mean, covariance_matrix=cov)


def oracle(batch: Batch, gp: TrueGP, xq: Tensor) -> MultivariateNormal:
    """The GP oracle: the exact GP that generated a batch, conditioned on its context.

    Args:
        batch: the tasks (their context is conditioned on).
        gp: the generating ``TrueGP`` of ``batch`` (``sampler.sample_with_truth`` returns both).
        xq: query inputs `[batch, n_query, x_dim]`.

    Returns:
        A float64 ``MultivariateNormal`` with batch `[batch]` and event `[n_query]`.

    Examples:
        >>> batch, gp = npkit.make_sampler("gp1d").sample_with_truth(8)
        >>> npkit.oracle(batch, gp, batch.xt).log_prob(batch.yt[..., 0].double())   # [8]
    """
    if not isinstance(gp, TrueGP):
        raise ValueError(f"the oracle needs the generating TrueGP of the batch, got {type(gp).__name__}")
    return gp_posterior(gp, batch.xc, batch.yc, xq)


FIT_KERNELS = ["matern52", "periodic", "rbf", "weakly_periodic"]


class _BatchGP(gpytorch.models.ExactGP):
    """B independent zero-mean exact GPs, one per task, as one GPyTorch model (batch_shape [B])."""

    def __init__(self, x: Tensor, y: Tensor, likelihood, covar_module) -> None:
        super().__init__(x, y, likelihood)
        self.mean_module = gpytorch.means.ZeroMean(batch_shape=y.shape[:1])
        self.covar_module = covar_module

    def forward(self, x: Tensor):
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


def _covar_module(kernel: str, batch_shape: torch.Size):
    """ScaleKernel over the GPyTorch kernel matching npkit's ``kernel`` (see ``npkit.data.gp``)."""
    rbf = lambda: gpytorch.kernels.RBFKernel(batch_shape=batch_shape)
    periodic = lambda: gpytorch.kernels.PeriodicKernel(batch_shape=batch_shape)
    if kernel == "rbf":
        base = rbf()
    elif kernel == "matern52":
        base = gpytorch.kernels.MaternKernel(nu=2.5, batch_shape=batch_shape)
    elif kernel == "periodic":
        base = periodic()
    elif kernel == "weakly_periodic":
        # npkit: exp(-d^2 / (2 l^2)) exp(-2 sin^2(pi d / p)), i.e. the periodic factor has its
        # (GPyTorch) lengthscale fixed to 1.
        factor = periodic()
        factor.lengthscale = 1.0
        factor.raw_lengthscale.requires_grad_(False)
        base = gpytorch.kernels.ProductKernel(rbf(), factor)
    else:
        raise ValueError(f"unknown kernel {kernel!r} for fit_gp; expected one of {FIT_KERNELS}")
    return gpytorch.kernels.ScaleKernel(base, batch_shape=batch_shape)


def _to_true_gp(kernel: str, covar, likelihood) -> TrueGP:
    """Read npkit hyper-parameters [B] (float64, detached) off a fitted ScaleKernel + likelihood."""
    flat = lambda t: t.detach().reshape(-1).to(torch.float64)
    base = covar.base_kernel
    scale = flat(covar.outputscale).sqrt()
    noise_std = flat(likelihood.noise).sqrt()
    if kernel == "weakly_periodic":
        rbf, periodic = base.kernels
        return TrueGP(kernel, scale, flat(rbf.lengthscale), flat(periodic.period_length), noise_std)
    if kernel == "periodic":
        # GPyTorch: exp(-2 sin^2(pi d / p) / lam), lengthscale not squared; npkit divides by
        # l^2, so l = sqrt(lam).
        return TrueGP(kernel, scale, flat(base.lengthscale).sqrt(), flat(base.period_length), noise_std)
    return TrueGP(kernel, scale, flat(base.lengthscale), None, noise_std)


def fit_gp(xc: Tensor, yc: Tensor, kernel: str = "rbf", steps: int = 100, lr: float = 0.1, restarts: int = 4) -> TrueGP:
    """Fit a zero-mean GP's hyper-parameters to each task's context by exact marginal likelihood.

    All tasks, each from ``restarts`` initial length scales (periods for the periodic kernel)
    spread geometrically over [0.1, 1], are fitted at once as one GPyTorch ExactGP with
    batch_shape `[restarts * batch]`, in float64, by Adam on the summed per-point log marginal
    likelihood; each task keeps the restart with the highest one. The remaining parameters
    start at GPyTorch's defaults (softplus(0) = 0.693, noise variance >= 1e-4). With an empty
    context (n_context = 0) or ``steps = 0`` nothing is fitted: GPyTorch's defaults are
    returned. Periodic kernels need x_dim = 1; their marginal likelihood is multimodal, so
    expect local optima even with restarts.

    Args:
        xc: context inputs `[batch, n_context, x_dim]`.
        yc: context outputs `[batch, n_context, 1]`.
        kernel: the kernel family: "rbf", "matern52", "periodic" or "weakly_periodic".
        steps: Adam steps.
        lr: Adam's learning rate.
        restarts: initial values tried per task (>= 1).

    Returns:
        A ``TrueGP`` with per-task ``scale`` = sqrt(outputscale), ``length``, ``period``
            (periodic kernels) and ``noise_std``, all float64 tensors `[batch]`.
    """
    if kernel not in FIT_KERNELS:
        raise ValueError(f"unknown kernel {kernel!r} for fit_gp; expected one of {FIT_KERNELS}")
    if yc.dim() != 3 or yc.shape[-1] != 1:
        raise ValueError(f"fit_gp needs yc of shape [batch, n_context, 1], got {tuple(yc.shape)}")
    if xc.dim() != 3 or xc.shape[:2] != yc.shape[:2]:
        raise ValueError(f"xc must have shape [batch, n_context, x_dim] matching yc, got {tuple(xc.shape)}")
    if kernel in ("periodic", "weakly_periodic") and xc.shape[-1] != 1:
        raise ValueError(f"kernel {kernel!r} is one-dimensional here; got x_dim = {xc.shape[-1]}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if restarts < 1:
        raise ValueError(f"restarts must be >= 1, got {restarts}")
    b = xc.shape[0]
    batch_shape = torch.Size([restarts * b])
    x = xc.detach().to(torch.float64).repeat(restarts, 1, 1)
    y = yc.detach().to(torch.float64).squeeze(-1).repeat(restarts, 1)
    covar = _covar_module(kernel, batch_shape).to(x)
    likelihood = gpytorch.likelihoods.GaussianLikelihood(batch_shape=batch_shape).to(x)
    if x.shape[1] == 0 or steps == 0:
        return _best_restart(_to_true_gp(kernel, covar, likelihood), torch.zeros(restarts, b))
    if restarts > 1:
        inits = torch.logspace(-1.0, 0.0, restarts, dtype=torch.float64).repeat_interleave(b).view(-1, 1, 1)
        base = covar.base_kernel
        if kernel == "periodic":
            base.period_length = inits
        else:
            (base.kernels[0] if kernel == "weakly_periodic" else base).lengthscale = inits
    model = _BatchGP(x, y, likelihood, covar)
    model.train()
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(likelihood, model)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            optimizer.zero_grad()
            loss = -mll(model(x), y).sum()  # mll: [restarts * B], per point
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        final = mll(model(x), y).view(restarts, b)
    return _best_restart(_to_true_gp(kernel, covar, likelihood), final)


def _best_restart(gp: TrueGP, score: Tensor) -> TrueGP:
    """Per task, the hyper-parameters [restarts * B] of the restart with the highest score [restarts, B]."""
    restarts, b = score.shape
    best = score.argmax(0)
    pick = lambda t: None if t is None else t.view(restarts, b)[best, torch.arange(b)]
    return TrueGP(gp.kernel, pick(gp.scale), pick(gp.length), pick(gp.period), pick(gp.noise_std))


def fitted_gp(batch: Batch, xq: Tensor, kernel: str = "rbf", steps: int = 100, restarts: int = 4) -> MultivariateNormal:
    """The predictive of a GP fitted per task to a batch's context, at the query points.

    `fit_gp` on the context, then `gp_posterior`.

    Args:
        batch: the tasks (outputs with y_dim = 1).
        xq: query inputs `[batch, n_query, x_dim]`.
        kernel: the kernel family: "rbf", "matern52", "periodic" or "weakly_periodic".
        steps: Adam steps of the fit.
        restarts: initial values tried per task.

    Returns:
        A float64 ``MultivariateNormal`` with batch `[batch]` and event `[n_query]`.
    """
    gp = fit_gp(batch.xc, batch.yc, kernel=kernel, steps=steps, restarts=restarts)
    return gp_posterior(gp, batch.xc, batch.yc, xq)
