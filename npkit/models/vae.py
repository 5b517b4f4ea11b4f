"""The variational autoencoder (Kingma & Welling, 2014), optionally conditional on a label.

Generative model of one item x [x_dim]: z ~ p(z) = N(0, I), x ~ p(x | z) (Bernoulli logits or a
Gaussian from an MLP decoder). Inference: q(z | x) = N(mu(x), sigma(x)) from an MLP encoder.
With ``num_classes > 0`` (a conditional VAE) encoder and decoder also read the label's one-hot
vector. Shapes: x [B, x_dim], labels [B] int64, z [S, B, z_dim]; the objectives are
``npkit.objectives.vae_elbo`` (training) and ``importance_log_likelihood`` (evaluation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Distribution, Independent, Normal

from npkit.likelihoods import LIKELIHOODS, build_likelihood
from npkit.models.base import check_num_samples
from npkit.models.family import Family
from npkit.models.statistician import diagonal_gaussian
from npkit.nn import ACTIVATIONS, mlp
from npkit.options import ModelOptions, check_positive_ints


@dataclass
class VAEConfig(ModelOptions):
    """Sizes and choices of the VAE.

    Attributes:
        x_dim: dimension of one item x (784: a flattened 28 x 28 image).
        hidden_dim: width of the hidden layers of the encoder and decoder MLPs.
        z_dim: dimension of the latent variable z.
        layers: linear layers of the encoder and of the decoder MLP (1: linear maps).
        activation: activation between layers: "relu", "sigmoid", "tanh" or "gelu".
        likelihood: p(x | z), a key of ``npkit.LIKELIHOODS``; "bernoulli" needs x in {0, 1}.
        min_sigma: floor of the std of a continuous p(x | z), in [0, 1):
            ``min_sigma + (1 - min_sigma) * softplus(raw)``.
        latent_min_sigma: floor of the std of q(z | x): ``latent_min_sigma + softplus(raw)``.
        beta: weight of the KL term of `vae_elbo`.
        num_classes: labels of a conditional VAE, whose encoder and decoder read the label's
            one-hot vector (0: unconditional).
    """

    x_dim: int = 784
    hidden_dim: int = 256
    z_dim: int = 16
    layers: int = 2
    activation: str = "relu"
    likelihood: str = "bernoulli"
    min_sigma: float = 0.01
    latent_min_sigma: float = 0.001
    beta: float = 1.0
    num_classes: int = 0

    POSITIVE: ClassVar[tuple[str, ...]] = ("x_dim", "hidden_dim", "z_dim", "layers")

    def __post_init__(self) -> None:
        check_positive_ints(self, self.POSITIVE)
        for name, value, choices in (
            ("activation", self.activation, tuple(ACTIVATIONS)),
            ("likelihood", self.likelihood, tuple(LIKELIHOODS)),
        ):
            if value not in choices:
                raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
        if not 0.0 <= self.min_sigma < 1.0:
            raise ValueError(f"min_sigma must lie in [0, 1), got {self.min_sigma}")
        if not self.latent_min_sigma >= 0.0:
            raise ValueError(f"latent_min_sigma must be >= 0, got {self.latent_min_sigma}")
        if not self.beta >= 0.0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or self.num_classes < 0:
            raise ValueError(f"num_classes must be an integer >= 0 (0: unconditional), got {self.num_classes!r}")


class VAEOutput(NamedTuple):
    """What the ELBO needs, for x [B, x_dim]: q(z | x) (batch [B], event [z_dim]), its samples
    z [S, B, z_dim] and p(x | z) (batch [S, B], event [x_dim])."""

    q_z: Distribution
    z: Tensor
    p_x: Distribution


class VAE(Family):
    """Variational autoencoder: Gaussian encoder q(z | x), decoder p(x | z) and prior N(0, I).

    Items are x `[batch, x_dim]` (labels `[batch]` int64 for a conditional VAE); train with
    `vae_elbo`, evaluate with `importance_log_likelihood`. Registered as "vae".

    Args:
        config: a `VAEConfig` (None: built from ``options``).
        **options (Any): the fields of `VAEConfig` as keywords, instead of ``config``.

    Examples:
        >>> vae = npkit.VAE(x_dim=64, z_dim=8, likelihood="bernoulli")
        >>> images = vae.sample(16).mean      # [16, 64]
    """

    name: ClassVar[str] = "vae"
    is_latent: ClassVar[bool] = True
    config_class: ClassVar[type[VAEConfig]] = VAEConfig

    def __init__(self, config: VAEConfig | None = None, **options) -> None:
        super().__init__(config, **options)
        cfg = self.config
        self.likelihood = build_likelihood(cfg.likelihood, cfg.min_sigma)
        k = cfg.num_classes
        self.encoder = mlp(cfg.x_dim + k, cfg.hidden_dim, 2 * cfg.z_dim, cfg.layers, cfg.activation)
        out_dim = self.likelihood.num_params(cfg.x_dim)
        self.decoder = mlp(cfg.z_dim + k, cfg.hidden_dim, out_dim, cfg.layers, cfg.activation)

    def _with_labels(self, h: Tensor, labels: Tensor | None) -> Tensor:
        """h [..., B, D] with the one-hot labels [B] appended for a conditional VAE -> [..., B, D + K]."""
        k = self.config.num_classes
        if k == 0:
            if labels is not None:
                raise ValueError("labels were given, but this VAE is unconditional (num_classes=0)")
            return h
        if labels is None or labels.shape != h.shape[-2:-1] or labels.dtype != torch.int64:
            got = "None" if labels is None else f"{list(labels.shape)} {labels.dtype}"
            raise ValueError(f"labels must be int64 of shape [{h.shape[-2]}] for this conditional VAE, got {got}")
        if labels.min() < 0 or labels.max() >= k:
            got = f"[{labels.min().item()}, {labels.max().item()}]"
            raise ValueError(f"labels must lie in [0, {k}) (num_classes={k}), got values in {got}")
        one_hot = F.one_hot(labels, k).to(h.dtype).expand(*h.shape[:-1], k)
        return torch.cat([h, one_hot], -1)

    def _check_x(self, x: Tensor) -> None:
        if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[-1] != self.config.x_dim:
            shape = list(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must have shape [batch, {self.config.x_dim}], got {shape}")

    def encode(self, x: Tensor, labels: Tensor | None = None) -> Distribution:
        """q(z | x) for x [B, x_dim]: batch [B], event [z_dim]."""
        self._check_x(x)
        return diagonal_gaussian(self.encoder(self._with_labels(x, labels)), self.config.latent_min_sigma)

    def decode(self, z: Tensor, labels: Tensor | None = None) -> Distribution:
        """p(x | z) for z [..., B, z_dim]: batch [..., B], event [x_dim]."""
        if z.dim() < 2 or z.shape[-1] != self.config.z_dim:
            raise ValueError(f"z must have shape [..., batch, {self.config.z_dim}], got {list(z.shape)}")
        return self.likelihood(self.decoder(self._with_labels(z, labels)))

    def prior(self, batch_size: int) -> Distribution:
        """p(z) = N(0, I): batch [batch_size], event [z_dim]."""
        weight = self.decoder[0].weight
        loc = torch.zeros(batch_size, self.config.z_dim, device=weight.device, dtype=weight.dtype)
        return Independent(Normal(loc, torch.ones_like(loc)), 1)

    def forward(self, x: Tensor, labels: Tensor | None = None, num_samples: int = 1) -> VAEOutput:
        """One reparameterised pass for the ELBO: z_s ~ q(z | x), s = 1..num_samples, then p(x | z_s)."""
        q_z = self.encode(x, labels)
        z = q_z.rsample((check_num_samples(num_samples),))
        return VAEOutput(q_z, z, self.decode(z, labels))

    def sample(self, n: int, labels: Tensor | None = None) -> Distribution:
        """p(x | z) for n draws z ~ N(0, I) (labels [n] for a conditional VAE): batch [n], event
        [x_dim]; ``.mean`` are the decoded images, ``.sample()`` pixels drawn from them."""
        return self.decode(self.prior(check_num_samples(n)).sample(), labels)

    def reconstruct(self, x: Tensor, labels: Tensor | None = None) -> Distribution:
        """p(x | z = mean of q(z | x)) for x [B, x_dim]: batch [B], event [x_dim]."""
        return self.decode(self.encode(x, labels).mean, labels)
