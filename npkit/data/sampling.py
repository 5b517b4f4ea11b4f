"""Shared machinery of task samplers: point counts, uniform inputs, context/target split."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from npkit.tasks import Batch


class TaskSampler(Protocol):
    """Anything that draws a `Batch` of tasks from a seeded generator.

    A protocol: a sampler needs one method, ``sample(batch_size, generator=None) -> Batch``,
    which draws ``batch_size`` tasks using only ``generator`` for randomness (so a seed
    reproduces the batch). ``TaskSampler.from_arrays(X, y, groups=...)`` and
    ``TaskSampler.from_dataframe(df, x=..., y=..., group=...)`` build one from your own data
    (a `GroupedTasks`).

    Examples:
        >>> tasks = npkit.TaskSampler.from_arrays(X, y, groups=station, num_context=(3, 50))
        >>> batch = tasks.sample(16, torch.Generator().manual_seed(0))
    """

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Batch: ...


def uniform(shape: tuple[int, ...], low: float, high: float, generator: torch.Generator | None) -> Tensor:
    """U(low, high) samples of ``shape`` in float64 (a point range ``low == high`` is a constant)."""
    return low + (high - low) * torch.rand(shape, generator=generator, dtype=torch.float64)


def randint(low: int, high: int, generator: torch.Generator | None) -> int:
    """One integer uniform on {low, ..., high} (both inclusive)."""
    return int(torch.randint(low, high + 1, (1,), generator=generator))


@dataclass
class FunctionSampler(ABC):
    """Base of samplers of 1D-input functions observed at uniform random inputs.

    Nc ~ U{num_context}, then Nt ~ U{num_target[0], min(num_target[1], max_points - Nc)},
    drawn once per batch; x ~ U(x_range) for all Nc + Nt points; the first Nc are the context.
    Subclasses implement `functions`.
    """

    x_range: tuple[float, float] = (-2.0, 2.0)
    num_context: tuple[int, int] = (3, 46)
    num_target: tuple[int, int] = (3, 49)
    max_points: int | None = 49

    def __post_init__(self) -> None:
        lo_c, hi_c = self.num_context
        lo_t, hi_t = self.num_target
        if not 0 <= lo_c <= hi_c:
            raise ValueError(f"num_context must satisfy 0 <= low <= high, got {self.num_context}")
        if not 1 <= lo_t <= hi_t:
            raise ValueError(f"num_target must satisfy 1 <= low <= high, got {self.num_target}")
        if self.max_points is not None and hi_c + lo_t > self.max_points:
            raise ValueError(f"max_points={self.max_points} is below num_context[1] + num_target[0] = {hi_c + lo_t}")
        if not self.x_range[0] < self.x_range[1]:
            raise ValueError(f"x_range must be (low, high) with low < high, got {self.x_range}")

    def draw_counts(self, generator: torch.Generator | None) -> tuple[int, int]:
        nc = randint(*self.num_context, generator)
        hi_t = self.num_target[1]
        if self.max_points is not None:
            hi_t = min(hi_t, self.max_points - nc)
        return nc, randint(self.num_target[0], hi_t, generator)

    @abstractmethod
    def functions(self, x: Tensor, generator: torch.Generator | None) -> tuple[Tensor, object]:
        """Sample one function per task at x [B, N, 1] (float64); return y [B, N, 1] and the
        generating GP (or None)."""

    def sample_with_truth(self, batch_size: int, generator: torch.Generator | None = None) -> tuple[Batch, object]:
        """A batch and what generated it (a ``TrueGP`` for GP tasks, else None), for oracles."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        nc, nt = self.draw_counts(generator)
        x = uniform((batch_size, nc + nt, 1), *self.x_range, generator)
        y, truth = self.functions(x, generator)
        x, y = x.float(), y.float()
        part = lambda t, points: t[:, points].contiguous()  # own memory: the same numbers once cached
        context, targets = slice(0, nc), slice(nc, None)
        batch = Batch(xc=part(x, context), yc=part(y, context), xt=part(x, targets), yt=part(y, targets))
        return batch, truth

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Batch:
        return self.sample_with_truth(batch_size, generator)[0]


# Your own data as tasks: TaskSampler.from_arrays(X, y, groups=...) / .from_dataframe(df, x=..., y=..., group=...).
from npkit.data.arrays import GroupedTasks  # noqa: E402  (imports only npkit.tasks: no cycle)

TaskSampler.from_arrays, TaskSampler.from_dataframe = map(
    staticmethod, (GroupedTasks.from_arrays, GroupedTasks.from_dataframe)
)
