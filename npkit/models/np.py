"""Neural Process (Garnelo et al. 2018b) with both paths, as in Kim et al. 2019."""

from npkit.models.base import LatentConfig, LatentPath, MeanPath, NeuralProcess


class NP(NeuralProcess):
    """Neural Process: deterministic r = mean_i MLP([x_i, y_i]) and latent z ~ q(z | C); decoder MLP([x_t, r, z]).

    Latent: predictions have a leading sample axis, batch `[num_samples, batch, n_target]`;
    train with ``elbo``, ``ml`` or ``iwae``. Registered as "np".

    Args:
        config: a `LatentConfig` (None: built from ``options``).
        **options (Any): the fields of `LatentConfig` as keywords, instead of ``config``.

    Examples:
        >>> model = npkit.NP(z_dim=64)
        >>> pred = model(xc, yc, xt, num_samples=16)   # batch [16, batch, n_target]
    """

    name = "np"
    is_latent = True
    config_class = LatentConfig

    def build_deterministic(self, cfg: LatentConfig) -> MeanPath:
        return MeanPath(cfg)

    def build_latent(self, cfg: LatentConfig) -> LatentPath:
        return LatentPath(cfg)
