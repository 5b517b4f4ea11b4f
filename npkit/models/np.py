"""Neural Process (Garnelo et al. 2018b) with both paths, as in Kim et al. 2019."""

from npkit.models.base import LatentConfig, LatentPath, MeanPath, NeuralProcess


class NP(NeuralProcess):
    """Deterministic r = mean_i MLP([x_i, y_i]) and latent z ~ q(z | C); decoder MLP([x_t, r, z])."""

    name = "np"
    is_latent = True
    config_class = LatentConfig

    def build_deterministic(self, cfg: LatentConfig) -> MeanPath:
        return MeanPath(cfg)

    def build_latent(self, cfg: LatentConfig) -> LatentPath:
        return LatentPath(cfg)
