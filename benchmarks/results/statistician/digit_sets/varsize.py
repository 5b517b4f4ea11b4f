"""Not a preset: the statistician-digit-sets model trained on sets of LOW..5 images of digits 0-4
(one size drawn per batch, so that a query, a set of one image, is a size seen in training), then
few-shot on the unseen 5-9 as in few_shot.py (log: varsize.log, LOW = 1):

    NPKIT_THREADS=1 python benchmarks/results/statistician/digit_sets/varsize.py [LOW]
"""

import sys

import torch

from npkit.config import load_config, split_section
from npkit.data import make_sampler
from npkit.models import build_model
from npkit.objectives import statistician_elbo
from npkit.statistician_eval import elbo_on, few_shot_accuracy
from npkit.train import fit


class MixedSizes:
    """Sets of digits 0-4 of a size drawn uniformly in [low, 5] per batch."""

    def __init__(self, low: int) -> None:
        self.low = low
        self.samplers = {n: make_sampler("digit-sets", classes=[0, 1, 2, 3, 4], set_size=n) for n in range(low, 6)}

    def sample(self, batch_size, generator=None):
        n = int(torch.randint(self.low, 6, (1,), generator=generator))
        return self.samplers[n].sample(batch_size, generator)


def main(low: int) -> None:
    torch.set_num_threads(1)
    name, options = split_section(load_config("statistician-digit-sets")["model"])
    torch.manual_seed(0)
    model = build_model(name, **options)
    train = dict(steps=4000, batch_size=32, lr=1e-3, schedule="cosine", seed=0)
    fit(model, MixedSizes(low), statistician_elbo, progress=False, accelerator="cpu", **train)
    held = make_sampler("digit-sets", split="test", classes=[5, 6, 7, 8, 9])
    scores = few_shot_accuracy(model, held, shots=(1, 5), ways=5, queries=5, episodes=200, seed=1234)
    print(
        f"varsize{low}-5 trained "
        + "  ".join(f"{k}-shot {v['accuracy']:.3f} ± {v['stderr']:.3f}" for k, v in scores.items())
    )
    print(elbo_on(model, make_sampler("digit-sets", split="test", classes=[0, 1, 2, 3, 4]), 512, seed=1234))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
