"""Permutation-invariant pooling over the points of a set."""

from __future__ import annotations

from torch import Tensor


def masked_mean(h: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean over points of h [B, N, D] -> [B, D], counting only ``mask`` [B, N] points.

    An empty set (N = 0, or every point masked) pools to zeros: the prior's representation.
    """
    if mask is None:
        if h.shape[-2] == 0:
            return h.new_zeros(h.shape[:-2] + h.shape[-1:])
        return h.mean(dim=-2)
    weights = mask.to(h.dtype).unsqueeze(-1)
    return (h * weights).sum(-2) / weights.sum(-2).clamp_min(1.0)
