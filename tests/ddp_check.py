"""Standalone DDP check, run by tests/test_train.py in a subprocess (never DDP inside pytest).

Two CPU processes (gloo) train a CNP for a few steps through npkit.fit; rank 0 prints one line
``RESULT <max |param difference between ranks|> <number of parameters>``.
"""

import sys

import torch
import torch.distributed as dist

from npkit.data import make_sampler
from npkit.models import build_model
from npkit.train import fit


def main() -> None:
    torch.manual_seed(0)
    model = build_model("cnp", hidden_dim=16, r_dim=16)
    fit(model, make_sampler("gp1d"), steps=5, batch_size=4, devices=2, strategy="ddp", progress=False)
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, flat)
    if dist.get_rank() == 0:
        diff = max((g - gathered[0]).abs().max().item() for g in gathered)
        print(f"RESULT {diff} {flat.numel()} {dist.get_world_size()}", flush=True)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
    sys.exit(0)
