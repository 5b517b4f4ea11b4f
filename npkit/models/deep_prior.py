"""Deep Prior (Lacoste et al. 2018): a latent z_j per task with prior N(0, I), a shared network
p(y | x, z) with heteroscedastic Gaussian noise, and an amortised posterior q(z | S_j) from a set
encoder, optionally made richer by normalising flows from Pyro.

Posterior variants (``posterior``):

- ``"standard"``: Gaussian q trained without the reparameterisation gradient: z is sampled with
  no path back to q, and ``npkit.objectives.elbo`` gives q the score-function (REINFORCE)
  gradient of the expected log-likelihood with a leave-one-out baseline (the KL to N(0, I) is
  analytic, so its gradient is exact);
- ``"gaussian"``: the same Gaussian, reparameterised;
- ``"planar"``: the Gaussian followed by ``flow_steps`` planar flows (Rezende & Mohamed 2015);
- ``"iaf"``: the Gaussian followed by ``flow_steps`` affine inverse-autoregressive steps (Kingma
  et al. 2016), each followed by a fixed permutation of the dimensions.

Both flows are Pyro's conditional transforms (``pyro.distributions.transforms``), their
parameters computed from the set's summary s, so each task gets its own flow; the ELBO's KL is
then the Monte-Carlo estimate log q(z) - log p(z), where log q includes the flow's
log-determinant. Train with ``elbo`` and ``prior="fixed"`` (configs/deep-prior-sine.yaml).
Prediction marginalises z by sampling, as for every latent model: ``model(xc, yc, xt, num_samples=S)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Size, Tensor, nn
from torch.distributions import Distribution, Independent, TransformedDistribution

from npkit.models.base import LatentConfig, LatentPath, NeuralProcess

POSTERIORS = ("standard", "gaussian", "planar", "iaf")


@dataclass
class DeepPriorConfig(LatentConfig):
    """Options of the Deep Prior: the fields of LatentConfig plus the posterior variant.

    Defaults differ from `LatentConfig` in the latent std: softplus with a small floor
    (the prior N(0, I), not a floor, keeps q spread).

    Attributes:
        posterior: "standard" (Gaussian, score-function gradient), "gaussian"
            (reparameterised), "planar" or "iaf" (the Gaussian through flows); see the module
            docstring.
        flow_steps: planar or IAF steps of the flow posteriors.
        latent_sigma: as in `LatentConfig`; default "softplus" here.
        latent_min_sigma: as in `LatentConfig`; default 1e-3 here.
    """

    posterior: str = "gaussian"
    flow_steps: int = 4
    latent_sigma: str = "softplus"
    latent_min_sigma: float = 1e-3

    POSITIVE: ClassVar[tuple[str, ...]] = (*LatentConfig.POSITIVE, "flow_steps")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.posterior not in POSTERIORS:
            raise ValueError(f"posterior must be one of {list(POSTERIORS)}, got {self.posterior!r}")


class NotReparameterised(Independent):
    """A factorised distribution whose samples carry no gradient: ``rsample`` returns ``sample``
    and ``has_rsample`` is False, which tells the objectives to use the score-function gradient."""

    has_rsample = False

    def rsample(self, sample_shape: Size | tuple[int, ...] = ()) -> Tensor:
        return self.sample(sample_shape)


class FlowPosterior(LatentPath):
    """q(z | S): the latent path's Gaussian N(mu(s), sigma(s)) pushed through ``flow_steps``
    conditional flows whose parameters are functions of the set's summary s [B, r_dim]."""

    def __init__(self, cfg: DeepPriorConfig) -> None:
        from pyro.distributions.transforms import conditional_affine_autoregressive, conditional_planar

        super().__init__(cfg)
        self.kind = cfg.posterior
        steps, z, r = cfg.flow_steps, cfg.z_dim, cfg.r_dim
        if self.kind == "planar":
            self.flows = nn.ModuleList(conditional_planar(z, r, hidden_dims=[cfg.hidden_dim]) for _ in range(steps))
        elif self.kind == "iaf":
            self.flows = nn.ModuleList(
                conditional_affine_autoregressive(z, r, hidden_dims=[cfg.hidden_dim, cfg.hidden_dim])
                for _ in range(steps)
            )
            # reverse the order between steps so every dimension is conditioned on every other one
            self.register_buffer("reverse", torch.arange(z - 1, -1, -1), persistent=False)
        else:
            self.flows = nn.ModuleList()

    def forward(self, x: Tensor, y: Tensor, mask: Tensor | None) -> Distribution:
        s = self.summary(x, y, mask)
        base = self.gaussian(s)
        if self.kind == "standard":
            return NotReparameterised(base.base_dist, 1)
        if not self.flows:
            return base
        from pyro.distributions.transforms import Permute

        transforms = []
        for i, flow in enumerate(self.flows):
            transforms.append(flow.condition(s.to(base.mean.dtype)))
            if self.kind == "iaf" and i < len(self.flows) - 1:
                transforms.append(Permute(self.reverse))
        return TransformedDistribution(base, transforms)


class DeepPrior(NeuralProcess):
    """Deep Prior: z ~ q(z | S) (optionally through flows), p(y_t | x_t, z) from one MLP.

    No deterministic path, as in the paper; train with ``elbo`` and ``prior="fixed"``.
    Registered as "deep_prior".

    Args:
        config: a `DeepPriorConfig` (None: built from ``options``).
        **options (Any): the fields of `DeepPriorConfig` as keywords, instead of
            ``config``.
    """

    name = "deep_prior"
    is_latent = True
    config_class = DeepPriorConfig

    def build_latent(self, cfg: DeepPriorConfig) -> FlowPosterior:
        return FlowPosterior(cfg)
