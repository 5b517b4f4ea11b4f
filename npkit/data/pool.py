"""A finite pool of tasks: train on a fixed set of functions, as meta-learning papers do, and
measure what a model does on those functions against fresh ones from the same family."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import Tensor

from npkit.data.sampling import randint
from npkit.tasks import Batch


@dataclass(eq=False)
class TaskPool:
    """``num_tasks`` functions, each observed at ``num_points`` inputs: x [T, M, x_dim], y [T, M, y_dim].

    ``sample`` draws tasks with replacement, shuffles each one's points and splits them: the first
    Nc ~ U{num_context} are the context, the next Nt ~ U{num_target[0], min(num_target[1], M - Nc)}
    the targets (counts drawn once per batch, as the function samplers do).
    """

    x: Tensor = field(repr=False)
    y: Tensor = field(repr=False)
    num_context: tuple[int, int] = (1, 16)
    num_target: tuple[int, int] = (1, 20)

    def __post_init__(self) -> None:
        if self.x.dim() != 3 or self.y.dim() != 3 or self.x.shape[:2] != self.y.shape[:2]:
            raise ValueError(
                f"x and y must be [num_tasks, num_points, dim] with the same first two sizes, "
                f"got {list(self.x.shape)} and {list(self.y.shape)}"
            )
        lo_c, hi_c = self.num_context
        lo_t, hi_t = self.num_target
        if not (0 <= lo_c <= hi_c and 1 <= lo_t <= hi_t and hi_c + lo_t <= self.num_points):
            raise ValueError(
                f"num_context {self.num_context} and num_target {self.num_target} must be ordered ranges with "
                f"num_context[1] + num_target[0] <= num_points = {self.num_points}"
            )

    @property
    def num_tasks(self) -> int:
        return self.x.shape[0]

    @property
    def num_points(self) -> int:
        return self.x.shape[1]

    @classmethod
    def draw(cls, sampler, num_tasks: int, num_points: int, generator: torch.Generator, **counts) -> TaskPool:
        """``num_tasks`` functions of a function sampler (``npkit.data.functions``, ``gp``), each at
        ``num_points`` inputs drawn by the sampler; ``counts`` are ``num_context`` / ``num_target``."""
        if num_tasks < 1 or num_points < 2:
            raise ValueError(f"num_tasks must be >= 1 and num_points >= 2, got {num_tasks} and {num_points}")
        one_split = dataclasses.replace(
            sampler, num_context=(num_points - 1, num_points - 1), num_target=(1, 1), max_points=None
        )
        batch = one_split.sample(num_tasks, generator)
        return cls(batch.x, batch.y, **counts)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Batch:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        nc = randint(*self.num_context, generator)
        nt = randint(self.num_target[0], min(self.num_target[1], self.num_points - nc), generator)
        tasks = torch.randint(self.num_tasks, (batch_size,), generator=generator)
        order = torch.rand(batch_size, self.num_points, generator=generator).argsort(1)[:, : nc + nt]
        x = self.x[tasks.unsqueeze(1), order]  # [B, Nc + Nt, x_dim]
        y = self.y[tasks.unsqueeze(1), order]
        return Batch(xc=x[:, :nc], yc=y[:, :nc], xt=x[:, nc:], yt=y[:, nc:])
