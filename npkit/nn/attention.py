"""Multi-head attention that honours point masks and empty key sets (ANP, Kim et al. 2019)."""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint


def _attention(q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor | None) -> Tensor:
    """softmax(q k^T / sqrt(d)) v per head: q [B, H, Nq, d], k, v [B, H, Nk, d], key_mask [B, Nk].

    On the CPU, half-precision inputs (bf16-mixed training) are attended in float32 and cast
    back: torch's CPU kernel is several times slower in bfloat16 than in float32 (CANP training
    step at width 256: 69 ms with it, 39 ms with this, 72 ms all in float32; benchmarks/step_time.py).
    """
    dtype = q.dtype
    upcast = q.device.type == "cpu" and dtype in (torch.bfloat16, torch.float16)
    if upcast:
        q, k, v = q.float(), k.float(), v.float()
    bias = None
    if key_mask is not None:
        # A large finite negative (not -inf) keeps fully masked rows finite; they are zeroed after.
        bias = torch.zeros(key_mask.shape, dtype=q.dtype, device=q.device)
        bias = bias.masked_fill(~key_mask, torch.finfo(q.dtype).min)[:, None, None, :]
    with torch.autocast("cpu", enabled=False) if upcast else nullcontext():
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    return attended.to(dtype)


class MultiheadAttention(nn.Module):
    """Multi-head dot-product attention with a residual connection and layer norm, then a
    feed-forward layer of width ``ff_dim`` (default ``dim``) with its own: a post-norm
    transformer block.

    queries [B, Nq, D], keys [B, Nk, D], values [B, Nk, D], key_mask [B, Nk] -> [B, Nq, D].
    Queries with no visible key (Nk = 0 or all keys masked) get zero attention output, so an
    empty context yields the prior. Uses ``scaled_dot_product_attention`` (memory-efficient
    kernels where the device has them), so thousands of targets fit in bounded memory.
    """

    def __init__(self, dim: int, num_heads: int, ff_dim: int | None = None) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        ff_dim = dim if ff_dim is None else ff_dim
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim, bias=False)
        self.out = nn.Linear(dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, ff_dim), nn.ReLU(), nn.Linear(ff_dim, dim))
        self.norm2 = nn.LayerNorm(dim)

    def _heads(self, t: Tensor) -> Tensor:
        b, n, d = t.shape
        return t.view(b, n, self.num_heads, d // self.num_heads).transpose(1, 2)

    def forward(self, queries: Tensor, keys: Tensor, values: Tensor, key_mask: Tensor | None = None) -> Tensor:
        b, nq, d = queries.shape
        if keys.shape[1] == 0:
            attended = queries.new_zeros(b, nq, d)
        else:
            q, k, v = self._heads(self.q(queries)), self._heads(self.k(keys)), self._heads(self.v(values))
            attended = _attention(q, k, v, key_mask)
            attended = self.out(attended.transpose(1, 2).reshape(b, nq, d))
            if key_mask is not None:
                attended = attended * key_mask.any(dim=1).to(attended.dtype)[:, None, None]
        h = self.norm1(queries + attended)
        return self.norm2(h + self.ff(h))


# Sets larger than this (elements of h) are trained with each block's activations recomputed in
# the backward pass (activation checkpointing): thousands of points (images) in bounded memory.
RECOMPUTE_ELEMENTS = 2**21


class SelfAttention(nn.Sequential):
    """A stack of ``num_layers`` self-attention blocks over a set h [B, N, D] (mask [B, N])."""

    def __init__(self, dim: int, num_heads: int, num_layers: int) -> None:
        super().__init__(*[MultiheadAttention(dim, num_heads) for _ in range(num_layers)])

    def forward(self, h: Tensor, mask: Tensor | None = None) -> Tensor:  # type: ignore[override]
        recompute = torch.is_grad_enabled() and h.numel() > RECOMPUTE_ELEMENTS
        for block in self:
            h = checkpoint(block, h, h, h, mask, use_reentrant=False) if recompute else block(h, h, h, mask)
        return h
