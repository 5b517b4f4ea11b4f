"""Specification of the ConvCNP (npkit.models.convcnp): exact translation equivariance for shifts by
whole coarse-grid steps, the set convolution in closed form, the grid's alignment, cover and
per-task windows, the UNet's layout, learning on gp1d and the config's checks. Permutations,
masks, ragged batches and chunking: the ALL lists of test_models, test_ragged and
test_memory_chunking."""

import math

import pytest
import torch

from npkit.data import make_sampler
from npkit.models import ConvCNPConfig, build_model
from npkit.models.convcnp import EPS, RBF_CUTOFF, grid, rbf

SMALL = {"r_dim": 16, "hidden_dim": 16, "conv_layers": 2, "kernel_size": 5, "points_per_unit": 32}


def make(**options):
    torch.manual_seed(0)
    return build_model("convcnp", **{**SMALL, **options})


def draw(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_shifting_context_and_targets_by_whole_coarse_steps_leaves_the_prediction_unchanged():
    model = make(points_per_unit=64, conv_layers=3, init="normal", init_std=0.3).double()
    xc, yc, xt = draw(3, 9, 1, seed=0), draw(3, 9, 1, seed=1), 2 * draw(3, 20, 1, seed=2)
    pred = model(xc, yc, xt)
    shift = 5 * 2**3 / 64  # an odd number of steps of the coarsest grid
    shifted = model(xc + shift, yc, xt + shift)
    torch.testing.assert_close(shifted.mean, pred.mean, rtol=0, atol=1e-9)
    torch.testing.assert_close(shifted.stddev, pred.stddev, rtol=0, atol=1e-9)
    for other in (1 / 64, 0.5 / 64):  # one fine step, half a step: only approximately equivariant
        moved = model(xc + other, yc, xt + other)
        assert not torch.allclose(moved.mean, pred.mean, rtol=0, atol=1e-6)


def test_the_decoder_reads_the_representation_alone():
    model = make()
    assert model.decoder.in_dim == SMALL["r_dim"]


def test_density_of_one_context_point_is_the_rbf_on_the_grid():
    model = make().double()
    path, x, y = model.deterministic, 0.3, -1.7
    xc, yc = torch.full((1, 1, 1), x, dtype=torch.float64), torch.full((1, 1, 1), y, dtype=torch.float64)
    u, _ = grid(xc, None, 32, 2.0)
    with torch.no_grad():
        channels = path.set_conv(xc, yc, None, u)  # [1, G, 2]
    scale = path.log_scale_in.exp().detach()
    assert scale.item() == pytest.approx(2 / 32, rel=1e-6)  # the initial length scale
    density = torch.exp(-(((u - x) / scale) ** 2).clamp(max=RBF_CUTOFF) / 2)
    assert density.min() == pytest.approx(math.exp(-RBF_CUTOFF / 2))  # the grid reaches the cutoff
    torch.testing.assert_close(channels[0, :, 0], density, rtol=1e-12, atol=0)
    torch.testing.assert_close(channels[0, :, 1], y * density / (density + EPS), rtol=1e-12, atol=0)


def test_the_rbf_length_scale_gradient_is_the_plain_formulas():
    x, u = draw(2, 5, seed=0), torch.linspace(-3, 3, 40, dtype=torch.float64)
    log_scale = torch.tensor(-1.5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda ls: rbf(x, u, ls), (log_scale,))
    weights = draw(2, 5, 40, seed=1)
    fast = torch.autograd.grad((rbf(x, u, log_scale) * weights).sum(), log_scale)[0]
    plain = torch.autograd.grad((rbf(x.requires_grad_(), u, log_scale) * weights).sum(), log_scale)[0]
    torch.testing.assert_close(fast, plain, rtol=1e-12, atol=1e-15)


def test_masked_context_points_get_exactly_zero_weight_even_on_the_grid():
    model = make().double()
    xc, yc = draw(1, 4, 1, seed=0), draw(1, 4, 1, seed=1)
    padded_x, padded_y = torch.cat([xc, xc[:, :2] + 0.01], 1), torch.cat([yc, yc[:, :2] + 5.0], 1)
    mask = torch.tensor([[True] * 4 + [False] * 2])
    u, _ = grid(xc, None, 32, 2.0)
    path = model.deterministic
    assert torch.equal(path.set_conv(padded_x, padded_y, mask, u), path.set_conv(xc, yc, None, u))


def check_window(u, window, lo, hi, ppu, multiple, origin=0):
    """The window is [start, end) with start, end = origin + multiples of `multiple` steps, the
    tightest such cover of [lo, hi]."""
    inside = u[window] * ppu
    start, end = inside[0].item(), inside[-1].item() + 1
    assert torch.equal(window, (u * ppu >= start) & (u * ppu < end))
    assert (start - origin) % multiple == 0 and (end - origin) % multiple == 0
    assert start <= lo * ppu < start + multiple and end - multiple <= hi * ppu < end


def test_grid_is_aligned_and_each_window_covers_its_real_context_with_the_margin():
    xc = torch.tensor([[[-1.23], [0.4], [50.0]], [[2.01], [1.5], [1.7]], [[9.0], [9.0], [9.0]]])
    mask = torch.tensor([[True, True, False], [True, True, True], [False, False, False]])
    ppu, margin, multiple = 16, 0.5, 8
    u, window = grid(xc, mask, ppu, margin, multiple)
    steps = u * ppu
    assert torch.equal(steps, steps.round()) and torch.equal(steps.diff(), torch.ones(len(u) - 1))
    assert steps[0] % multiple == 0 and len(u) % multiple == 0
    for b, (lo, hi) in enumerate([(-1.23, 0.4), (1.5, 2.01)]):
        check_window(u, window[b], lo - margin, hi + margin, ppu, multiple)
    assert window[:2].any(0).all()  # the grid is the union of the windows
    assert not window[2].any()  # no real context: an empty window


def test_x_range_is_always_covered_and_fixes_the_grid_of_contexts_inside_it():
    ppu, margin, multiple, x_range = 16, 0.25, 8, [-2.0, 2.0]
    origin = math.floor((x_range[0] - margin) * ppu)
    xc = torch.tensor([[[-1.95], [0.4]], [[0.1], [0.2]], [[5.0], [0.0]], [[0.0], [0.0]]])
    mask = torch.tensor([[True, True], [True, True], [True, True], [False, False]])
    u, window = grid(xc, mask, ppu, margin, multiple, x_range)
    assert (u[0] * ppu - origin) % multiple == 0 and len(u) % multiple == 0
    check_window(u, window[0], -2.2, 2.0, ppu, multiple, origin)  # context +- margin beyond x_range: covered
    check_window(u, window[2], -2.0, 5.25, ppu, multiple, origin)
    for b in (1, 3):  # contexts inside x_range, or none: x_range - margin's window, the same for all
        check_window(u, window[b], x_range[0] - margin, x_range[1], ppu, multiple, origin)
    assert torch.equal(window[1], window[3]) and torch.equal(window[0], window[1])  # -1.95 - 0.25 rounds in


def test_x_range_gives_targets_far_from_the_context_a_representation():
    xc, yc = torch.full((1, 3, 1), 0.1), torch.ones(1, 3, 1)
    far = torch.tensor([[[1.8]]])
    for x_range, reaches in ((None, False), ([-2.0, 2.0], True)):
        path = make(x_range=x_range).deterministic
        with torch.no_grad():
            r = path(far, path.encode(xc, yc, None))
        assert bool(r.abs().max() > 1e-6) is reaches


def test_a_batch_of_different_windows_predicts_each_task_exactly_as_alone():
    model = make(conv_layers=3).double()
    xc, yc, xt = draw(3, 6, 1, seed=0), draw(3, 6, 1, seed=1), draw(3, 5, 1, seed=2)
    xc[1] = xc[1] / 4 + 3.0  # windows far apart: the batch's grid is much wider than each
    xt[1] = xt[1] / 4 + 3.0
    _, window = grid(xc, None, SMALL["points_per_unit"], model.config.margin, 2**3)
    assert not window.all(0).any()  # no grid point is in every window
    with torch.no_grad():
        together = model(xc, yc, xt)
        for b in range(3):
            alone = model(xc[b : b + 1], yc[b : b + 1], xt[b : b + 1])
            torch.testing.assert_close(together.mean[b : b + 1], alone.mean, rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(together.stddev[b : b + 1], alone.stddev, rtol=1e-10, atol=1e-12)


def reference_unet(unet, h):
    """The UNet with torch's own Conv1d / ConvTranspose1d, channels first: h [B, G, C]."""
    h, skips = h.transpose(1, 2), []
    for conv in unet.down:
        h = torch.relu(conv(h))
        skips.append(h)
    h = torch.relu(unet.up[-1](skips[-1]))
    for level in reversed(range(len(unet.up) - 1)):
        h = torch.relu(unet.up[level](torch.cat([skips[level], h], 1)))
    return h.transpose(1, 2)


@pytest.mark.parametrize("kernel_size", [3, 5])
def test_unet_is_the_layout_of_neuralprocesses_with_torchs_convolutions(kernel_size):
    unet = make(conv_layers=3, kernel_size=kernel_size).double().deterministic.unet
    assert [m.stride[0] for m in [*unet.down, *unet.up]] == [2] * 6
    assert [m.in_channels for m in unet.up] == [32, 32, 16]  # skips concatenated but at the deepest level
    h = draw(2, 24, 2, seed=3).abs()
    torch.testing.assert_close(unet(h, None), reference_unet(unet, h), rtol=1e-12, atol=1e-12)


def test_preset_size_has_the_peers_parameter_count_and_a_receptive_field_of_several_units():
    model = build_model("convcnp", r_dim=64, conv_layers=6, kernel_size=5, decoder_layers=1)
    assert sum(p.numel() for p in model.parameters()) == 329_220  # neuralprocesses' construct_convgnp, 64 x 6
    h = torch.zeros(1, 512, 2, requires_grad=True)
    model.deterministic.unet(h, None)[0, 256].sum().backward()
    reached = h.grad.abs().sum(-1)[0].nonzero()
    assert (reached.max() - reached.min()).item() / 64 > 4.0  # units: well beyond gp1d's length scales


def test_training_on_gp1d_raises_the_target_log_likelihood():
    torch.manual_seed(0)
    sampler, generator = make_sampler("gp1d"), torch.Generator().manual_seed(0)
    held_out = [sampler.sample(16, generator) for _ in range(4)]
    model = make(r_dim=8, hidden_dim=8, points_per_unit=16, x_range=[-2.0, 2.0])

    def target_ll() -> float:
        with torch.no_grad():
            return sum(model(b.xc, b.yc, b.xt).log_prob(b.yt).mean().item() for b in held_out) / len(held_out)

    before = target_ll()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(120):
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


@pytest.mark.parametrize("value", [[1.0, 0.0], [0.0, 0.0], [0.0], [0.0, 1.0, 2.0], [0.0, math.inf], [math.nan, 1.0]])
def test_x_range_must_be_two_finite_increasing_numbers(value):
    with pytest.raises(ValueError, match=r"^x_range must be two finite increasing numbers \[low, high\] or None, got"):
        ConvCNPConfig(x_range=value)


def test_x_range_is_read_from_a_config_list():
    assert build_model("convcnp", x_range=[-2, 2]).config.x_range == [-2.0, 2.0]
    with pytest.raises(ValueError, match=r"x_range"):
        build_model("convcnp", x_range=["a", 2])
