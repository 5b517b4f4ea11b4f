"""Latent CNP: a CNP whose representation is a random variable z, sampled once per function."""

from npkit.models.base import LatentConfig, LatentPath, NeuralProcess


class LatentCNP(NeuralProcess):
    """Latent CNP: z ~ N(mu(r), sigma(r)), r = mean_i MLP([x_i, y_i]); p(y_t | x_t, z) = likelihood(MLP([x_t, z])).

    Latent, with no deterministic path; registered as "lnp".

    Args:
        config: a `LatentConfig` (None: built from ``options``).
        **options (Any): the fields of `LatentConfig` as keywords, instead of ``config``.
    """

    name = "lnp"
    is_latent = True
    config_class = LatentConfig

    def build_latent(self, cfg: LatentConfig) -> LatentPath:
        return LatentPath(cfg)
