"""Attentive Neural Process (Kim et al. 2019)."""

from dataclasses import dataclass

from torch import Tensor, nn

from npkit.models.base import LatentConfig, LatentPath, MeanPath, NeuralProcess
from npkit.nn import CrossAttentionEncoder


def check_attention(cfg) -> None:
    """attention_layers >= 0, num_heads >= 1 and dividing r_dim."""
    if isinstance(cfg.attention_layers, bool) or not isinstance(cfg.attention_layers, int) or cfg.attention_layers < 0:
        raise ValueError(f"attention_layers must be an integer >= 0, got {cfg.attention_layers!r}")
    check_heads(cfg)


def check_heads(cfg) -> None:
    """num_heads >= 1 and dividing r_dim."""
    if isinstance(cfg.num_heads, bool) or not isinstance(cfg.num_heads, int) or cfg.num_heads < 1:
        raise ValueError(f"num_heads must be a positive integer, got {cfg.num_heads!r}")
    if cfg.r_dim % cfg.num_heads:
        raise ValueError(f"r_dim ({cfg.r_dim}) must be divisible by num_heads ({cfg.num_heads})")


@dataclass
class ANPConfig(LatentConfig):
    """Options of the ANP: the fields of LatentConfig plus the attention sizes.

    Attributes:
        attention_layers: self-attention blocks of each path's set encoder (0: none).
        num_heads: heads of every attention layer; must divide ``r_dim``.
    """

    attention_layers: int = 2
    num_heads: int = 8

    def __post_init__(self) -> None:
        super().__post_init__()
        check_attention(self)


class AttentivePath(nn.Module):
    """Self-attention over the context, then multi-head cross-attention from each target:
    r_t = Attn(q = MLP(x_t), k = MLP(x_c), v = SelfAttn(MLP([x_c, y_c]))), [B, Nt, r_dim]."""

    def __init__(self, cfg: ANPConfig) -> None:
        super().__init__()
        self.encoder = CrossAttentionEncoder(
            cfg.x_dim, cfg.y_dim, cfg.hidden_dim, cfg.r_dim, cfg.encoder_layers, cfg.attention_layers, cfg.num_heads
        )
        self.out_dim = cfg.r_dim

    def encode(self, xc: Tensor, yc: Tensor, mask: Tensor | None):
        return self.encoder.encode(xc, yc, mask)

    def forward(self, xt: Tensor, encoded) -> Tensor:
        return self.encoder(xt, encoded)


class ANP(NeuralProcess):
    """Attentive Neural Process: self-attention on both paths, cross-attention from each target.

    The deterministic path attends from each target to the self-attended context (multi-head
    cross-attention); the latent path z ~ q(z | C) is the NP's with self-attention before the
    pooling. Registered as "anp".

    Args:
        config: an `ANPConfig` (None: built from ``options``).
        **options (Any): the fields of `ANPConfig` as keywords, instead of ``config``.
    """

    name = "anp"
    is_latent = True
    config_class = ANPConfig

    def build_deterministic(self, cfg: ANPConfig) -> AttentivePath:
        return AttentivePath(cfg)

    def build_latent(self, cfg: ANPConfig) -> LatentPath:
        return LatentPath(cfg, cfg.attention_layers, cfg.num_heads)

    def build_global_path(self, cfg: ANPConfig) -> MeanPath:
        return MeanPath(cfg, cfg.attention_layers, cfg.num_heads)
