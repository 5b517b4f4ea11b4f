"""Does the reference's batch-normalised statistic network stop c collapsing on spatial digits?
(Run against the statistician.py of commit 39156e0; it subclasses its internals.)

    NPKIT_THREADS=1 nice -n 19 python benchmarks/results/statistician/batchnorm/bn_try.py VARIANT [STEPS]

VARIANT:
  base    npkit's statistician-digits model as is (hidden 64, c 16, z 8 x 2 layers), statistician_elbo
  bnpost  the same, but the post-pooling network is the reference's (spatialnets.py PostPool):
          BatchNorm1d over the B sets after every hidden linear layer, then a 'global'
          BatchNorm1d(1) over all 2*c_dim output parameters (batch statistics in training,
          running statistics in eval), as in conormdurkan/neural-statistician spatial/spatialnets.py
  bnall   bnpost + BatchNorm1d over the B*N points in the instance encoder (reference PrePool)
  refbn   bnall + BatchNorm1d over the points in every prior / inference / observation MLP and the
          global BatchNorm1d(1) on the prior and inference output parameters (reference
          InferenceNetwork, LatentDecoder, ObservationDecoder); npkit's per-point observation std
  bnlat   only the latent-side BN of refbn (prior / inference / observation MLPs, global BN on
          the z parameters); npkit's statistic network without BN
  refbn-px refbn + the reference observation model (one learned log variance per coordinate,
          clamped to [-4, 3]) and points in pixel units (x 8)
Everything else (data, ELBO, optimiser, schedule, seed) as tries.py.
"""

import os
import sys

import torch
from torch import nn
from torch.distributions import Independent, Normal

from npkit import fit
from npkit.data import make_sampler
from npkit.data.sets import SetBatch
from npkit.models.statistician import NeuralStatistician
from npkit.objectives import statistician_elbo
from npkit.statistician_eval import elbo_on, few_shot_accuracy

SIZES = dict(x_dim=2, hidden_dim=64, c_dim=16, z_dim=8, num_stochastic_layers=2)


class PointBN(nn.Module):
    """BatchNorm1d over every leading dim of [..., D] (the B*N points, or the B sets)."""

    def __init__(self, dim):
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)

    def forward(self, h):
        return self.bn(h.reshape(-1, h.shape[-1])).reshape(h.shape)


class GlobalBN(nn.Module):
    """The reference's 'global' batch norm: one BatchNorm1d(1) over all output params of all sets."""

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm1d(1, eps=1e-3, momentum=1e-2)

    def forward(self, h):
        return self.bn(h.reshape(-1, 1, h.shape[-1])).reshape(h.shape)


def bn_mlp(in_dim, hidden, out_dim, layers, final_bn=False):
    mods = []
    dims = [in_dim] + [hidden] * (layers - 1) + [out_dim]
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        mods.append(nn.Linear(a, b))
        if i < layers - 1:
            mods += [PointBN(b), nn.ReLU()]
    if final_bn:
        mods.append(PointBN(out_dim))
    return nn.Sequential(*mods)


class BNStatistician(NeuralStatistician):
    def __init__(self, bn_points=False, bn_latent=False, shared_sigma=False, **options):
        super().__init__(**options)
        cfg = self.config
        self.shared_sigma = shared_sigma
        if bn_latent:  # reference InferenceNetwork / LatentDecoder / ObservationDecoder: BN over the B*N points
            above = [0] + [cfg.z_dim] * (cfg.num_stochastic_layers - 1)
            h, z, c = cfg.hidden_dim, cfg.z_dim, cfg.c_dim
            self.priors = nn.ModuleList(
                nn.Sequential(bn_mlp(a + c, h, 2 * z, cfg.decoder_layers), GlobalBN()) for a in above
            )
            self.inference = nn.ModuleList(
                nn.Sequential(bn_mlp(h + a + c, h, 2 * z, cfg.decoder_layers), GlobalBN()) for a in above
            )
            self.observation = bn_mlp(
                cfg.num_stochastic_layers * z + c, h, self.likelihood.num_params(cfg.x_dim), cfg.decoder_layers
            )
        if shared_sigma:  # reference: one learned log variance per coordinate, clamped to [-4, 3] in the likelihood
            self.logvar = nn.Parameter(torch.randn(cfg.x_dim))
        self.post_pooling = nn.Sequential(
            bn_mlp(cfg.hidden_dim, cfg.hidden_dim, 2 * cfg.c_dim, cfg.encoder_layers), GlobalBN()
        )
        if bn_points:
            self.instance_encoder = bn_mlp(cfg.x_dim, cfg.hidden_dim, cfg.hidden_dim, cfg.encoder_layers, final_bn=True)

    def observe(self, z, c_items):
        if not self.shared_sigma:
            return super().observe(z, c_items)
        mean = self.observation(torch.cat([*z, c_items], -1))[..., : self.config.x_dim]
        std = torch.exp(0.5 * self.logvar.clamp(-4.0, 3.0)).expand_as(mean)
        return Independent(Normal(mean, std), 1)

    def sample_prior(self, num_datasets, num_items):  # post_pooling[-1] is not a Linear here
        c = torch.randn(num_datasets, self.config.c_dim)
        return self.generate_from(c, num_items)


class Scaled:
    """Point sets with every coordinate multiplied by ``scale`` (8: pixel units of the 8x8 digits)."""

    def __init__(self, sets, scale):
        self.sets, self.scale = sets, scale
        self.labels, self.source = sets.labels, sets.source

    def sample(self, batch_size, generator=None):
        out = self.sets.sample(batch_size, generator)
        return SetBatch(out.x * self.scale, out.labels, out.mask)

    def points_of(self, indices, generator=None):
        out = self.sets.points_of(indices, generator)
        return SetBatch(out.x * self.scale, out.labels, out.mask)


def main():
    variant = sys.argv[1]
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 4000
    torch.set_num_threads(1)
    seed = int(os.environ.get("SEED", 0))
    torch.manual_seed(seed)
    if variant == "base":
        model = NeuralStatistician(**SIZES)
    elif variant == "bnpost":
        model = BNStatistician(**SIZES)
    elif variant == "bnall":
        model = BNStatistician(bn_points=True, **SIZES)
    elif variant == "refbn":
        model = BNStatistician(bn_points=True, bn_latent=True, **SIZES)
    elif variant == "bnlat":
        model = BNStatistician(bn_latent=True, **SIZES)
    elif variant == "refbn-px":
        model = BNStatistician(bn_points=True, bn_latent=True, shared_sigma=True, **SIZES)
    else:
        raise SystemExit(f"unknown variant {variant}")
    train = make_sampler("spatial-digits", classes=[0, 1, 2, 3, 4], num_points=50)
    seen = make_sampler("spatial-digits", split="test", classes=[0, 1, 2, 3, 4], num_points=50)
    unseen = make_sampler("spatial-digits", split="test", classes=[5, 6, 7, 8, 9], num_points=50)
    if variant.endswith("-px"):  # pixel units, as the reference (which also flips rows; irrelevant here)
        train, seen, unseen = (Scaled(s, 8.0) for s in (train, seen, unseen))

    def report(step, model, output=None):
        if step and step % 1000 == 0:
            model.eval()
            terms = {k: round(x, 4) for k, x in elbo_on(model, seen, 256).items()}
            terms["kl_c_per_set"] = round(terms["kl_c"] * 50, 2)
            few = {
                name: {
                    k: round(r["accuracy"], 3) for k, r in few_shot_accuracy(model, s, episodes=100, seed=1234).items()
                }
                for name, s in (("seen", seen), ("unseen", unseen))
            }
            with torch.no_grad():
                g = torch.Generator().manual_seed(7)
                q = model.statistic(unseen.sample(256, g).x)
                spread = q.mean.std(0).mean().item()
                post_std = q.stddev.mean().item()
            model.train()
            print(variant, step, terms, few, f"c-mean spread {spread:.3f} post std {post_std:.3f}", flush=True)
        return {}

    fit(
        model,
        train,
        statistician_elbo,
        steps=steps,
        batch_size=16,
        lr=1e-3,
        schedule="cosine",
        progress=False,
        callbacks=[report],
        seed=seed,
    )


if __name__ == "__main__":
    main()
