"""Weight initialisation schemes, selectable per model (posterior-collapse studies depend on it)."""

from __future__ import annotations

from torch import nn

INITS = ("default", "normal", "xavier_normal")


def init_weights(module: nn.Module, scheme: str = "default", std: float = 0.1) -> None:
    """Re-initialise every ``nn.Linear`` of ``module``.

    default: PyTorch's own (Kaiming-uniform); normal: N(0, std^2) weights, zero biases;
    xavier_normal: Glorot-normal weights, zero biases.
    """
    if scheme not in INITS:
        raise ValueError(f"unknown init scheme {scheme!r}; expected one of {list(INITS)}")
    if scheme == "default":
        return
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            if scheme == "normal":
                nn.init.normal_(layer.weight, std=std)
            else:
                nn.init.xavier_normal_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
