"""Conditional Neural Process (Garnelo et al. 2018a): mean-pooled encoder, Gaussian decoder."""

from npkit.models.base import MeanPath, ModelConfig, NeuralProcess


class CNP(NeuralProcess):
    """Conditional Neural Process: p(y_t | x_t, C) = likelihood(MLP([x_t, r])), r = mean_i MLP([x_i, y_i]).

    Deterministic: every target is predicted independently given the context; train with
    ``nll``. Registered as "cnp".

    Args:
        config: a `ModelConfig` (None: built from ``options``).
        **options (Any): the fields of `ModelConfig` as keywords, instead of ``config``.

    Examples:
        >>> model = npkit.CNP(hidden_dim=64, r_dim=64)
        >>> pred = model(xc, yc, xt)       # batch [batch, n_target], event [y_dim]
    """

    name = "cnp"
    is_latent = False
    config_class = ModelConfig

    def build_deterministic(self, cfg: ModelConfig) -> MeanPath:
        return MeanPath(cfg)
