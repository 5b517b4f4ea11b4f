"""Building blocks: point-wise MLPs, set pooling, attention, initialisers."""

from npkit.nn.aggregation import masked_mean
from npkit.nn.attention import MultiheadAttention, SelfAttention
from npkit.nn.init import INITS, init_weights
from npkit.nn.mlp import mlp

__all__ = ["INITS", "MultiheadAttention", "SelfAttention", "init_weights", "masked_mean", "mlp"]
