"""Transformer Neural Process, diagonal (TNP-D, Nguyen & Grover 2022).

Context tokens embed (x_i, y_i), target tokens (x_t, 0); a stack of post-norm transformer blocks
in which every token attends to the context tokens only, so the context is encoded without the
targets and each target independently of the others (the reference code's attention mask); a
per-target Gaussian head. As the context states of each block do not depend on the targets,
``encode`` runs the context through the stack once and keeps each block's input, and the
targets then pass through the blocks in any number of chunks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from npkit.models.anp import check_heads
from npkit.models.base import ModelConfig, NeuralProcess
from npkit.nn import mlp
from npkit.nn.attention import MultiheadAttention


@dataclass
class TNPConfig(ModelConfig):
    """Options of TNP-D: the fields of ModelConfig, read as the transformer's, plus its blocks.

    ``r_dim`` is the token width (the reference's d_model 64), ``hidden_dim`` the feed-forward
    width of each block and of the head (dim_feedforward 128), ``encoder_layers`` the token
    embedding MLP's layers (emb_depth 4), ``decoder_layers`` the head's (2).

    Attributes:
        transformer_layers: transformer blocks (the reference's 6).
        num_heads: attention heads of every block (4); must divide ``r_dim``.
    """

    transformer_layers: int = 6
    num_heads: int = 4

    POSITIVE: ClassVar[tuple[str, ...]] = (*ModelConfig.POSITIVE, "transformer_layers")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_heads(self)


class TransformerPath(nn.Module):
    """Target representations [B, Nt, r_dim] from the transformer stack over context and targets."""

    def __init__(self, cfg: TNPConfig) -> None:
        super().__init__()
        self.y_dim = cfg.y_dim
        self.embed = mlp(cfg.x_dim + cfg.y_dim, cfg.r_dim, cfg.r_dim, cfg.encoder_layers)
        self.blocks = nn.ModuleList(
            MultiheadAttention(cfg.r_dim, cfg.num_heads, cfg.hidden_dim) for _ in range(cfg.transformer_layers)
        )
        self.out_dim = cfg.r_dim

    def encode(self, xc: Tensor, yc: Tensor, mask: Tensor | None) -> tuple[list[Tensor], Tensor | None]:
        """The context tokens at the input of every block, each [B, Nc, r_dim], and the mask."""
        h, inputs = self.embed(torch.cat([xc, yc], -1)), []
        for block in self.blocks:
            inputs.append(h)
            h = block(h, h, h, mask)
        return inputs, mask

    def forward(self, xt: Tensor, encoded: tuple[list[Tensor], Tensor | None]) -> Tensor:
        inputs, mask = encoded
        t = self.embed(torch.cat([xt, xt.new_zeros(*xt.shape[:-1], self.y_dim)], -1))
        for block, context in zip(self.blocks, inputs):
            t = block(t, context, context, mask)
        return t


class TNPD(NeuralProcess):
    """Transformer NP, diagonal: p(y_t | x_t, C) = likelihood(head([x_t, T(x_t; C)])), T a transformer.

    Targets attend to the context only, so each is predicted independently; deterministic,
    registered as "tnpd".

    Args:
        config: a ``TNPConfig``: the fields of `ModelConfig` (``r_dim`` the token width,
            ``hidden_dim`` the feed-forward width, ``encoder_layers`` the token embedding's
            layers, ``decoder_layers`` the head's) plus ``transformer_layers`` (blocks, default
            6) and ``num_heads`` (default 4, dividing ``r_dim``). None: built from ``options``.
        **options (Any): the fields of ``TNPConfig`` as keywords, instead of ``config``.
    """

    name = "tnpd"
    is_latent = False
    config_class = TNPConfig

    def build_deterministic(self, cfg: TNPConfig) -> TransformerPath:
        return TransformerPath(cfg)
