"""Permutation-invariant pooling over the points of a set, honouring masks [B, N].

Every pooling maps h [B, N, D] to [B, D]; an empty set (N = 0, or every point masked) pools to
zeros, the prior's representation.
"""

from __future__ import annotations

import torch
from torch import Tensor


def masked_sum(h: Tensor, mask: Tensor | None = None) -> Tensor:
    """Sum over the points of h [B, N, D] where ``mask`` [B, N] is True -> [B, D]."""
    if mask is None:
        return h.sum(dim=-2)
    return (h * mask.to(h.dtype).unsqueeze(-1)).sum(-2)


def masked_mean(h: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean over the points of h [B, N, D] where ``mask`` [B, N] is True -> [B, D]."""
    if mask is None:
        if h.shape[-2] == 0:
            return h.new_zeros(h.shape[:-2] + h.shape[-1:])
        return h.mean(dim=-2)
    return masked_sum(h, mask) / mask.to(h.dtype).sum(-1, keepdim=True).clamp_min(1.0)


def masked_max(h: Tensor, mask: Tensor | None = None) -> Tensor:
    """Element-wise max over the points of h [B, N, D] where ``mask`` [B, N] is True -> [B, D]."""
    if h.shape[-2] == 0:
        return h.new_zeros(h.shape[:-2] + h.shape[-1:])
    if mask is None:
        return h.amax(dim=-2)
    lowest = torch.finfo(h.dtype).min
    pooled = h.masked_fill(~mask.unsqueeze(-1), lowest).amax(dim=-2)
    return pooled * mask.any(-1, keepdim=True).to(h.dtype)


POOLINGS = {"mean": masked_mean, "sum": masked_sum, "max": masked_max}


def pool(h: Tensor, mask: Tensor | None = None, how: str = "mean") -> Tensor:
    """Pool h [B, N, D] -> [B, D] with ``how`` in ``POOLINGS``."""
    if how not in POOLINGS:
        raise ValueError(f"unknown pooling {how!r}; expected one of {sorted(POOLINGS)}")
    return POOLINGS[how](h, mask)
