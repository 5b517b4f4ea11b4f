"""Tasks from your own data (npkit.data.arrays): groups are functions, ragged batches are padded
and masked, NaN y is masked only when asked, a single group is refused unless windowed."""

import sys

import numpy as np
import pytest
import torch

from npkit.data.arrays import GroupedTasks
from npkit.data.sampling import TaskSampler

LENGTHS = {"a": 12, "b": 5, "c": 20}  # ragged groups


def grouped_rows(seed: int = 0):
    """Rows of three groups of different lengths, interleaved; x is unique per row and y = x + 100
    times the group's index, so every point names its group and row."""
    rng = np.random.default_rng(seed)
    groups = np.concatenate([[name] * n for name, n in LENGTHS.items()])
    rng.shuffle(groups)
    X = np.arange(len(groups), dtype=np.float64)[:, None] / 10
    y = X[:, 0] + 100 * np.searchsorted(sorted(LENGTHS), groups)
    return X, y, groups


def observed_points(batch, b: int, part: str) -> torch.Tensor:
    x, mask = getattr(batch, f"x{part}")[b, :, 0], getattr(batch, f"mask_{part}")[b]
    return x[mask]


def test_from_arrays_is_attached_to_the_task_sampler_protocol():
    X, y, groups = grouped_rows()
    tasks = TaskSampler.from_arrays(X, y, groups=groups)
    assert isinstance(tasks, GroupedTasks)
    assert tasks.names == ["a", "b", "c"] and tasks.lengths.tolist() == [12, 5, 20]


def test_each_task_is_one_group_split_into_disjoint_context_and_targets():
    X, y, groups = grouped_rows()
    tasks = GroupedTasks.from_arrays(X, y, groups, num_context=(0, 8), num_target=(1, 30))
    batch = tasks.sample(32, torch.Generator().manual_seed(0))
    for b in range(32):
        xc, xt = observed_points(batch, b, "c"), observed_points(batch, b, "t")
        yc, yt = batch.yc[b, batch.mask_c[b], 0], batch.yt[b, batch.mask_t[b], 0]
        label = torch.cat([yc - xc, yt - xt]).round()  # 100 * the group's index
        assert (label == label[0]).all(), f"task {b} mixes groups"
        n = LENGTHS["abc"[int(label[0]) // 100]]
        assert len(set(xc.tolist()) | set(xt.tolist())) == len(xc) + len(xt), f"task {b} repeats a point"
        assert 0 <= len(xc) <= min(8, n - 1) and 1 <= len(xt) <= n - len(xc), f"task {b}: sizes out of range"


def test_batches_are_ragged_with_zero_padding():
    X, y, groups = grouped_rows()
    batch = GroupedTasks.from_arrays(X, y, groups, num_context=(0, 8), num_target=(1, 30)).sample(
        32, torch.Generator().manual_seed(0)
    )
    assert len(set(batch.mask_c.sum(1).tolist())) > 1 and len(set(batch.mask_t.sum(1).tolist())) > 1
    for part in ("xc", "yc", "xt", "yt"):
        mask = batch.mask_c if part.endswith("c") else batch.mask_t
        assert (getattr(batch, part)[~mask] == 0).all(), f"{part} padding"


def test_sampling_is_deterministic_given_the_generator():
    X, y, groups = grouped_rows()
    tasks = GroupedTasks.from_arrays(X, y, groups)
    one, two = (tasks.sample(8, torch.Generator().manual_seed(3)) for _ in range(2))
    assert torch.equal(one.xc, two.xc) and torch.equal(one.yt, two.yt) and torch.equal(one.mask_t, two.mask_t)


def test_a_single_group_is_refused_with_what_meta_learning_needs():
    X, y, _ = grouped_rows()
    with pytest.raises(ValueError, match=r"single group.*meta-learns from many functions.*groups=.*window=W"):
        GroupedTasks.from_arrays(X, y)


def test_window_samples_runs_of_consecutive_points_of_one_series():
    x = np.arange(40.0)
    tasks = GroupedTasks.from_arrays(x, 2 * x, window=6, num_context=(1, 3), num_target=(1, 6))
    batch = tasks.sample(16, torch.Generator().manual_seed(1))
    starts = set()
    for b in range(16):
        points = torch.cat([observed_points(batch, b, "c"), observed_points(batch, b, "t")])
        assert points.max() - points.min() <= 5, f"task {b} spans more than a window"
        starts.add(int(points.min()))
    assert len(starts) > 4  # windows at many places of the series


def test_nan_y_is_refused_naming_the_rows():
    X, y, groups = grouped_rows()
    y[[3, 17]] = np.nan
    with pytest.raises(
        ValueError, match=r"^y has NaN in rows \[3, 17\]; pass missing='mask' to treat them as missing$"
    ):
        GroupedTasks.from_arrays(X, y, groups)


def test_nan_y_with_missing_mask_drops_those_points():
    X, y, groups = grouped_rows()
    y[[3, 17]] = np.nan
    tasks = GroupedTasks.from_arrays(X, y, groups, missing="mask")
    keep = ~np.isnan(y)
    same = GroupedTasks.from_arrays(X[keep], y[keep], groups[keep])
    assert torch.equal(tasks.x, same.x) and torch.equal(tasks.y, same.y) and tasks.digest == same.digest
    assert tasks.lengths.sum() == len(y) - 2 and torch.isfinite(tasks.y).all()


def test_bad_inputs_get_one_line_errors():
    X, y, groups = grouped_rows()
    bad_x = X.copy()
    bad_x[4] = np.inf
    with pytest.raises(ValueError, match=r"X has NaN or inf in rows \[4\]"):
        GroupedTasks.from_arrays(bad_x, y, groups)
    with pytest.raises(ValueError, match=r"groups must have shape \[37\]"):
        GroupedTasks.from_arrays(X, y, groups[:-1])
    with pytest.raises(ValueError, match="X and y must have the same number of rows"):
        GroupedTasks.from_arrays(X, y[:-1], groups)
    with pytest.raises(ValueError, match="missing must be one of"):
        GroupedTasks.from_arrays(X, y, groups, missing="drop")
    with pytest.raises(ValueError, match=r"group\(s\) 'b' have fewer than num_context\[0\] \+ num_target\[0\] = 6"):
        GroupedTasks.from_arrays(X, y, groups, num_context=(5, 8))


def test_from_arrays_takes_torch_tensors_and_integer_groups():
    X, y, groups = grouped_rows()
    index = torch.as_tensor(np.searchsorted(sorted(LENGTHS), groups))
    tasks = GroupedTasks.from_arrays(torch.as_tensor(X), torch.as_tensor(y)[:, None], index)
    reference = GroupedTasks.from_arrays(X, y, groups)
    assert tasks.names == [0, 1, 2] and tasks.digest == reference.digest


def test_from_dataframe_without_pandas_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now raises ImportError
    with pytest.raises(ImportError, match=r"from_dataframe needs pandas: pip install 'npkit\[pandas\]'"):
        TaskSampler.from_dataframe(object(), x="t", y="temp", group="station")


def test_from_dataframe_reads_the_named_columns():
    pd = pytest.importorskip("pandas")
    X, y, groups = grouped_rows()
    df = pd.DataFrame({"t": X[:, 0], "temp": y, "station": groups, "other": 0.0})
    tasks = TaskSampler.from_dataframe(df, x=["t"], y="temp", group="station")
    assert tasks.digest == GroupedTasks.from_arrays(X, y, groups).digest
    with pytest.raises(ValueError, match=r"column\(s\) \['rain'\] are not in the data frame"):
        TaskSampler.from_dataframe(df, x="t", y="rain", group="station")
