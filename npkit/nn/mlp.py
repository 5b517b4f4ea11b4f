"""Multi-layer perceptrons applied point-wise to [..., in_dim] tensors."""

from __future__ import annotations

from torch import nn


def mlp(in_dim: int, hidden_dim: int, out_dim: int, num_layers: int) -> nn.Sequential:
    """``num_layers`` linear layers (>= 1) with ReLU between them: in -> hidden ... -> out."""
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if i < num_layers - 1:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)
