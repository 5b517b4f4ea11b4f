"""What every registered model is, whatever its interface: the contract of ``MODELS``."""

from __future__ import annotations

from typing import Any, ClassVar

from torch import nn

from npkit.options import ModelOptions


class Family(nn.Module):
    """A model family the registry, checkpoints and the CLI can build.

    A module with a registry ``name``, whether it has a latent variable (``is_latent``), and the
    config dataclass it is built from (``config_class``).

    Neural Processes (`NeuralProcess`: ``model(xc, yc, xt)`` -> a predictive distribution) are
    families; so are the set and image models (`NeuralStatistician`, `VAE`), which keep their own
    forward interfaces and objectives.

    Args:
        config: an instance of the class's ``config_class`` (None: built from ``options``).
        **options (Any): the fields of ``config_class`` as keywords, instead of ``config``
            (not both).
    """

    name: ClassVar[str]
    is_latent: ClassVar[bool]
    config_class: ClassVar[type[ModelOptions]]

    def __init__(self, config: ModelOptions | None = None, **options: Any) -> None:
        super().__init__()
        self.config = self.config_class.resolve(config, options, type(self).__name__)
