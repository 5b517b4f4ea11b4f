"""Exact Gaussian-process predictions, in float64: the oracle of every GP benchmark.

With K = k(xc, xc) + s2 I, the predictive of noisy observations at xq is
    mean = k(xq, xc) K^-1 yc,   cov = k(xq, xq) + s2 I - k(xq, xc) K^-1 k(xc, xq).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import MultivariateNormal

from npkit.data.gp import TrueGP
from npkit.tasks import Batch


def gp_posterior(gp: TrueGP, xc: Tensor, yc: Tensor, xq: Tensor) -> MultivariateNormal:
    """Predictive of y at xq [B, Nq, 1] given yc [B, Nc, 1] at xc [B, Nc, 1] under ``gp``.

    Returns a float64 MultivariateNormal with batch [B], event [Nq]; it includes the observation
    noise. An empty context gives the prior predictive.
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


def oracle(batch: Batch, xq: Tensor) -> MultivariateNormal:
    """The exact GP with the true per-task kernel and noise of ``batch`` (``batch.gp``)."""
    if batch.gp is None:
        raise ValueError("this batch has no generating GP (batch.gp is None): the oracle needs GP tasks")
    return gp_posterior(batch.gp, batch.xc, batch.yc, xq)
