"""Tasks from your own data: rows ``(x, y)`` in groups (a series, a station, a curve), each group
one function. ``TaskSampler.from_arrays(X, y, groups=...)`` and ``TaskSampler.from_dataframe(df,
x=[...], y=[...], group=...)`` build a `GroupedTasks`.

    tasks = TaskSampler.from_arrays(X, y, groups=station, num_context=(3, 50))
    batch = tasks.sample(16, generator)     # ragged: padded, with mask_c / mask_t
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from npkit.tasks import Batch

MISSING = ("raise", "mask")
SHOWN_ROWS = 10  # rows named in an error message


def bad_rows(bad: np.ndarray) -> str:
    """The first SHOWN_ROWS row numbers where ``bad`` [n] is True, as "[3, 17]" (", ..." after)."""
    rows = np.flatnonzero(bad)
    more = ", ..." if len(rows) > SHOWN_ROWS else ""
    return f"[{', '.join(str(int(r)) for r in rows[:SHOWN_ROWS])}{more}]"


def as_rows(name: str, value, vector_ok: bool = True, allow_empty: bool = False) -> np.ndarray:
    """``value`` (numpy, torch or nested lists) as float64 [n, dim]; a vector [n] is one column.
    No rows is refused (naming ``name``) unless ``allow_empty`` (an empty context)."""
    if isinstance(value, Tensor):
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be numeric [n, dim] data, got {type(value).__name__}: {err}") from None
    if array.ndim == 1 and vector_ok:
        array = array[:, None]
    if array.ndim != 2 or array.shape[1] == 0:
        raise ValueError(f"{name} must have shape [n, dim]{' or [n]' if vector_ok else ''}, got {array.shape}")
    if array.shape[0] == 0 and not allow_empty:
        raise ValueError(f"{name} is empty (0 rows); it needs at least one row of data")
    return array


def check_rows(X: np.ndarray, y: np.ndarray, missing: str) -> np.ndarray:
    """Which rows are observed, [n] bool: y rows with NaN are missing when ``missing="mask"``,
    refused when ``missing="raise"``; X must be finite, y free of inf."""
    if missing not in MISSING:
        raise ValueError(f"missing must be one of {list(MISSING)}, got {missing!r}")
    if len(X) != len(y):
        raise ValueError(f"X and y must have the same number of rows, got {len(X)} and {len(y)}")
    if not np.isfinite(X).all():
        raise ValueError(f"X has NaN or inf in rows {bad_rows(~np.isfinite(X).all(1))}; X must be finite")
    if np.isinf(y).any():
        raise ValueError(f"y has inf in rows {bad_rows(np.isinf(y).any(1))}")
    nan = np.isnan(y).any(1)
    if nan.any() and missing == "raise":
        raise ValueError(f"y has NaN in rows {bad_rows(nan)}; pass missing='mask' to treat them as missing")
    return ~nan


def _counts(name: str, value: Sequence[int], low: int) -> tuple[int, int]:
    lo, hi = (int(v) for v in value)
    if not low <= lo <= hi:
        raise ValueError(f"{name} must be (low, high) with {low} <= low <= high, got {tuple(value)}")
    return lo, hi


@dataclass(eq=False)
class GroupedTasks:
    """Tasks from your own data: each group of rows is one function, observed at its own points.

    A task picks a group (uniformly), with ``window`` a random run of ``window`` consecutive points
    of it, shuffles those n points and splits them: Nc ~ U{num_context[0], min(num_context[1],
    n - num_target[0])} context points, then Nt ~ U{num_target[0], min(num_target[1], n - Nc)}
    targets, drawn per task, so a batch is ragged: padded, with ``mask_c`` / ``mask_t``. Build
    it with `from_arrays` or `from_dataframe` rather than directly.

    Attributes:
        x: inputs `[n_groups, max_points, x_dim]`, padded to the longest group.
        y: outputs `[n_groups, max_points, y_dim]`, padded alike.
        lengths: `[n_groups]` observed points per group (the first ones of each row).
        num_context: (low, high) of the context size per task.
        num_target: (low, high) of the target size per task.
        window: points per task: a random run of that many consecutive points of a group
            (None: the whole group). Needed for data of a single group (one series).
        names: the group labels, in the order of the rows of ``x`` (for error messages).
        digest: a hash of the data, set on construction (a resumed run must train on the same
            tasks).

    Examples:
        >>> tasks = npkit.GroupedTasks.from_arrays(X, y, groups=station, num_context=(3, 50))
        >>> batch = tasks.sample(16, torch.Generator().manual_seed(0))   # masked, ragged
    """

    x: Tensor = field(repr=False)
    y: Tensor = field(repr=False)
    lengths: Tensor = field(repr=False)
    num_context: tuple[int, int] = (3, 50)
    num_target: tuple[int, int] = (1, 50)
    window: int | None = None
    names: list = field(default_factory=list, repr=False)
    digest: str = field(init=False)  # of the data: a resumed run must train on the same tasks

    def __post_init__(self) -> None:
        if self.x.dim() != 3 or self.y.dim() != 3 or self.x.shape[:2] != self.y.shape[:2]:
            raise ValueError(
                f"x and y must be [num_groups, num_points, dim] with equal first sizes, "
                f"got {list(self.x.shape)} and {list(self.y.shape)}"
            )
        if tuple(self.lengths.shape) != (self.x.shape[0],):
            raise ValueError(f"lengths must have shape [{self.x.shape[0]}], got {list(self.lengths.shape)}")
        self.num_context = _counts("num_context", self.num_context, 0)
        self.num_target = _counts("num_target", self.num_target, 1)
        if self.window is not None and (isinstance(self.window, bool) or int(self.window) < 2):
            raise ValueError(f"window must be an integer >= 2 (points per task) or None, got {self.window!r}")
        need = self.num_context[0] + self.num_target[0]
        usable = self.lengths if self.window is None else self.lengths.clamp_max(int(self.window))
        short = (usable < need).nonzero().flatten().tolist()
        if short:
            label = ", ".join(repr(self.names[g]) if self.names else str(g) for g in short[:SHOWN_ROWS])
            raise ValueError(
                f"group(s) {label} have fewer than num_context[0] + num_target[0] = {need} points"
                f"{' in a window' if self.window else ''}; drop them or lower those bounds"
            )
        if self.x.shape[0] == 1 and self.window is None:
            raise ValueError(
                "the data form a single group (one function); a neural process meta-learns from many "
                "functions: pass groups= (one label per row: the series, station or curve it belongs to), "
                "or window=W to train on random windows of W consecutive points of this one series"
            )
        sha = hashlib.sha256()
        for t in (self.x, self.y, self.lengths):
            sha.update(t.detach().cpu().contiguous().numpy().tobytes())
        self.digest = sha.hexdigest()[:16]

    @property
    def num_groups(self) -> int:
        return self.x.shape[0]

    @classmethod
    def from_arrays(
        cls, X, y, groups=None, *, missing: str = "raise", dtype: torch.dtype = torch.float32, **options
    ) -> GroupedTasks:
        """Tasks from rows X [n, x_dim] (or [n]) and y [n, y_dim] (or [n]), numpy or torch.

        ``groups`` [n]: the group label of each row (any values; None: one group, which needs
        ``window``). Rows keep their order within a group. ``missing="mask"`` drops rows whose y
        has NaN (they are missing observations); ``"raise"`` refuses them. ``options``:
        ``num_context``, ``num_target``, ``window`` (see the class).
        """
        X, y = as_rows("X", X), as_rows("y", y)
        observed = check_rows(X, y, missing)
        if groups is None:
            labels, index = np.zeros(1), np.zeros(len(X), dtype=np.int64)
        else:
            groups = np.asarray(groups.cpu() if isinstance(groups, Tensor) else groups)
            if groups.shape != (len(X),):
                raise ValueError(f"groups must have shape [{len(X)}] (one label per row), got {groups.shape}")
            labels, index = np.unique(groups, return_inverse=True)
        index = index[observed]
        X, y = X[observed], y[observed]
        lengths = np.bincount(index, minlength=len(labels))
        if (lengths == 0).any():
            empty = [labels[g].item() for g in np.flatnonzero(lengths == 0)][:SHOWN_ROWS]
            raise ValueError(f"group(s) {empty} have no observed y (every row is NaN)")
        order = np.argsort(index, kind="stable")  # by group, keeping the row order within one
        position = np.arange(len(order)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        xs = torch.zeros(len(labels), lengths.max(), X.shape[1], dtype=dtype)
        ys = torch.zeros(len(labels), lengths.max(), y.shape[1], dtype=dtype)
        rows, cols = torch.as_tensor(index[order]), torch.as_tensor(position)
        xs[rows, cols] = torch.as_tensor(X[order], dtype=dtype)
        ys[rows, cols] = torch.as_tensor(y[order], dtype=dtype)
        names = [label.item() if hasattr(label, "item") else label for label in labels]
        return cls(xs, ys, torch.as_tensor(lengths), names=names, **options)

    @classmethod
    def from_dataframe(cls, df, x, y, group=None, **options) -> GroupedTasks:
        """Tasks from the columns of a pandas DataFrame: ``x`` and ``y`` column names (a name or a
        list), ``group`` the column labelling each row's group. ``options`` as in `from_arrays`."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError(
                "from_dataframe needs pandas: pip install 'npkit[pandas]' (or pass arrays to from_arrays)"
            ) from None
        if not isinstance(df, pd.DataFrame):
            raise ValueError(f"df must be a pandas DataFrame, got {type(df).__name__}")
        x, y = [x] if isinstance(x, str) else list(x), [y] if isinstance(y, str) else list(y)
        wanted = x + y + ([] if group is None else [group])
        absent = [c for c in wanted if c not in df.columns]
        if absent:
            raise ValueError(f"column(s) {absent} are not in the data frame; it has {list(df.columns)}")
        groups = None if group is None else df[group].to_numpy()
        return cls.from_arrays(df[x].to_numpy(np.float64), df[y].to_numpy(np.float64), groups, **options)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Batch:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        g = torch.randint(self.num_groups, (batch_size,), generator=generator)
        n = self.lengths[g]
        start = torch.zeros_like(n)
        if self.window is not None:
            n = n.clamp_max(int(self.window))
            start = _uniform_int(0, self.lengths[g] - n, generator)
        (lo_c, hi_c), (lo_t, hi_t) = self.num_context, self.num_target
        nc = _uniform_int(lo_c, (n - lo_t).clamp_max(hi_c), generator)
        nt = _uniform_int(lo_t, (n - nc).clamp_max(hi_t), generator)
        # a random order of each task's points (its window of the group), the others last
        position = torch.arange(self.x.shape[1])
        inside = (position >= start[:, None]) & (position < (start + n)[:, None])
        keys = torch.rand(batch_size, self.x.shape[1], generator=generator).masked_fill(~inside, 2.0)
        order = keys.argsort(1)
        context = order[:, : int(nc.max())]
        slots = nc[:, None] + torch.arange(int(nt.max()))
        targets = order.gather(1, slots.clamp_max(order.shape[1] - 1))
        mask_c = torch.arange(context.shape[1]) < nc[:, None]
        mask_t = torch.arange(targets.shape[1]) < nt[:, None]
        pick = lambda t, idx, mask: t[g[:, None], idx] * mask[..., None]  # padding holds zeros
        return Batch(
            xc=pick(self.x, context, mask_c),
            yc=pick(self.y, context, mask_c),
            xt=pick(self.x, targets, mask_t),
            yt=pick(self.y, targets, mask_t),
            mask_c=mask_c,
            mask_t=mask_t,
        )


def _uniform_int(low: int, high: Tensor, generator: torch.Generator | None) -> Tensor:
    """One integer uniform on {low, ..., high_b} per entry of high [B] (high_b >= low)."""
    u = torch.rand(high.shape, generator=generator, dtype=torch.float64)
    return low + (u * (high - low + 1)).long()
