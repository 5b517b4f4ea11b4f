"""Specification of npkit.tasks: Batch validation and the context/target helpers."""

import math

import pytest
import torch

from npkit.data import make_sampler
from npkit.tasks import Batch, check_context, validated_inputs

B, NC, NT, DX, DY = 2, 3, 4, 1, 2


def parts(**changes):
    """Valid Batch arguments (seeded), with some replaced."""
    g = torch.Generator().manual_seed(0)
    args = {
        "xc": torch.randn(B, NC, DX, generator=g),
        "yc": torch.randn(B, NC, DY, generator=g),
        "xt": torch.randn(B, NT, DX, generator=g),
        "yt": torch.randn(B, NT, DY, generator=g),
    }
    args.update(changes)
    return args


def with_value(name: str, value: float) -> dict:
    """Valid arguments whose tensor ``name`` has ``value`` at one entry."""
    args = parts()
    t = args[name].clone()
    t[1, 0, 0] = value
    args[name] = t
    return args


def test_valid_batch_reports_its_sizes():
    batch = Batch(**parts())
    assert (batch.batch_size, batch.num_context, batch.num_target) == (B, NC, NT)


@pytest.mark.parametrize("name", ["xc", "yc", "xt", "yt"])
def test_two_dimensional_tensor_is_rejected_naming_the_argument(name):
    args = parts()
    args[name] = args[name][..., 0]
    with pytest.raises(ValueError, match=rf"^{name} must have shape \[batch, n_points, dim\]"):
        Batch(**args)


@pytest.mark.parametrize("name", ["xc", "yc", "xt", "yt"])
def test_four_dimensional_tensor_is_rejected_naming_the_argument(name):
    args = parts()
    args[name] = args[name].unsqueeze(0)
    with pytest.raises(ValueError, match=rf"^{name} must have shape"):
        Batch(**args)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("name", ["xc", "yc", "xt", "yt"])
def test_non_finite_value_is_rejected_naming_the_argument(name, bad):
    with pytest.raises(ValueError, match=rf"^{name} contains NaN or inf"):
        Batch(**with_value(name, bad))


@pytest.mark.parametrize("name", ["xc", "yc", "xt", "yt"])
def test_non_tensor_input_is_rejected_naming_the_argument(name):
    args = parts()
    args[name] = args[name].tolist()
    with pytest.raises(TypeError, match=rf"^{name} must be a torch.Tensor, got list"):
        Batch(**args)


@pytest.mark.parametrize("name", ["xc", "yc", "xt", "yt"])
def test_integer_tensor_is_rejected_naming_the_argument(name):
    args = parts()
    args[name] = args[name].round().long()
    with pytest.raises(ValueError, match=rf"^{name} must be a floating-point tensor"):
        Batch(**args)


def test_batch_size_mismatch_between_xc_and_xt_is_rejected():
    args = parts(xt=torch.zeros(B + 1, NT, DX), yt=torch.zeros(B + 1, NT, DY))
    with pytest.raises(ValueError, match=r"batch sizes differ: xc has 2 tasks, xt has 3"):
        Batch(**args)


@pytest.mark.parametrize("yc_shape", [(B, NC + 1, DY), (B + 1, NC, DY)], ids=["n_context", "batch"])
def test_xc_and_yc_must_agree_in_batch_and_number_of_points(yc_shape):
    with pytest.raises(ValueError, match=r"xc and yc must agree in \[batch, n_context\]"):
        Batch(**parts(yc=torch.zeros(yc_shape)))


@pytest.mark.parametrize("yt_shape", [(B, NT + 1, DY), (B + 1, NT, DY)], ids=["n_target", "batch"])
def test_xt_and_yt_must_agree_in_batch_and_number_of_points(yt_shape):
    with pytest.raises(ValueError, match=r"xt and yt must agree in \[batch, n_target\]"):
        Batch(**parts(yt=torch.zeros(yt_shape)))


def test_x_dim_mismatch_between_xc_and_xt_is_rejected():
    with pytest.raises(ValueError, match=r"x_dim differs: xc has 1, xt has 2"):
        Batch(**parts(xt=torch.zeros(B, NT, 2)))


def test_y_dim_mismatch_between_yc_and_yt_is_rejected():
    with pytest.raises(ValueError, match=r"y_dim differs: yc has 2, yt has 3"):
        Batch(**parts(yt=torch.zeros(B, NT, 3)))


@pytest.mark.parametrize("name, n", [("mask_c", NC), ("mask_t", NT)])
def test_mask_of_wrong_shape_is_rejected_naming_it(name, n):
    args = parts(**{name: torch.ones(B, n + 1, dtype=torch.bool)})
    with pytest.raises(ValueError, match=rf"^{name} must have shape \({B}, {n}\)"):
        Batch(**args)


@pytest.mark.parametrize("name, n", [("mask_c", NC), ("mask_t", NT)])
def test_mask_of_non_bool_dtype_is_rejected_naming_it(name, n):
    args = parts(**{name: torch.ones(B, n)})
    with pytest.raises(ValueError, match=rf"^{name} must be a bool tensor"):
        Batch(**args)


def test_batch_without_targets_is_valid_but_has_no_y():
    batch = Batch(**parts(yt=None))
    assert batch.x.shape == (B, NC + NT, DX)
    with pytest.raises(ValueError, match="no target outputs yt"):
        _ = batch.y


def test_x_concatenates_context_then_targets():
    args = parts()
    batch = Batch(**args)
    assert batch.x.shape == (B, NC + NT, DX)
    assert torch.equal(batch.x[:, :NC], args["xc"])
    assert torch.equal(batch.x[:, NC:], args["xt"])


def test_y_concatenates_context_then_targets():
    args = parts()
    batch = Batch(**args)
    assert batch.y.shape == (B, NC + NT, DY)
    assert torch.equal(batch.y[:, :NC], args["yc"])
    assert torch.equal(batch.y[:, NC:], args["yt"])


def test_mask_is_none_when_nothing_is_masked():
    assert Batch(**parts()).mask is None


def test_mask_concatenates_context_and_target_masks():
    mask_c = torch.tensor([[True, False, True], [False, True, True]])
    mask_t = torch.tensor([[True, True, False, True], [False, False, True, True]])
    batch = Batch(**parts(mask_c=mask_c, mask_t=mask_t))
    assert torch.equal(batch.mask, torch.cat([mask_c, mask_t], dim=1))


def test_mask_treats_a_missing_part_as_all_real():
    mask_t = torch.tensor([[True, True, False, True], [False, False, True, True]])
    batch = Batch(**parts(mask_t=mask_t))
    assert torch.equal(batch.mask, torch.cat([torch.ones(B, NC, dtype=torch.bool), mask_t], 1))
    mask_c = torch.tensor([[True, False, True], [False, True, True]])
    batch = Batch(**parts(mask_c=mask_c))
    assert torch.equal(batch.mask, torch.cat([mask_c, torch.ones(B, NT, dtype=torch.bool)], 1))


def test_to_keeps_values_and_masks():
    mask_c = torch.tensor([[True, False, True], [False, True, True]])
    args = parts(mask_c=mask_c)
    moved = Batch(**args).to("cpu")
    for name in ("xc", "yc", "xt", "yt", "mask_c"):
        assert torch.equal(getattr(moved, name), args[name])
    assert moved.mask_t is None


def test_to_with_dtype_converts_floats_and_leaves_masks_bool():
    mask_t = torch.tensor([[True, True, False, True], [False, False, True, True]])
    args = parts(mask_t=mask_t)
    moved = Batch(**args).to("cpu", torch.float64)
    for name in ("xc", "yc", "xt", "yt"):
        assert getattr(moved, name).dtype == torch.float64
        assert torch.equal(getattr(moved, name), args[name].double())
    assert moved.mask_t.dtype == torch.bool
    assert torch.equal(moved.mask_t, mask_t)


def test_sample_with_truth_returns_the_same_batch_and_its_generating_gp():
    sampler = make_sampler("gp1d", kernel="periodic")
    batch, gp = sampler.sample_with_truth(3, torch.Generator().manual_seed(0))
    again = sampler.sample(3, torch.Generator().manual_seed(0))
    assert torch.equal(batch.yt, again.yt) and torch.equal(batch.xc, again.xc)
    assert gp.kernel == "periodic" and gp.period.shape == (3,)


def test_validated_inputs_skips_only_the_value_checks(monkeypatch):
    """Inside validated_inputs (training steps, evaluation) no finiteness check runs: once per batch."""
    calls = []
    real = torch.isfinite
    monkeypatch.setattr(torch, "isfinite", lambda t: calls.append(1) or real(t))
    x = torch.zeros(2, 3, 1)
    bad = x.clone()
    bad[0, 0, 0] = float("nan")
    with validated_inputs():
        check_context(x, bad, x)  # values not checked: no error, no isfinite call
        with pytest.raises(ValueError, match=r"xt must have shape"):
            check_context(x, x, torch.zeros(2, 3))  # shape checks still run
    assert calls == []
    with pytest.raises(ValueError, match="yc contains NaN"):
        check_context(x, bad, x)


def test_mixed_dtypes_are_reported():
    x = torch.zeros(2, 3, 1)
    with pytest.raises(ValueError, match="yc is torch.float64"):
        Batch(xc=x, yc=x.double(), xt=x)
