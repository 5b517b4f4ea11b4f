"""Conditional Neural Process (Garnelo et al. 2018a): mean-pooled encoder, Gaussian decoder."""

from npkit.models.base import MeanPath, ModelConfig, NeuralProcess


class CNP(NeuralProcess):
    """p(y_t | x_t, C) = likelihood(MLP([x_t, r])), r = mean_i MLP([x_i, y_i])."""

    name = "cnp"
    is_latent = False
    config_class = ModelConfig

    def build_deterministic(self, cfg: ModelConfig) -> MeanPath:
        return MeanPath(cfg)
