"""Conditional Neural Process (Garnelo et al. 2018a): mean-pooled encoder, Gaussian decoder."""

from npkit.models.base import MeanEncoder, ModelConfig, NeuralProcess


class CNP(NeuralProcess):
    """p(y_t | x_t, C) = N(mu, sigma)(MLP([x_t, r])), r = mean_i MLP([x_i, y_i])."""

    name = "cnp"
    is_latent = False

    def build_deterministic(self, cfg: ModelConfig) -> MeanEncoder:
        return MeanEncoder(cfg)
