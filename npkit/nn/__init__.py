"""Building blocks that take plain sizes: point-wise MLPs, set pooling, set encoders, attention,
initialisers. Every model family assembles itself from these."""

from npkit.nn.aggregation import POOLINGS, masked_max, masked_mean, masked_sum, pool
from npkit.nn.attention import MultiheadAttention, SelfAttention
from npkit.nn.encoders import CrossAttentionEncoder, SetEncoder
from npkit.nn.init import INITS, init_weights
from npkit.nn.mlp import ACTIVATIONS, mlp

__all__ = [
    "ACTIVATIONS",
    "INITS",
    "POOLINGS",
    "CrossAttentionEncoder",
    "MultiheadAttention",
    "SelfAttention",
    "SetEncoder",
    "init_weights",
    "masked_max",
    "masked_mean",
    "masked_sum",
    "mlp",
    "pool",
]
