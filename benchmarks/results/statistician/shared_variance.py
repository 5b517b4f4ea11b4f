"""statistician-digits with the observation model of the public spatial-MNIST re-implementation: one
learned std shared by every point (instead of a std predicted per point), z of 2 dims in 3 layers,
gradient clipping; coordinates in the unit square ("shared") or in pixel units ("shared-px").

    NPKIT_THREADS=1 python benchmarks/results/statistician/shared_variance.py shared|shared-px 8000

Prints the held-out ELBO terms (per item), the learned std and the few-shot accuracies every
2,000 steps; the logs of the two runs are beside this file (docs/statistician.md).
"""

import sys

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Independent, Normal

from npkit import fit
from npkit.data import make_sampler
from npkit.data.sets import SetBatch
from npkit.models.statistician import NeuralStatistician
from npkit.objectives import statistician_elbo
from npkit.statistician_eval import elbo_on, few_shot_accuracy


class SharedStd(NeuralStatistician):
    """p(x | z, c) = N(mean(z, c), sigma^2 I) with one learned sigma per coordinate."""

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.raw_sigma = nn.Parameter(torch.zeros(self.config.x_dim))

    def observe(self, z, c_items):
        mean = self.observation(torch.cat([*z, c_items], -1))[..., : self.config.x_dim]
        return Independent(Normal(mean, 1e-3 + F.softplus(self.raw_sigma).expand_as(mean)), 1)


class Scaled:
    """Point sets with every coordinate multiplied by ``scale`` (8: pixel units of the 8x8 digits)."""

    def __init__(self, sets, scale: float) -> None:
        self.sets, self.scale = sets, scale
        self.labels, self.source = sets.labels, sets.source

    def sample(self, batch_size, generator=None):
        out = self.sets.sample(batch_size, generator)
        return SetBatch(out.x * self.scale, out.labels, out.mask)

    def points_of(self, indices, generator):
        out = self.sets.points_of(indices, generator)
        return SetBatch(out.x * self.scale, out.labels, out.mask)


def main() -> None:
    variant, steps = sys.argv[1], int(sys.argv[2])
    scale = 8.0 if variant == "shared-px" else 1.0
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = SharedStd(x_dim=2, hidden_dim=64, c_dim=16, z_dim=2, num_stochastic_layers=3)
    sets = {
        name: Scaled(make_sampler("spatial-digits", split=split, classes=classes, num_points=50), scale)
        for name, split, classes in (
            ("train", "train", [0, 1, 2, 3, 4]),
            ("seen", "test", [0, 1, 2, 3, 4]),
            ("unseen", "test", [5, 6, 7, 8, 9]),
        )
    }

    def report(step, model, output=None):
        if step and step % 2000 == 0:
            model.eval()
            terms = {k: round(x, 4) for k, x in elbo_on(model, sets["seen"], 256).items()}
            few_shot = {
                name: {
                    k: round(r["accuracy"], 3)
                    for k, r in few_shot_accuracy(model, sets[name], episodes=100, seed=1234).items()
                }
                for name in ("seen", "unseen")
            }
            model.train()
            print(variant, step, terms, "sigma", F.softplus(model.raw_sigma).tolist(), few_shot, flush=True)
        return {}

    fit(
        model,
        sets["train"],
        statistician_elbo,
        steps=steps,
        batch_size=16,
        lr=1e-3,
        schedule="cosine",
        grad_clip=10.0,
        progress=False,
        callbacks=[report],
        seed=0,
    )


if __name__ == "__main__":
    main()
