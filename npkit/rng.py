"""Seeded blocks that leave the caller's random state as it was, on the CPU and on CUDA."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Within this block torch's global generators are seeded with ``seed``: the CPU's and, once
    CUDA is in use, every CUDA device's. All of them are restored afterwards."""
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count())) if cuda else []):
        if cuda:
            torch.manual_seed(seed)
        else:  # torch.manual_seed would queue a CUDA seed for later, outside this block
            torch.default_generator.manual_seed(seed)
        yield
