"""Tasks: a context set ``(xc, yc)`` and targets ``(xt, yt)``, batched, with validation."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor

_VALIDATED = ContextVar("npkit_inputs_validated", default=False)


@contextmanager
def validated_inputs() -> Iterator[None]:
    """Within this block, models skip the value checks (NaN / inf) of their inputs: the caller
    has validated them already (every `Batch` is checked once, when it is built). Shape
    checks, which need no device sync, still run."""
    token = _VALIDATED.set(True)
    try:
        yield
    finally:
        _VALIDATED.reset(token)


def check_tensor(name: str, value: Tensor, *, ndim: int = 3) -> None:
    """Raise a ``ValueError`` naming ``name`` unless ``value`` is a finite float tensor of ``ndim``
    (the finiteness check, a device sync, is skipped inside `validated_inputs`)."""
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.dim() != ndim:
        expected = "[batch, n_points, dim]" if ndim == 3 else f"{ndim} dimensions"
        raise ValueError(f"{name} must have shape {expected}, got shape {tuple(value.shape)}")
    if not value.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
    if not _VALIDATED.get() and not torch.isfinite(value).all():
        raise ValueError(f"{name} contains NaN or inf values")


def check_mask(name: str, mask: Tensor | None, points: Tensor) -> None:
    """A mask is a bool tensor ``[batch, n_points]`` matching ``points`` ``[batch, n_points, dim]``."""
    if mask is None:
        return
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        raise ValueError(f"{name} must be a bool tensor [batch, n_points]")
    if tuple(mask.shape) != tuple(points.shape[:2]):
        raise ValueError(f"{name} must have shape {tuple(points.shape[:2])} [batch, n_points], got {tuple(mask.shape)}")


def check_context(xc: Tensor, yc: Tensor, xt: Tensor | None = None, mask_c: Tensor | None = None) -> None:
    """Validate a model's inputs: xc [B, Nc, Dx], yc [B, Nc, Dy], xt [B, Nt, Dx]."""
    check_tensor("xc", xc)
    check_tensor("yc", yc)
    if yc.shape[:2] != xc.shape[:2]:
        raise ValueError(
            f"xc and yc must agree in [batch, n_context], got {tuple(xc.shape[:2])} and {tuple(yc.shape[:2])}"
        )
    check_mask("mask_c", mask_c, xc)
    others = {"yc": yc}
    if xt is not None:
        check_tensor("xt", xt)
        if xt.shape[0] != xc.shape[0]:
            raise ValueError(f"batch sizes differ: xc has {xc.shape[0]} tasks, xt has {xt.shape[0]}")
        if xt.shape[-1] != xc.shape[-1]:
            raise ValueError(f"x_dim differs: xc has {xc.shape[-1]}, xt has {xt.shape[-1]}")
        others["xt"] = xt
    for name, t in others.items():
        if t.dtype != xc.dtype or t.device != xc.device:
            raise ValueError(
                f"{name} is {t.dtype} on {t.device} but xc is {xc.dtype} on {xc.device}; "
                "move the whole task with Batch.to()"
            )


@dataclass
class Batch:
    """A batch of tasks with equal context and target sizes (ragged data padded and masked).

    The tensors are checked when the batch is built (shapes, dtypes, devices, finite values).
    Context and targets are disjoint; objectives score ``context ∪ targets`` by default,
    the convention of the published 1D GP benchmarks (see ``npkit.objectives``).

    Attributes:
        xc: context inputs `[batch, n_context, x_dim]`.
        yc: context outputs `[batch, n_context, y_dim]`.
        xt: target inputs `[batch, n_target, x_dim]`.
        yt: target outputs `[batch, n_target, y_dim]` (None when only predicting).
        mask_c: optional `[batch, n_context]` bool, True where a context point is real.
        mask_t: optional `[batch, n_target]` bool, True where a target point is real.

    Examples:
        >>> batch = npkit.Batch(xc=torch.rand(2, 5, 1), yc=torch.rand(2, 5, 1), xt=torch.rand(2, 8, 1))
        >>> batch.x.shape            # context then targets
        torch.Size([2, 13, 1])
    """

    xc: Tensor
    yc: Tensor
    xt: Tensor
    yt: Tensor | None = None
    mask_c: Tensor | None = None
    mask_t: Tensor | None = None

    def __post_init__(self) -> None:
        check_context(self.xc, self.yc, self.xt, self.mask_c)
        check_mask("mask_t", self.mask_t, self.xt)
        if self.yt is not None:
            check_tensor("yt", self.yt)
            if self.yt.shape[:2] != self.xt.shape[:2]:
                raise ValueError(
                    f"xt and yt must agree in [batch, n_target], got {tuple(self.xt.shape[:2])} "
                    f"and {tuple(self.yt.shape[:2])}"
                )
            if self.yt.shape[-1] != self.yc.shape[-1]:
                raise ValueError(f"y_dim differs: yc has {self.yc.shape[-1]}, yt has {self.yt.shape[-1]}")

    @property
    def batch_size(self) -> int:
        return self.xc.shape[0]

    @property
    def num_context(self) -> int:
        return self.xc.shape[1]

    @property
    def num_target(self) -> int:
        return self.xt.shape[1]

    @property
    def x(self) -> Tensor:
        """Context then target inputs, [batch, n_context + n_target, x_dim]."""
        return torch.cat([self.xc, self.xt], dim=1)

    @property
    def y(self) -> Tensor:
        """Context then target outputs, [batch, n_context + n_target, y_dim]."""
        if self.yt is None:
            raise ValueError("this batch has no target outputs yt")
        return torch.cat([self.yc, self.yt], dim=1)

    @property
    def mask(self) -> Tensor | None:
        """Mask of ``x``, or None when neither part is masked."""
        if self.mask_c is None and self.mask_t is None:
            return None
        ones = lambda t: torch.ones(t.shape[:2], dtype=torch.bool, device=t.device)
        mc = self.mask_c if self.mask_c is not None else ones(self.xc)
        mt = self.mask_t if self.mask_t is not None else ones(self.xt)
        return torch.cat([mc, mt], dim=1)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Batch:
        """Move every tensor to ``device`` (floating-point ones also to ``dtype`` when given)."""
        moved = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Tensor):
                value = value.to(device, dtype) if value.is_floating_point() else value.to(device)
            moved[f.name] = value
        with validated_inputs():  # the values were checked when this batch was built
            return replace(self, **moved)
