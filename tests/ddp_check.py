"""Standalone DDP check, run by tests/test_train.py in a subprocess (never DDP inside pytest).

Two CPU processes (gloo) train a CNP for a few steps through npkit.fit; rank 0 prints one line
``RESULT <max |param difference between ranks|> <number of parameters> <world size>
<number of batches each rank drew> <number of steps at which two ranks drew the same batch>``.
"""

import sys

import torch
import torch.distributed as dist

from npkit.data import make_sampler
from npkit.models import build_model
from npkit.train import fit

STEPS = 5


class RecordingSampler:
    """Delegates to a task sampler and keeps a fingerprint of every batch it hands out."""

    def __init__(self, sampler) -> None:
        self.sampler = sampler
        self.fingerprints: list[torch.Tensor] = []

    def sample(self, batch_size, generator=None):
        batch = self.sampler.sample(batch_size, generator)
        x, y = batch.x.double(), batch.y.double()
        self.fingerprints.append(
            torch.tensor([batch.num_context, batch.num_target, x.sum(), y.sum(), (x * y).sum()], dtype=torch.float64)
        )
        return batch

    def __repr__(self) -> str:
        return repr(self.sampler)


def main() -> None:
    torch.manual_seed(0)
    model = build_model("cnp", hidden_dim=16, r_dim=16)
    data = RecordingSampler(make_sampler("gp1d"))
    fit(model, data, steps=STEPS, batch_size=4, devices=2, strategy="ddp", progress=False)
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    world = dist.get_world_size()
    gathered = [torch.zeros_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    draws = torch.tensor([len(data.fingerprints)])
    all_draws = [torch.zeros_like(draws) for _ in range(world)]
    dist.all_gather(all_draws, draws)
    drawn = torch.stack(data.fingerprints) if len(data.fingerprints) == STEPS else torch.zeros(STEPS, 5).double()
    all_drawn = [torch.zeros_like(drawn) for _ in range(world)]
    dist.all_gather(all_drawn, drawn)
    if dist.get_rank() == 0:
        diff = max((g - gathered[0]).abs().max().item() for g in gathered)
        num_draws = min(int(d) for d in all_draws) if len({int(d) for d in all_draws}) == 1 else -1
        same = sum(
            1
            for step in range(STEPS)
            for i in range(world)
            for j in range(i)
            if torch.equal(all_drawn[i][step], all_drawn[j][step])
        )
        print(f"RESULT {diff} {flat.numel()} {world} {num_draws} {same}", flush=True)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
    sys.exit(0)
