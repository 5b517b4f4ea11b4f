"""The Neural Process family behind one interface; ``build_model(name, **options)``.

A new family is one file on the base's seams plus one line in ``MODELS`` below (or a call to
``register_model`` from user code); checkpoints save and load every registered family.
"""

from __future__ import annotations

from npkit.models.anp import ANP, ANPConfig
from npkit.models.base import LatentConfig, ModelConfig, NeuralProcess
from npkit.models.canp import CANP, CANPConfig
from npkit.models.cnp import CNP
from npkit.models.convcnp import ConvCNP, ConvCNPConfig
from npkit.models.deep_prior import DeepPrior, DeepPriorConfig
from npkit.models.family import Family
from npkit.models.lnp import LatentCNP
from npkit.models.np import NP
from npkit.models.statistician import NeuralStatistician, StatisticianConfig
from npkit.models.tnp import TNPD, TNPConfig
from npkit.models.vae import VAE, VAEConfig

MODELS: dict[str, type[Family]] = {m.name: m for m in (CNP, CANP, ConvCNP, LatentCNP, NP, ANP, TNPD, DeepPrior)}


def register_model(cls: type[Family]) -> type[Family]:
    """Add a model family to ``MODELS`` under ``cls.name``; usable as a class decorator.

    A registered family builds with `build_model`, trains from run configs and saves and
    loads with `npkit.save_model` / `npkit.load_model`. Registering the same class
    again is a no-op.

    Args:
        cls: a `NeuralProcess` subclass with a ``name``, ``is_latent`` and
            ``config_class``.

    Returns:
        ``cls`` itself.

    Raises:
        ValueError: another class is registered under ``cls.name``.

    Examples:
        >>> @npkit.register_model
        ... class MyCNP(npkit.CNP):
        ...     name = "my_cnp"
        >>> model = npkit.build_model("my_cnp", hidden_dim=64)
    """
    if cls.name in MODELS and MODELS[cls.name] is not cls:
        raise ValueError(f"a model named {cls.name!r} is already registered ({MODELS[cls.name].__name__})")
    MODELS[cls.name] = cls
    return cls


def build_model(name: str, **options) -> Family:
    """Build the model family ``name`` with the options of its config class.

    Args:
        name: a key of ``npkit.MODELS``: "cnp", "canp", "convcnp", "tnpd", "lnp", "np",
            "anp", "deep_prior", "statistician", "vae" or a family added by
            `register_model`.
        **options (Any): fields of the family's config class (``config_class``, e.g.
            `ModelConfig` for "cnp", `ANPConfig` for "anp"); unknown names and
            wrongly typed values raise a ``ValueError``.

    Returns:
        The new model, with freshly initialised parameters.

    Examples:
        >>> model = npkit.build_model("anp", hidden_dim=64, r_dim=64, num_heads=4)
        >>> model.config.hidden_dim
        64
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(MODELS)}")
    return MODELS[name](**options)


register_model(NeuralStatistician)
register_model(VAE)


__all__ = [
    "ANP",
    "Family",
    "CANP",
    "CANPConfig",
    "CNP",
    "ConvCNP",
    "ConvCNPConfig",
    "DeepPrior",
    "DeepPriorConfig",
    "MODELS",
    "NP",
    "ANPConfig",
    "LatentCNP",
    "LatentConfig",
    "ModelConfig",
    "NeuralProcess",
    "NeuralStatistician",
    "StatisticianConfig",
    "TNPConfig",
    "TNPD",
    "VAE",
    "VAEConfig",
    "build_model",
    "register_model",
]
