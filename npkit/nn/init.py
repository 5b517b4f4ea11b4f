"""Weight initialisation schemes, selectable per model (posterior-collapse studies depend on it)."""

from __future__ import annotations

from torch import nn

INITS = ("default", "normal", "normal_weights", "xavier_normal")


def init_weights(module: nn.Module, scheme: str = "default", std: float = 0.1) -> None:
    """Re-initialise every ``nn.Linear`` of ``module``.

    default: PyTorch's own (Kaiming-uniform); normal: N(0, std^2) weights, zero biases;
    normal_weights: N(0, std^2) weights, PyTorch's default biases (what ``nn.init.normal_`` on
    each layer's weight alone gives); xavier_normal: Glorot-normal weights, zero biases.
    """
    if scheme not in INITS:
        raise ValueError(f"unknown init scheme {scheme!r}; expected one of {list(INITS)}")
    if scheme == "default":
        return
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            if scheme == "xavier_normal":
                nn.init.xavier_normal_(layer.weight)
            else:
                nn.init.normal_(layer.weight, std=std)
            if layer.bias is not None and scheme != "normal_weights":
                nn.init.zeros_(layer.bias)
