"""k-nearest-neighbour regression in input space (for images: pixel coordinates), a
likelihood-free baseline made into a per-point Gaussian so that it can be scored like a model.

Per task, scikit-learn's ``KNeighborsRegressor`` (uniform weights, Euclidean distance) is fitted
to the context and queried at xq with k = min(k, Nc). kNN has no likelihood of its own; the
predictive used here is, independently for every query point and output channel,

    Normal(mean = mean of the k neighbours' values, std = max(std of those values, min_std)),

with the population standard deviation (ddof = 0) of the k values. The spread of the
neighbours is a local estimate of the uncertainty; the floor ``min_std`` (default 0.05) keeps
log-likelihoods finite where the neighbours agree exactly (k = 1, flat image regions, or a
query at a context point, whose nearest neighbour is itself).
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.neighbors import KNeighborsRegressor
from torch import Tensor
from torch.distributions import Independent, Normal

MIN_STD = 0.05


def knn_predictive(
    xc: Tensor, yc: Tensor, xq: Tensor, k: int = 5, min_std: float = MIN_STD, mask_c: Tensor | None = None
) -> Independent:
    """Per-point Gaussian predictive of kNN regression (see the module docstring).

    xc [B, Nc, Dx], yc [B, Nc, C], xq [B, Nq, Dx]; ``mask_c`` [B, Nc] (optional) marks the real
    context points. Returns a float64 ``Independent(Normal(mean, std), 1)`` with batch [B, Nq]
    and event [C], on xq's device. Every task needs at least one context point (ValueError).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not min_std > 0:
        raise ValueError(f"min_std must be > 0 (finite log-likelihoods), got {min_std}")
    if xc.dim() != 3 or yc.dim() != 3 or xq.dim() != 3 or xc.shape[:2] != yc.shape[:2]:
        raise ValueError(
            f"need xc [B, Nc, Dx], yc [B, Nc, C], xq [B, Nq, Dx]; got {tuple(xc.shape)}, {tuple(yc.shape)}, "
            f"{tuple(xq.shape)}"
        )
    as_np = lambda t: t.detach().cpu().to(torch.float64).numpy()
    xc_np, yc_np, xq_np = as_np(xc), as_np(yc), as_np(xq)
    keep = None if mask_c is None else mask_c.detach().cpu().numpy().astype(bool)
    b, nq, c = xq.shape[0], xq.shape[1], yc.shape[-1]
    mean = np.empty((b, nq, c))
    std = np.empty((b, nq, c))
    for i in range(b):
        x_i, y_i = (xc_np[i], yc_np[i]) if keep is None else (xc_np[i][keep[i]], yc_np[i][keep[i]])
        if len(x_i) == 0:
            raise ValueError(f"kNN needs at least one context point; task {i} has none")
        if nq == 0:
            continue
        model = KNeighborsRegressor(n_neighbors=min(k, len(x_i))).fit(x_i, y_i)
        neighbours = model.kneighbors(xq_np[i], return_distance=False)  # [Nq, k]
        mean[i] = model.predict(xq_np[i])
        std[i] = y_i[neighbours].std(axis=1)  # [Nq, k, C] -> [Nq, C], ddof = 0
    to_t = lambda a: torch.from_numpy(a).to(xq.device)
    return Independent(Normal(to_t(mean), to_t(np.maximum(std, min_std))), 1)
