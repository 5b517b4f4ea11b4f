"""The Neural Process family behind one interface; ``build_model(name, **options)``."""

from __future__ import annotations

from npkit.models.anp import ANP
from npkit.models.base import ModelConfig, NeuralProcess, mixture_over_samples
from npkit.models.cnp import CNP
from npkit.models.lnp import LatentCNP
from npkit.models.np import NP

MODELS: dict[str, type[NeuralProcess]] = {m.name: m for m in (CNP, LatentCNP, NP, ANP)}


def build_model(name: str, **options) -> NeuralProcess:
    """Build model ``name`` (one of ``MODELS``) with ``ModelConfig`` options."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(MODELS)}")
    return MODELS[name](**options)


__all__ = [
    "ANP",
    "CNP",
    "MODELS",
    "NP",
    "LatentCNP",
    "ModelConfig",
    "NeuralProcess",
    "build_model",
    "mixture_over_samples",
]
