"""Attentive Conditional Neural Process: the ANP's deterministic path without the latent one
(Kim et al. 2019's "attentive CNP"; the TNP reference code adds a self-attentive pooled path
beside it: ``global_paths=1``)."""

from dataclasses import dataclass

from npkit.models.anp import AttentivePath, check_attention
from npkit.models.base import MeanPath, ModelConfig, NeuralProcess


@dataclass
class CANPConfig(ModelConfig):
    """Options of the attentive CNP: the fields of ModelConfig plus the attention sizes of the ANP.

    Attributes:
        attention_layers: self-attention blocks of the context encoder (0: none).
        num_heads: heads of every attention layer; must divide ``r_dim``.
    """

    attention_layers: int = 2
    num_heads: int = 8

    def __post_init__(self) -> None:
        super().__post_init__()
        check_attention(self)


class CANP(NeuralProcess):
    """Attentive CNP: r_t = cross-attention from each target to the self-attended context; p(y_t | x_t, r_t).

    Deterministic (the ANP without its latent path); registered as "canp".

    Args:
        config: a ``CANPConfig``: the fields of `ModelConfig` plus ``attention_layers``
            (self-attention blocks, default 2) and ``num_heads`` (default 8, dividing
            ``r_dim``). None: built from ``options``.
        **options (Any): the fields of ``CANPConfig`` as keywords, instead of ``config``.
    """

    name = "canp"
    is_latent = False
    config_class = CANPConfig

    def build_deterministic(self, cfg: CANPConfig) -> AttentivePath:
        return AttentivePath(cfg)

    def build_global_path(self, cfg: CANPConfig) -> MeanPath:
        return MeanPath(cfg, cfg.attention_layers, cfg.num_heads)
