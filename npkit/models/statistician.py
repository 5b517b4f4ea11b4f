"""The Neural Statistician (Edwards & Storkey, 2017, section 3): a VAE over whole datasets.

Generative model of a dataset D = {x_1..x_N}: a context c ~ p(c) = N(0, I) shared by the
dataset, then per item a hierarchy z_L ~ p(z_L | c), z_i ~ p(z_i | z_{i+1}, c) and
x ~ p(x | z_1..z_L, c). Inference: the statistic network q(c | D) = N(mu, sigma)(post-pool(pool_i
e(x_i))) and q(z_L | x, c), q(z_i | z_{i+1}, x, c), all reading the shared instance encoder e(x).

Every network is an MLP whose input is the concatenation of its parents (the paper's figure 1);
the observation model sees every z and c (its skip connections). Latent layers are ordered as
they are generated: index 0 is the top layer z_L, index L - 1 is z_1. Shapes: x [B, N, x_dim],
mask [B, N] (True: the item is present); the ELBO lives in ``npkit.objectives.statistician_elbo``.

``normalization="batch"`` adds the batch normalisation of the public re-implementation
conormdurkan/neural-statistician (``spatial/spatialnets.py``), which keeps c informative on
spatial digits where the plain networks let q(c | D) collapse onto the prior.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal

from npkit.likelihoods import LIKELIHOODS, at_least_float32, build_likelihood
from npkit.models.family import Family
from npkit.nn import ACTIVATIONS, POOLINGS, mlp, pool
from npkit.options import ModelOptions, check_positive_ints

NORMALIZATIONS = ("none", "batch")


@dataclass
class StatisticianConfig(ModelOptions):
    """Sizes and choices of the Neural Statistician.

    Attributes:
        x_dim: features of an item of a set.
        hidden_dim: width of every network.
        c_dim: dimensions of the set's latent c (the statistic).
        z_dim: dimensions of each item latent z_i.
        num_stochastic_layers: layers of the z hierarchy.
        pooling: how the instance encodings of a set are pooled ("mean", as the paper).
        encoder_layers: layers of the instance encoder e(x) and of the post-pooling network.
        decoder_layers: layers of every latent network (prior and inference) and of the
            observation model.
        activation: the networks' nonlinearity (e.g. "relu").
        likelihood: the observation model ("gaussian" or "bernoulli").
        min_sigma: a gaussian observation model has std ``min_sigma + (1 - min_sigma) *
            softplus(raw)`` (npkit.likelihoods).
        latent_min_sigma: latent Gaussians have std ``latent_min_sigma + softplus(raw)``.
        normalization: "none" (plain MLPs) or "batch" (below).

    ``normalization``: ``"none"`` (plain MLPs) or ``"batch"``, the scheme of the re-implementation
    conormdurkan/neural-statistician (``spatial/spatialnets.py``): a BatchNorm1d after every linear
    layer of the instance encoder (over all points of all sets; its last layer too), after every
    hidden linear layer of the post-pooling network (over the sets), of the prior and inference
    networks of z and of the observation model (over all points), plus one single-channel
    BatchNorm1d(1, eps=1e-3, momentum=0.01) over all output parameters of each Gaussian head,
    q(c | D), q(z | ...) and p(z | ...). Masked items enter no statistics. In training the
    statistics are those of the batch, so q(c | D) of a set depends on the other sets of the batch
    (and training needs at least 2 sets per batch); in eval mode (``model.eval()``) running
    statistics are used and each set is encoded on its own, so evaluate in eval mode
    (``npkit.evaluation.statistician`` switches to it; calling the model directly does not).
    """

    x_dim: int = 1
    hidden_dim: int = 128
    c_dim: int = 3
    z_dim: int = 32
    num_stochastic_layers: int = 3
    pooling: str = "mean"
    encoder_layers: int = 3
    decoder_layers: int = 3
    activation: str = "relu"
    likelihood: str = "gaussian"
    min_sigma: float = 0.01
    latent_min_sigma: float = 0.001
    normalization: str = "none"

    POSITIVE: ClassVar[tuple[str, ...]] = (
        "x_dim",
        "hidden_dim",
        "c_dim",
        "z_dim",
        "num_stochastic_layers",
        "encoder_layers",
        "decoder_layers",
    )

    def __post_init__(self) -> None:
        check_positive_ints(self, self.POSITIVE)
        for name, value, choices in (
            ("pooling", self.pooling, tuple(POOLINGS)),
            ("activation", self.activation, tuple(ACTIVATIONS)),
            ("likelihood", self.likelihood, tuple(LIKELIHOODS)),
            ("normalization", self.normalization, NORMALIZATIONS),
        ):
            if value not in choices:
                raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
        if not 0.0 <= self.min_sigma < 1.0:
            raise ValueError(f"min_sigma must lie in [0, 1), got {self.min_sigma}")
        if not self.latent_min_sigma >= 0.0:
            raise ValueError(f"latent_min_sigma must be >= 0, got {self.latent_min_sigma}")


class StatisticianOutput(NamedTuple):
    """What the ELBO needs, for x [B, N, x_dim]: q(c | D) (batch [B], event [c_dim]) and its
    sample c [B, c_dim]; per latent layer, top (z_L) first, the inference q(z_i | ...) and the
    prior p(z_i | ...) (batch [B, N], event [z_dim]) and the sample z_i [B, N, z_dim] of q;
    the observation model p(x | z, c) (batch [B, N], event [x_dim])."""

    q_c: Distribution
    c: Tensor
    q_z: list[Distribution]
    p_z: list[Distribution]
    z: list[Tensor]
    p_x: Distribution


class Generated(NamedTuple):
    """Generated datasets: the observation model's means and one sample, both [B, M, x_dim]."""

    mean: Tensor
    sample: Tensor


def diagonal_gaussian(params: Tensor, min_sigma: float) -> Distribution:
    """params [..., 2 d] -> N(mu, (min_sigma + softplus(raw))^2), batch [...], event [d]."""
    mu, raw = at_least_float32(params).chunk(2, dim=-1)
    return Independent(Normal(mu, min_sigma + F.softplus(raw)), 1)


def per_item(c: Tensor, num_items: int) -> Tensor:
    """The dataset's context c [B, c_dim] repeated for each item -> [B, num_items, c_dim]."""
    return c.unsqueeze(1).expand(-1, num_items, -1)


class MaskedBatchNorm(nn.BatchNorm1d):
    """Batch normalisation of h [..., D] over all its leading positions (every point of every set,
    or every set) that ``mask`` [...] marks as present; ``num_features`` D normalises each feature,
    ``num_features`` 1 all D features as one channel (the reference's batch norm of a Gaussian's
    output parameters). In training the statistics, and the update of the running ones, use the
    present positions only; masked positions come out as 0. In eval mode every position is
    normalised by the running statistics and ``mask`` is ignored. -> [..., D]."""

    def forward(self, h: Tensor, mask: Tensor | None = None) -> Tensor:  # type: ignore[override]
        flat = h.reshape(-1, h.shape[-1])  # [P, D]
        if mask is None or not self.training:
            return super().forward(flat.reshape(-1, self.num_features)).reshape(h.shape)
        keep = mask.reshape(-1)
        present = flat[keep]  # [P', D]
        normed = super().forward(present.reshape(-1, self.num_features)).reshape(present.shape)
        return flat.new_zeros(flat.shape).index_put((keep,), normed).reshape(h.shape)


class MaskedSequential(nn.Sequential):
    """``nn.Sequential`` that hands ``mask`` to its `MaskedBatchNorm` layers:
    h [..., in] (mask [...] or None) -> [..., out]."""

    def forward(self, h: Tensor, mask: Tensor | None = None) -> Tensor:  # type: ignore[override]
        for layer in self:
            h = layer(h, mask) if isinstance(layer, MaskedBatchNorm) else layer(h)
        return h


def network(
    in_dim: int,
    hidden_dim: int,
    out_dim: int,
    num_layers: int,
    activation: str,
    normalization: str,
    last: str | None = None,
) -> MaskedSequential:
    """``npkit.nn.mlp`` (its modules and initialisation unchanged, so "none" is the plain MLP);
    with ``normalization="batch"`` a `MaskedBatchNorm` after every hidden linear layer and,
    by ``last``, after the output layer: ``"features"`` per output feature, ``"parameters"`` one
    channel over all outputs (BatchNorm1d(1, eps=1e-3, momentum=0.01), for a Gaussian head)."""
    layers = list(mlp(in_dim, hidden_dim, out_dim, num_layers, activation))
    if normalization == "none":
        return MaskedSequential(*layers)
    out: list[nn.Module] = []
    for layer in layers[:-1]:
        out.append(layer)
        if isinstance(layer, nn.Linear):
            out.append(MaskedBatchNorm(layer.out_features))
    out.append(layers[-1])
    if last == "features":
        out.append(MaskedBatchNorm(out_dim))
    elif last == "parameters":
        out.append(MaskedBatchNorm(1, eps=1e-3, momentum=0.01))
    return MaskedSequential(*out)


class NeuralStatistician(Family):
    """Statistic network, latent hierarchy and observation model of the Neural Statistician.

    Edwards & Storkey 2017, "Towards a Neural Statistician": a VAE over sets, with a latent c per
    set (q(c | D) from the pooled instance encodings) and a hierarchy of item latents z. Also
    ``build_model("statistician", **options)``.

    Args:
        config: a `StatisticianConfig` (None: built from ``options``).
        **options (Any): the fields of `StatisticianConfig` as keywords, instead of ``config``.
    """

    name: ClassVar[str] = "statistician"
    is_latent: ClassVar[bool] = True
    config_class: ClassVar[type[StatisticianConfig]] = StatisticianConfig

    def __init__(self, config: StatisticianConfig | None = None, **options) -> None:
        super().__init__(config, **options)
        cfg = self.config
        hidden, z_dim, c_dim = cfg.hidden_dim, cfg.z_dim, cfg.c_dim

        def net(in_dim: int, out_dim: int, num_layers: int, last: str | None = None) -> MaskedSequential:
            return network(in_dim, hidden, out_dim, num_layers, cfg.activation, cfg.normalization, last)

        self.likelihood = build_likelihood(cfg.likelihood, cfg.min_sigma)
        self.instance_encoder = net(cfg.x_dim, hidden, cfg.encoder_layers, "features")
        self.post_pooling = net(hidden, 2 * c_dim, cfg.encoder_layers, "parameters")
        above = [0] + [z_dim] * (cfg.num_stochastic_layers - 1)  # size of z_{i+1} feeding layer i, top first
        self.priors = nn.ModuleList(net(a + c_dim, 2 * z_dim, cfg.decoder_layers, "parameters") for a in above)
        self.inference = nn.ModuleList(
            net(hidden + a + c_dim, 2 * z_dim, cfg.decoder_layers, "parameters") for a in above
        )
        out_dim = self.likelihood.num_params(cfg.x_dim)
        observation_in = cfg.num_stochastic_layers * z_dim + c_dim
        self.observation = net(observation_in, out_dim, cfg.decoder_layers)

    def _check(self, x: Tensor, mask: Tensor | None) -> None:
        if x.dim() != 3 or x.shape[-1] != self.config.x_dim:
            raise ValueError(f"x must have shape [batch, n_items, {self.config.x_dim}], got {list(x.shape)}")
        if mask is not None and mask.shape != x.shape[:2]:
            raise ValueError(f"mask must have shape {list(x.shape[:2])}, got {list(mask.shape)}")

    def statistic(self, x: Tensor, mask: Tensor | None = None) -> Distribution:
        """q(c | D) for x [B, N, x_dim] (mask [B, N]): batch [B], event [c_dim]."""
        self._check(x, mask)
        return self._statistic(self.instance_encoder(x, mask), mask)

    def _statistic(self, encoded: Tensor, mask: Tensor | None) -> Distribution:
        pooled = pool(encoded, mask, self.config.pooling)  # [B, hidden]: normalised over the B sets
        return diagonal_gaussian(self.post_pooling(pooled), self.config.latent_min_sigma)

    def prior(self, layer: int, c_items: Tensor, z_above: Tensor | None, mask: Tensor | None = None) -> Distribution:
        """p(z_layer | z_above, c) with c_items [B, N, c_dim], z_above [B, N, z_dim] (None at the top);
        mask [B, N] keeps padded items out of batch statistics."""
        parents = c_items if z_above is None else torch.cat([z_above, c_items], -1)
        return diagonal_gaussian(self.priors[layer](parents, mask), self.config.latent_min_sigma)

    def posterior(
        self, layer: int, encoded: Tensor, c_items: Tensor, z_above: Tensor | None, mask: Tensor | None = None
    ) -> Distribution:
        """q(z_layer | z_above, x, c) with the encoded items [B, N, hidden_dim] (mask [B, N])."""
        parents = [encoded, c_items] if z_above is None else [encoded, z_above, c_items]
        params = self.inference[layer](torch.cat(parents, -1), mask)
        return diagonal_gaussian(params, self.config.latent_min_sigma)

    def observe(self, z: list[Tensor], c_items: Tensor, mask: Tensor | None = None) -> Distribution:
        """p(x | z_1..z_L, c) from every layer's z [B, N, z_dim] (mask [B, N]): batch [B, N], event [x_dim]."""
        return self.likelihood(self.observation(torch.cat([*z, c_items], -1), mask))

    def forward(self, x: Tensor, mask: Tensor | None = None) -> StatisticianOutput:
        """One reparameterised pass for the ELBO: c ~ q(c | D), then top-down z_i ~ q(z_i | z_{i+1}, x, c)
        with the matching priors p(z_i | z_{i+1}, c), then p(x | z, c). x [B, N, x_dim]."""
        self._check(x, mask)
        encoded = self.instance_encoder(x, mask)
        q_c = self._statistic(encoded, mask)
        c = q_c.rsample()
        c_items = per_item(c, x.shape[1])
        q_z, p_z, z = [], [], []
        z_above = None
        for layer in range(self.config.num_stochastic_layers):
            p_z.append(self.prior(layer, c_items, z_above, mask))
            q_z.append(self.posterior(layer, encoded, c_items, z_above, mask))
            z_above = q_z[-1].rsample()
            z.append(z_above)
        return StatisticianOutput(q_c, c, q_z, p_z, z, self.observe(z, c_items, mask))

    def generate_from(self, c: Tensor, num_items: int) -> Generated:
        """``num_items`` items per context c [B, c_dim] from the generative model -> [B, num_items, x_dim]."""
        c_items = per_item(c, num_items)
        z, z_above = [], None
        for layer in range(self.config.num_stochastic_layers):
            z_above = self.prior(layer, c_items, z_above).sample()
            z.append(z_above)
        p_x = self.observe(z, c_items)
        return Generated(p_x.mean, p_x.sample())

    def generate(self, x_given: Tensor, num_items: int, mask: Tensor | None = None) -> Generated:
        """Conditional generation: c = mean of q(c | x_given) (x_given [B, N, x_dim]), then z and x from
        the generative model -> means and a sample [B, num_items, x_dim]."""
        return self.generate_from(self.statistic(x_given, mask).mean, num_items)

    def sample_prior(self, num_datasets: int, num_items: int) -> Generated:
        """Unconditional datasets: c ~ N(0, I) -> means and a sample [num_datasets, num_items, x_dim]."""
        weight = self.post_pooling[0].weight
        c = torch.randn(num_datasets, self.config.c_dim, device=weight.device, dtype=weight.dtype)
        return self.generate_from(c, num_items)
