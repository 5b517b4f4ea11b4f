"""Latent CNP: a CNP whose representation is a random variable z, sampled once per function."""

from npkit.models.base import LatentConfig, LatentPath, NeuralProcess


class LatentCNP(NeuralProcess):
    """z ~ N(mu(r), sigma(r)) with r = mean_i MLP([x_i, y_i]); p(y_t | x_t, z) = likelihood(MLP([x_t, z]))."""

    name = "lnp"
    is_latent = True
    config_class = LatentConfig

    def build_latent(self, cfg: LatentConfig) -> LatentPath:
        return LatentPath(cfg)
