"""Simple function families: sine, sawtooth and the five-point sine toy of the NP critique."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from npkit.data.sampling import FunctionSampler, randint, uniform
from npkit.tasks import Batch


@dataclass
class SineSampler(FunctionSampler):
    """Sine functions y = A sin(f x - phase) + noise * eps, with A, f and phase drawn per task.

    A ~ U(amplitude), f ~ U(frequency), phase ~ U(phase) per task and eps ~ N(0, 1) per point;
    the defaults (f = 1, no noise) are the MAML sine family. The first Nc of the Nc + Nt points
    are the context.

    Attributes:
        x_range: (low, high) of the inputs, x ~ U(x_range) for every point.
        num_context: (low, high): Nc ~ U{low, ..., high}, drawn once per batch.
        num_target: (low, high): Nt ~ U{low, ..., min(high, max_points - Nc)}, once per batch.
        max_points: cap on Nc + Nt (None: no cap).
        amplitude: (low, high) of A.
        phase: (low, high) of the phase.
        frequency: (low, high) of f (equal ends: fixed).
        noise: std of the observation noise (0: none).
    """

    x_range: tuple[float, float] = (-5.0, 5.0)
    num_context: tuple[int, int] = (3, 20)
    num_target: tuple[int, int] = (3, 30)
    max_points: int | None = 50
    amplitude: tuple[float, float] = (0.1, 5.0)
    phase: tuple[float, float] = (0.0, math.pi)
    frequency: tuple[float, float] = (1.0, 1.0)
    noise: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("amplitude", "phase", "frequency"):
            low, high = getattr(self, name)
            if not low <= high:
                raise ValueError(f"{name} must be (low, high) with low <= high, got {getattr(self, name)}")
        if not self.noise >= 0:
            raise ValueError(f"noise must be a std >= 0, got {self.noise}")

    def functions(self, x: Tensor, generator: torch.Generator | None) -> tuple[Tensor, None]:
        amplitude = uniform((x.shape[0], 1, 1), *self.amplitude, generator)
        phase = uniform((x.shape[0], 1, 1), *self.phase, generator)
        fixed = self.frequency == (1.0, 1.0)  # drawn only when it varies: the MAML tasks stay as they were
        frequency = 1.0 if fixed else uniform((x.shape[0], 1, 1), *self.frequency, generator)
        y = amplitude * torch.sin(frequency * x - phase)
        if self.noise > 0:
            y = y + self.noise * torch.randn(x.shape, generator=generator, dtype=x.dtype)
        return y, None


@dataclass
class SawtoothSampler(FunctionSampler):
    """Sawtooth functions y = A * frac(f (x - shift)) - A / 2, with f and shift drawn per task.

    Attributes:
        x_range: (low, high) of the inputs, x ~ U(x_range) for every point.
        num_context: (low, high): Nc ~ U{low, ..., high}, drawn once per batch.
        num_target: (low, high): Nt ~ U{low, ..., min(high, max_points - Nc)}, once per batch.
        max_points: cap on Nc + Nt (None: no cap).
        amplitude: A, the height of each tooth.
        frequency: (low, high) of f, teeth per unit of x.
        shift: (low, high) of the shift.
    """

    num_context: tuple[int, int] = (3, 46)
    amplitude: float = 1.0
    frequency: tuple[float, float] = (1.0, 2.0)
    shift: tuple[float, float] = (-5.0, 5.0)

    def functions(self, x: Tensor, generator: torch.Generator | None) -> tuple[Tensor, None]:
        frequency = uniform((x.shape[0], 1, 1), *self.frequency, generator)
        shift = uniform((x.shape[0], 1, 1), *self.shift, generator)
        return self.amplitude * (torch.frac(frequency * (x - shift)) % 1.0 - 0.5), None


@dataclass
class FivePointSine:
    """The toy of the NP critique: y = sin(x) at x in {-2, -1, 0, 1, 2}, a few of them observed.

    Every task is the same function; what varies is which points are observed. The targets are
    the points not in the context, so ``context ∪ targets`` is always all five points.

    Attributes:
        num_context: (low, high) with 0 <= low <= high <= 4: Nc ~ U{low, ..., high}, drawn
            once per batch.
    """

    num_context: tuple[int, int] = (1, 3)

    def __post_init__(self) -> None:
        if not 0 <= self.num_context[0] <= self.num_context[1] <= 4:
            raise ValueError(f"num_context must lie in 0..4, got {self.num_context}")

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Batch:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        nc = randint(*self.num_context, generator)
        order = torch.rand(batch_size, 5, generator=generator).argsort(dim=1)
        x = torch.arange(-2.0, 3.0)[order].unsqueeze(-1)  # [B, 5, 1]
        y = torch.sin(x)
        return Batch(xc=x[:, :nc], yc=y[:, :nc], xt=x[:, nc:], yt=y[:, nc:])
