"""Set encoders built from plain sizes, shared by every model family.

- ``SetEncoder``: h_i = MLP(s_i) (then self-attention), pooled to one vector per set [B, out_dim];
- ``CrossAttentionEncoder``: one representation per query point [B, Nq, out_dim], attending from
  the queries' inputs to the set (the ANP's deterministic path).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from npkit.nn.aggregation import POOLINGS, pool
from npkit.nn.attention import MultiheadAttention, SelfAttention
from npkit.nn.mlp import mlp


class SetEncoder(nn.Module):
    """points [B, N, in_dim], mask [B, N] -> post(pool_i h_i) [B, out_dim], with h = MLP(points)
    (``num_layers`` layers) followed by ``attention_layers`` self-attention blocks, and post an
    MLP of ``post_layers`` layers after pooling (none by default; the TNP reference code's
    ``post_depth``)."""

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        out_dim: int,
        num_layers: int,
        attention_layers: int = 0,
        num_heads: int = 8,
        pooling: str = "mean",
        post_layers: int = 0,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; expected one of {sorted(POOLINGS)}")
        self.net = mlp(in_dim, hidden_dim, out_dim, num_layers)
        self.self_attention = SelfAttention(out_dim, num_heads, attention_layers) if attention_layers else None
        self.post = mlp(out_dim, hidden_dim, out_dim, post_layers) if post_layers else None
        self.pooling = pooling

    def forward(self, points: Tensor, mask: Tensor | None = None) -> Tensor:
        h = self.net(points)
        if self.self_attention is not None:
            h = self.self_attention(h, mask)
        pooled = pool(h, mask, self.pooling)
        return pooled if self.post is None else self.post(pooled)


class CrossAttentionEncoder(nn.Module):
    """r_q = Attn(q = MLP(x_q), k = MLP(x_i), v = SelfAttn(MLP([x_i, y_i]))) -> [B, Nq, out_dim].

    x [B, N, x_dim], y [B, N, y_dim], mask [B, N], queries [B, Nq, x_dim].
    """

    def __init__(
        self,
        x_dim: int,
        y_dim: int,
        hidden_dim: int,
        out_dim: int,
        num_layers: int,
        attention_layers: int,
        num_heads: int,
    ) -> None:
        super().__init__()
        self.values = mlp(x_dim + y_dim, hidden_dim, out_dim, num_layers)
        self.self_attention = SelfAttention(out_dim, num_heads, attention_layers)
        self.embed_x = mlp(x_dim, hidden_dim, out_dim, 2)
        self.cross_attention = MultiheadAttention(out_dim, num_heads)

    def encode(self, x: Tensor, y: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
        """Keys [B, N, out_dim], values [B, N, out_dim] and mask of the set: computed once, then
        attended to by any number of query chunks."""
        values = self.self_attention(self.values(torch.cat([x, y], -1)), mask)
        return self.embed_x(x), values, mask

    def forward(self, queries: Tensor, encoded: tuple[Tensor, Tensor, Tensor | None]) -> Tensor:
        keys, values, mask = encoded
        return self.cross_attention(self.embed_x(queries), keys, values, mask)
