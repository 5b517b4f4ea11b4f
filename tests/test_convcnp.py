"""Specification of the ConvCNP (npkit.models.convcnp): exact translation equivariance on the grid,
the set convolution in closed form, the grid's alignment and cover, learning on gp1d and its
1D-only config. Permutations, masks, ragged batches and chunking: the ALL lists of test_models,
test_ragged and test_memory_chunking."""

import math

import pytest
import torch

from npkit.data import make_sampler
from npkit.models import ConvCNPConfig, build_model
from npkit.models.convcnp import EPS, grid

SMALL = {"r_dim": 16, "hidden_dim": 16, "conv_layers": 2, "kernel_size": 11, "points_per_unit": 32}


def make(**options):
    torch.manual_seed(0)
    return build_model("convcnp", **{**SMALL, **options})


def draw(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_shifting_context_and_targets_by_whole_grid_steps_leaves_the_prediction_unchanged():
    model = make(points_per_unit=64, init="normal", init_std=0.3).double()
    xc, yc, xt = draw(3, 9, 1, seed=0), draw(3, 9, 1, seed=1), 2 * draw(3, 20, 1, seed=2)
    shift = 37 / 64
    pred, shifted = model(xc, yc, xt), model(xc + shift, yc, xt + shift)
    torch.testing.assert_close(shifted.mean, pred.mean, rtol=0, atol=1e-5)
    torch.testing.assert_close(shifted.stddev, pred.stddev, rtol=0, atol=1e-5)
    moved = model(xc + 0.5 / 64, yc, xt + 0.5 / 64)  # half a step: only approximately equivariant
    assert not torch.equal(moved.mean, pred.mean)


def test_the_decoder_reads_the_representation_alone():
    model = make()
    assert model.decoder.in_dim == SMALL["r_dim"]


def test_density_of_one_context_point_is_the_rbf_on_the_grid():
    model = make().double()
    path, x, y = model.deterministic, 0.3, -1.7
    xc, yc = torch.full((1, 1, 1), x, dtype=torch.float64), torch.full((1, 1, 1), y, dtype=torch.float64)
    u, _ = grid(xc, None, 32, 2.0)
    channels = path.set_conv(xc, yc, None, u)  # [1, G, 2]
    scale = path.log_scale_in.exp()
    assert scale.item() == pytest.approx(2 / 32, rel=1e-6)  # the initial length scale
    density = torch.exp(-((u - x) ** 2) / (2 * scale**2))
    torch.testing.assert_close(channels[0, :, 0], density, rtol=1e-12, atol=0)
    torch.testing.assert_close(channels[0, :, 1], y * density / (density + EPS), rtol=1e-12, atol=0)


def test_masked_context_points_get_exactly_zero_weight_even_on_the_grid():
    model = make().double()
    xc, yc = draw(1, 4, 1, seed=0), draw(1, 4, 1, seed=1)
    padded_x, padded_y = torch.cat([xc, xc[:, :2] + 0.01], 1), torch.cat([yc, yc[:, :2] + 5.0], 1)
    mask = torch.tensor([[True] * 4 + [False] * 2])
    u, _ = grid(xc, None, 32, 2.0)
    path = model.deterministic
    assert torch.equal(path.set_conv(padded_x, padded_y, mask, u), path.set_conv(xc, yc, None, u))


def test_grid_is_aligned_and_covers_each_real_context_with_the_margin():
    xc = torch.tensor([[[-1.23], [0.4], [50.0]], [[2.01], [1.5], [1.7]], [[9.0], [9.0], [9.0]]])
    mask = torch.tensor([[True, True, False], [True, True, True], [False, False, False]])
    ppu, margin = 16, 0.5
    u, window = grid(xc, mask, ppu, margin)
    steps = u * ppu
    assert torch.equal(steps, steps.round()) and torch.equal(steps.diff(), torch.ones(len(u) - 1))
    assert u[0] <= -1.23 - margin < u[0] + 1 / ppu and u[-1] - 1 / ppu < 2.01 + margin <= u[-1]
    for b, (lo, hi) in enumerate([(-1.23, 0.4), (1.5, 2.01)]):
        inside = u[window[b]]
        assert inside[0] <= lo - margin < inside[0] + 1 / ppu and inside[-1] - 1 / ppu < hi + margin <= inside[-1]
        assert torch.equal(window[b], (u >= inside[0]) & (u <= inside[-1]))
    assert not window[2].any()  # no real context: an empty window


def test_training_on_gp1d_raises_the_target_log_likelihood():
    torch.manual_seed(0)
    sampler, generator = make_sampler("gp1d"), torch.Generator().manual_seed(0)
    held_out = [sampler.sample(16, generator) for _ in range(4)]
    model = make(r_dim=8, hidden_dim=8, points_per_unit=16, margin=1.0, kernel_size=5)

    def target_ll() -> float:
        with torch.no_grad():
            return sum(model(b.xc, b.yc, b.xt).log_prob(b.yt).mean().item() for b in held_out) / len(held_out)

    before = target_ll()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(200):
        batch = sampler.sample(8, generator)
        loss = -model(batch.xc, batch.yc, batch.xt).log_prob(batch.yt).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = target_ll()
    assert math.isfinite(after) and after > before + 1.0, (before, after)


def test_x_dim_other_than_one_is_rejected():
    with pytest.raises(ValueError, match=r"^x_dim must be 1 for the ConvCNP \(a 1D grid\), got 2$"):
        ConvCNPConfig(x_dim=2)
    with pytest.raises(ValueError, match=r"^x_dim must be 1"):
        build_model("convcnp", x_dim=2)


@pytest.mark.parametrize("option, value", [("kernel_size", 4), ("margin", -0.1), ("points_per_unit", 0)])
def test_invalid_grid_options_are_rejected_naming_them(option, value):
    with pytest.raises(ValueError, match=rf"^{option} must"):
        ConvCNPConfig(**{option: value})
