"""Gaussian-process functions: kernels, hyper-parameter priors and a seeded task sampler.

Kernels take inputs x1 [B, N, Dx], x2 [B, M, Dx] and per-task hyper-parameters [B] and
return covariances [B, N, M]. With d = |x - x'|:

- rbf:             s^2 exp(-d^2 / (2 l^2))
- matern52:        s^2 (1 + sqrt5 r + 5 r^2 / 3) exp(-sqrt5 r),  r = d / l
- periodic:        s^2 exp(-2 sin^2(pi d / p) / l^2)
- weakly_periodic: s^2 exp(-d^2 / (2 l^2)) exp(-2 sin^2(pi d / p))
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import torch
from torch import Tensor

from npkit.data.sampling import FunctionSampler, randint, uniform


def _distance(x1: Tensor, x2: Tensor) -> Tensor:
    diff = x1.unsqueeze(-2) - x2.unsqueeze(-3)  # [B, N, M, Dx]
    return diff.pow(2).sum(-1).clamp_min(0).sqrt() if x1.shape[-1] > 1 else diff.squeeze(-1).abs()


def _col(v: Tensor) -> Tensor:
    return v[:, None, None]


def rbf(d: Tensor, length: Tensor, period: Tensor | None) -> Tensor:
    return torch.exp(-0.5 * (d / _col(length)) ** 2)


def matern52(d: Tensor, length: Tensor, period: Tensor | None) -> Tensor:
    r = math.sqrt(5.0) * d / _col(length)
    return (1 + r + r**2 / 3) * torch.exp(-r)


def periodic(d: Tensor, length: Tensor, period: Tensor | None) -> Tensor:
    return torch.exp(-2 * torch.sin(math.pi * d / _col(period)) ** 2 / _col(length) ** 2)


def weakly_periodic(d: Tensor, length: Tensor, period: Tensor | None) -> Tensor:
    return rbf(d, length, None) * torch.exp(-2 * torch.sin(math.pi * d / _col(period)) ** 2)


KERNELS = {"rbf": rbf, "matern52": matern52, "periodic": periodic, "weakly_periodic": weakly_periodic}
PERIODIC_KERNELS = {"periodic", "weakly_periodic"}


def check_kernel(name: str) -> str:
    if name not in KERNELS:
        raise ValueError(f"unknown kernel {name!r}; expected one of {sorted(KERNELS)}")
    return name


@dataclass
class TrueGP:
    """The GP that generated a batch: kernel name, per-task hyper-parameters [B] (float64),
    observation noise std (a float, or a tensor [B] for fitted GPs)."""

    kernel: str
    scale: Tensor
    length: Tensor
    period: Tensor | None
    noise_std: float | Tensor

    def covariance(self, x1: Tensor, x2: Tensor) -> Tensor:
        """Noise-free kernel matrix [B, N, M] for x1 [B, N, Dx], x2 [B, M, Dx]."""
        d = _distance(x1, x2)
        period = None if self.period is None else self.period.to(d)
        return _col(self.scale.to(d)) ** 2 * KERNELS[self.kernel](d, self.length.to(d), period)

    def to(self, device: torch.device | str) -> TrueGP:
        move = lambda t: t.to(device) if isinstance(t, Tensor) else t
        return TrueGP(self.kernel, move(self.scale), move(self.length), move(self.period), move(self.noise_std))


@dataclass
class GPSampler(FunctionSampler):
    """Gaussian-process functions y ~ GP(0, k) + N(0, noise_std^2), hyper-parameters drawn per task.

    Defaults are the gp1d protocol (protocol 1 of docs/benchmarks/protocols.md; Bootstrapping NPs
    / TNP reference code).
    ``sample_with_truth`` also returns the generating ``TrueGP`` (for the oracle).

    Attributes:
        x_range: (low, high) of the inputs, x ~ U(x_range) for every point.
        num_context: (low, high): Nc ~ U{low, ..., high}, drawn once per batch.
        num_target: (low, high): Nt ~ U{low, ..., min(high, max_points - Nc)}, once per batch.
        max_points: cap on Nc + Nt (None: no cap).
        kernel: the kernel, a key of ``npkit.data.KERNELS``: "rbf", "matern52", "periodic" or
            "weakly_periodic".
        kernels: if non-empty, every batch draws its kernel uniformly from these instead of
            using ``kernel``, for training over a mixture of kernels (one kernel per batch, so
            each batch keeps one generating ``TrueGP``).
        scale: (low, high) of the kernel's standard deviation; equal ends fix the value.
        length: (low, high) of the length scale.
        period: (low, high) of the period (periodic kernels).
        noise_std: std of the observation noise.
    """

    kernel: str = "rbf"
    kernels: tuple[str, ...] = field(default=(), repr=False)  # in __repr__ only when set
    scale: tuple[float, float] = (0.1, 1.0)
    length: tuple[float, float] = (0.1, 0.6)
    period: tuple[float, float] = (0.1, 0.5)
    noise_std: float = 0.02

    def __post_init__(self) -> None:
        super().__post_init__()
        for kernel in (self.kernel, *self.kernels):
            check_kernel(kernel)
        for name in ("scale", "length", "period"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"{name} must be a range (low, high) with 0 < low <= high, got {(low, high)}")
        if self.noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {self.noise_std}")

    def __repr__(self) -> str:
        """The dataclass repr, with ``kernels`` only when set: the repr names the data in
        checkpoints and cached evaluation sets, which stay valid for samplers without it."""
        shown = [f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.repr]
        shown += [f"kernels={self.kernels!r}"] if self.kernels else []
        return f"{type(self).__qualname__}({', '.join(shown)})"

    def draw_gp(self, batch_size: int, generator: torch.Generator | None) -> TrueGP:
        kernel = self.kernels[randint(0, len(self.kernels) - 1, generator)] if self.kernels else self.kernel
        scale = uniform((batch_size,), *self.scale, generator)
        length = uniform((batch_size,), *self.length, generator)
        period = uniform((batch_size,), *self.period, generator) if kernel in PERIODIC_KERNELS else None
        return TrueGP(kernel, scale, length, period, self.noise_std)

    def functions(self, x: Tensor, generator: torch.Generator | None) -> tuple[Tensor, TrueGP]:
        gp = self.draw_gp(x.shape[0], generator)
        cov = gp.covariance(x, x)
        jitter = max(self.noise_std**2, 1e-8)
        chol = torch.linalg.cholesky(cov + jitter * torch.eye(x.shape[1], dtype=x.dtype, device=x.device))
        eps = torch.randn(x.shape[:2] + (1,), generator=generator, dtype=x.dtype).to(x.device)
        return chol @ eps, gp


def gp1d(kernel: str = "rbf") -> GPSampler:
    """The gp1d protocol (BNP/TNP): x ~ U(-2, 2), Nc ~ U{3..46}, Nt ~ U{3..49-Nc}, noise 0.02."""
    return GPSampler(kernel=kernel)


def gp1d_nps(kernel: str = "rbf") -> GPSampler:
    """The wide-noise protocol of ``neuralprocesses``: unit-variance kernels with fixed length
    0.25 (weakly periodic: EQ(0.5) x periodic(0.25)), noise variance 0.05, Nc ~ U{0..30}, Nt = 50.
    ``kernel`` is one of rbf (EQ), matern52, weakly_periodic."""
    allowed = {"rbf", "matern52", "weakly_periodic"}
    if kernel not in allowed:
        raise ValueError(f"gp1d-nps kernel must be one of {sorted(allowed)}, got {kernel!r}")
    length = (0.5, 0.5) if kernel == "weakly_periodic" else (0.25, 0.25)
    return GPSampler(
        kernel=kernel,
        scale=(1.0, 1.0),
        length=length,
        period=(0.25, 0.25),
        noise_std=math.sqrt(0.05),
        num_context=(0, 30),
        num_target=(50, 50),
        max_points=None,
    )
