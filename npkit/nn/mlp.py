"""Multi-layer perceptrons applied point-wise to [..., in_dim] tensors."""

from __future__ import annotations

from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "gelu": nn.GELU}


def mlp(in_dim: int, hidden_dim: int, out_dim: int, num_layers: int, activation: str = "relu") -> nn.Sequential:
    """``num_layers`` linear layers (>= 1) with ``activation`` (a name in ``ACTIVATIONS``) between
    them: in -> hidden ... -> out."""
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; expected one of {list(ACTIVATIONS)}")
    dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if i < num_layers - 1:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)
