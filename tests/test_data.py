"""Specification of npkit.data: task samplers, the gp1d protocol (docs/benchmarks/protocols.md, protocol 1),
GP kernels and presets."""

import math

import pytest
import torch

from npkit.data import (
    IMAGE_PRESETS,
    PRESETS,
    SET_PRESETS,
    FivePointSine,
    GPSampler,
    SineSampler,
    TaskPool,
    TrueGP,
    gp1d_nps,
    make_sampler,
)

FUNCTION_PRESETS = sorted(set(PRESETS) - set(IMAGE_PRESETS) - set(SET_PRESETS))  # images, sets: their own tests


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- presets


@pytest.mark.parametrize("name", FUNCTION_PRESETS)
def test_every_preset_samples_batches_of_consistent_shapes(name):
    batch = make_sampler(name).sample(4, gen(0))
    nc, nt = batch.num_context, batch.num_target
    assert batch.xc.shape == (4, nc, 1)
    assert batch.yc.shape == (4, nc, 1)
    assert batch.xt.shape == (4, nt, 1)
    assert batch.yt.shape == (4, nt, 1)
    assert nt >= 1
    for t in (batch.xc, batch.yc, batch.xt, batch.yt):
        assert t.dtype == torch.float32
        assert torch.isfinite(t).all()


@pytest.mark.parametrize("name", FUNCTION_PRESETS)
def test_same_generator_seed_gives_identical_batch(name):
    a = make_sampler(name).sample(4, gen(123))
    b = make_sampler(name).sample(4, gen(123))
    for field in ("xc", "yc", "xt", "yt"):
        assert torch.equal(getattr(a, field), getattr(b, field))


@pytest.mark.parametrize("name", FUNCTION_PRESETS)
def test_different_generator_seeds_give_different_batches(name):
    a = make_sampler(name).sample(8, gen(1))
    b = make_sampler(name).sample(8, gen(2))
    same = a.x.shape == b.x.shape and torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not same


@pytest.mark.parametrize("name", FUNCTION_PRESETS)
def test_batch_size_below_one_is_rejected(name):
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        make_sampler(name).sample(0, gen(0))


def test_unknown_preset_name_is_rejected_naming_it():
    with pytest.raises(ValueError, match=r"unknown data preset 'gp2d'.*gp1d"):
        make_sampler("gp2d")


@pytest.mark.parametrize(
    "build",
    [
        lambda: make_sampler("gp1d", kernel="cosine"),
        lambda: make_sampler("gp", kernel="cosine"),
        lambda: GPSampler(kernel="cosine"),
    ],
    ids=["gp1d", "gp", "GPSampler"],
)
def test_unknown_kernel_name_is_rejected_naming_it(build):
    with pytest.raises(ValueError, match=r"unknown kernel 'cosine'"):
        build()


def test_gp1d_nps_rejects_a_kernel_outside_its_protocol_naming_it():
    with pytest.raises(ValueError, match=r"gp1d-nps kernel must be one of .*got 'periodic'"):
        gp1d_nps("periodic")


def test_unknown_override_is_rejected_naming_it():
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['lengthscale'\] for data preset 'gp1d'"):
        make_sampler("gp1d", lengthscale=(0.1, 0.2))


def test_overrides_are_applied_and_lists_become_ranges():
    sampler = make_sampler("gp1d", kernel="matern52", noise_std=0.1, num_context=[5, 5])
    assert sampler.kernel == "matern52"
    assert sampler.noise_std == 0.1
    assert sampler.num_context == (5, 5)
    assert make_sampler("gp1d", num_context=[5, 5]).sample(2, gen(0)).num_context == 5


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"scale": (0.0, 1.0)}, r"scale must be a range"),
        ({"length": (0.6, 0.1)}, r"length must be a range"),
        ({"period": (-0.1, 0.5)}, r"period must be a range"),
        ({"noise_std": -0.01}, r"noise_std must be >= 0"),
        ({"num_context": (5, 3)}, r"num_context must satisfy"),
        ({"num_context": (-1, 3)}, r"num_context must satisfy"),
        ({"num_target": (0, 3)}, r"num_target must satisfy"),
        ({"num_target": (5, 4)}, r"num_target must satisfy"),
        ({"num_context": (3, 47)}, r"max_points=49 is below"),
        ({"x_range": (2.0, -2.0)}, r"x_range must be"),
    ],
)
def test_bad_gp_sampler_ranges_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GPSampler(**kwargs)


def test_bad_ranges_are_rejected_through_make_sampler_too():
    with pytest.raises(ValueError, match=r"length must be a range"):
        make_sampler("gp1d", length=[0.0, 0.5])


def test_bad_sine_sampler_range_is_rejected():
    with pytest.raises(ValueError, match=r"num_context must satisfy"):
        SineSampler(num_context=(10, 3))


@pytest.mark.parametrize("num_context", [(1, 5), (-1, 2), (3, 2)])
def test_bad_five_point_sine_context_range_is_rejected(num_context):
    with pytest.raises(ValueError, match=r"num_context must lie in 0..4"):
        FivePointSine(num_context=num_context)


# --------------------------------------------------------------------------- gp1d protocol


@pytest.fixture(scope="module")
def gp1d_counts():
    """(Nc, Nt) of 1500 gp1d batches, and every x drawn."""
    sampler = make_sampler("gp1d")
    g = gen(7)
    counts, xs = [], []
    for _ in range(1500):
        batch = sampler.sample(1, g)
        counts.append((batch.num_context, batch.num_target))
        xs.append(batch.x.flatten())
    return torch.tensor(counts), torch.cat(xs)


def test_gp1d_context_size_is_uniform_on_3_to_46(gp1d_counts):
    nc = gp1d_counts[0][:, 0]
    assert nc.min() == 3 and nc.max() == 46
    assert set(nc.tolist()) == set(range(3, 47))
    # mean of U{3..46} is 24.5; the standard error over 1500 draws is about 0.33
    assert abs(nc.double().mean().item() - 24.5) < 1.5


def test_gp1d_target_size_lies_in_3_to_49_minus_nc(gp1d_counts):
    nc, nt = gp1d_counts[0].unbind(1)
    assert (nt >= 3).all()
    assert (nt <= 49 - nc).all()
    assert (nc + nt <= 49).all()
    assert (nt == 3).any() and (nt == 49 - nc).any()


def test_gp1d_target_size_is_uniform_given_the_context_size(gp1d_counts):
    nc, nt = gp1d_counts[0].double().unbind(1)
    # Nt - 3 ~ U{0..46-Nc} has conditional mean (46 - Nc) / 2; standard error here < 0.3
    assert abs((nt - 3 - (46 - nc) / 2).mean().item()) < 1.0


def test_gp1d_inputs_lie_in_minus_2_to_2_and_fill_it(gp1d_counts):
    x = gp1d_counts[1]
    assert x.min() >= -2.0 and x.max() <= 2.0
    assert x.min() < -1.99 and x.max() > 1.99
    assert abs(x.double().mean().item()) < 0.05  # U(-2, 2): sd 1.15, > 30k draws


@pytest.mark.parametrize("kernel", ["rbf", "matern52", "periodic"])
def test_gp1d_hyper_parameters_are_drawn_per_task_within_their_ranges(kernel):
    gp = make_sampler("gp1d", kernel=kernel).sample_with_truth(500, gen(3))[1]
    assert gp.kernel == kernel
    assert gp.noise_std == 0.02
    for values, (low, high) in ((gp.scale, (0.1, 1.0)), (gp.length, (0.1, 0.6))):
        assert values.shape == (500,)
        assert values.min() >= low and values.max() <= high
        # 500 uniform draws come within 2% of the range of both ends
        assert values.min() < low + 0.02 * (high - low) and values.max() > high - 0.02 * (high - low)
    if kernel == "periodic":
        assert gp.period.shape == (500,)
        assert gp.period.min() >= 0.1 and gp.period.max() <= 0.5
        assert gp.period.min() < 0.108 and gp.period.max() > 0.492
    else:
        assert gp.period is None


def test_gp1d_context_and_targets_are_the_first_and_last_points_of_one_joint_draw():
    """Context and targets of a task come from the same function: at (almost) equal inputs
    their outputs agree up to the observation noise."""
    sampler = make_sampler("gp1d", scale=(1.0, 1.0), length=(0.5, 0.5), noise_std=0.0)
    batch = sampler.sample(64, gen(0))
    # nearest pair of a context and a target point in each task
    d = (batch.xc - batch.xt.transpose(1, 2)).abs()  # [B, Nc, Nt]
    flat = d.flatten(1).argmin(1)
    i, j = flat // batch.num_target, flat % batch.num_target
    b = torch.arange(64)
    close = d[b, i, j] < 0.01
    assert close.sum() > 10
    diff = (batch.yc[b, i, 0] - batch.yt[b, j, 0])[close]
    # rbf, l=0.5, d<0.01: sd of f(x)-f(x') is sqrt(2 (1 - k)) < 0.02
    assert diff.abs().max() < 0.1


@pytest.mark.parametrize("kernel, period", [("rbf", None), ("matern52", None), ("periodic", 0.45)])
def test_gp_samples_have_the_kernel_covariance_plus_noise(kernel, period):
    s, length, noise, x1, x2 = 0.8, 0.4, 0.3, 0.1, 0.4
    d = abs(x2 - x1)
    if kernel == "rbf":
        k = math.exp(-(d**2) / (2 * length**2))
    elif kernel == "matern52":
        r = d / length
        k = (1 + math.sqrt(5) * r + 5 * r**2 / 3) * math.exp(-math.sqrt(5) * r)
    else:
        k = math.exp(-2 * math.sin(math.pi * d / period) ** 2 / length**2)
    expected = torch.tensor([[s**2 + noise**2, s**2 * k], [s**2 * k, s**2 + noise**2]], dtype=torch.float64)

    m = 200_000
    sampler = GPSampler(
        kernel=kernel,
        scale=(s, s),
        length=(length, length),
        period=(period or 0.3, period or 0.3),
        noise_std=noise,
    )
    x = torch.tensor([x1, x2], dtype=torch.float64).expand(m, 2).unsqueeze(-1)
    y, _ = sampler.functions(x, gen(11))
    y = y[..., 0]  # [M, 2]
    empirical = y.T @ y / m  # the mean is known to be 0
    # zero-mean Gaussian: Var(y_i y_j) = S_ii S_jj + S_ij^2; allow 5 standard errors
    se = ((expected.diag()[:, None] * expected.diag()[None, :] + expected**2) / m).sqrt()
    assert ((empirical - expected).abs() < 5 * se).all(), (empirical, expected, se)
    assert y.mean(0).abs().max() < 5 * math.sqrt((s**2 + noise**2) / m)


@pytest.mark.parametrize("kernel", ["rbf", "matern52", "periodic", "weakly_periodic"])
def test_true_gp_covariance_of_a_point_with_itself_is_the_squared_scale(kernel):
    gp = TrueGP(
        kernel,
        torch.tensor([0.7], dtype=torch.float64),
        torch.tensor([0.3], dtype=torch.float64),
        torch.tensor([0.4], dtype=torch.float64),
        0.02,
    )
    x = torch.tensor([[[0.25]]], dtype=torch.float64)
    assert gp.covariance(x, x).item() == pytest.approx(0.49, rel=1e-12)


def kernel_values(kernel: str, scale: float, length: float, period: float | None, d: list[float]):
    f64 = lambda v: torch.tensor([v], dtype=torch.float64)
    gp = TrueGP(kernel, f64(scale), f64(length), None if period is None else f64(period), 0.0)
    x1 = torch.tensor([[[0.3]]], dtype=torch.float64)
    x2 = (0.3 + torch.tensor(d, dtype=torch.float64)).view(1, -1, 1)
    return gp.covariance(x1, x2)[0, 0]


def test_rbf_kernel_closed_form():
    # s = 2, l = 0.5: k(d) = 4 exp(-d^2 / 0.5); d = 0.5 -> 4 e^-0.5, d = 1 -> 4 e^-2, d = -1 too
    got = kernel_values("rbf", 2.0, 0.5, None, [0.0, 0.5, 1.0, -1.0])
    want = [4.0, 4 * 0.6065306597126334, 4 * 0.1353352832366127, 4 * 0.1353352832366127]
    assert got.tolist() == pytest.approx(want, rel=1e-12)


def test_matern52_kernel_closed_form():
    # s = 1, l = 1: d = 1 -> r = sqrt5 = 2.2360679775, (1 + 2.2360679775 + 5/3) e^-2.2360679775
    # s = 1, l = 2: d = 1 -> r = sqrt5/2 = 1.1180339887, (1 + 1.1180339887 + 5/12) e^-1.1180339887
    got1 = kernel_values("matern52", 1.0, 1.0, None, [0.0, 1.0, -1.0])
    got2 = kernel_values("matern52", 1.0, 2.0, None, [1.0])
    at_1 = (1 + 2.23606797749979 + 5 / 3) * 0.10687792566038574
    assert got1.tolist() == pytest.approx([1.0, at_1, at_1], rel=1e-12)
    assert got2.item() == pytest.approx((1 + 1.118033988749895 + 5 / 12) * 0.3269218953517579, rel=1e-12)


def test_periodic_kernel_closed_form():
    # s = 1.5, l = 1, p = 0.5: d = p/4 -> sin^2(pi/4) = 1/2 -> 2.25 e^-1;
    # d = p/2 -> sin^2(pi/2) = 1 -> 2.25 e^-2; d = p -> sin(pi) = 0 -> 2.25 (periodicity)
    got = kernel_values("periodic", 1.5, 1.0, 0.5, [0.125, 0.25, 0.5, 1.0])
    want = [2.25 * 0.36787944117144233, 2.25 * 0.1353352832366127, 2.25, 2.25]
    assert got.tolist() == pytest.approx(want, rel=1e-10)


def test_periodic_kernel_length_scale_enters_squared():
    # s = 1, l = 0.5, p = 0.5, d = p/4: exp(-2 * (1/2) / 0.25) = e^-4
    got = kernel_values("periodic", 1.0, 0.5, 0.5, [0.125])
    assert got.item() == pytest.approx(0.01831563888873418, rel=1e-10)


def test_weakly_periodic_kernel_closed_form():
    # s = 1, l = 1, p = 0.5, d = 0.125: exp(-0.125^2 / 2) * exp(-2 * 1/2)
    got = kernel_values("weakly_periodic", 1.0, 1.0, 0.5, [0.125])
    assert got.item() == pytest.approx(0.9922179382602435 * 0.36787944117144233, rel=1e-10)


# --------------------------------------------------------------------------- gp1d-nps


def test_gp1d_nps_has_noise_variance_0_05_and_unit_scale():
    sampler = make_sampler("gp1d-nps")
    assert sampler.noise_std**2 == pytest.approx(0.05, rel=1e-12)
    gp = sampler.sample_with_truth(8, gen(0))[1]
    assert gp.noise_std**2 == pytest.approx(0.05, rel=1e-12)
    assert torch.all(gp.scale == 1.0) and torch.all(gp.length == 0.25)


def test_gp1d_nps_weakly_periodic_uses_length_0_5_and_period_0_25():
    gp = make_sampler("gp1d-nps", kernel="weakly_periodic").sample_with_truth(4, gen(0))[1]
    assert torch.all(gp.length == 0.5) and torch.all(gp.period == 0.25)


def test_gp1d_nps_has_50_targets_and_0_to_30_context_points():
    sampler = make_sampler("gp1d-nps")
    g = gen(5)
    nc = []
    for _ in range(600):
        batch = sampler.sample(1, g)
        assert batch.num_target == 50
        nc.append(batch.num_context)
    assert min(nc) == 0 and max(nc) == 30
    assert set(nc) == set(range(31))


# --------------------------------------------------------------------------- sine5


@pytest.fixture(scope="module")
def sine5_batches():
    g = gen(9)
    return [make_sampler("sine5").sample(16, g) for _ in range(60)]


def test_sine5_context_and_targets_are_exactly_the_five_points(sine5_batches):
    for batch in sine5_batches:
        assert batch.num_context + batch.num_target == 5
        xs = batch.x[..., 0].sort(dim=1).values
        assert torch.equal(xs, torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0]).expand(16, 5))


def test_sine5_outputs_are_sin_of_inputs(sine5_batches):
    for batch in sine5_batches:
        assert torch.equal(batch.y, torch.sin(batch.x))


def test_sine5_context_size_is_1_to_3(sine5_batches):
    nc = {batch.num_context for batch in sine5_batches}
    assert nc == {1, 2, 3}


def test_sine5_varies_which_points_are_observed(sine5_batches):
    contexts = {tuple(row.tolist()) for b in sine5_batches for row in b.xc[..., 0]}
    assert len(contexts) > 10


# --------------------------------------------------------------------------- sine


def test_sine_outputs_are_shifted_scaled_sines():
    """y = A sin(x - phase): the amplitude range bounds |y| and sin's shape holds per task."""
    batch = SineSampler().sample(32, gen(0))
    assert batch.x.min() >= -5 and batch.x.max() <= 5
    assert batch.y.abs().max() <= 5.0 + 1e-5
    assert batch.y.abs().max() > 1.0


def test_sine_frequency_and_noise_follow_their_closed_forms():
    """With one amplitude, phase and frequency the function is known: the residual is the noise."""
    sampler = SineSampler(amplitude=(2.0, 2.0), phase=(0.5, 0.5), frequency=(3.0, 3.0), noise=0.1)
    batch = sampler.sample(64, gen(0))
    residual = batch.y - 2.0 * torch.sin(3.0 * batch.x - 0.5)
    assert abs(residual.std().item() - 0.1) < 0.01 and abs(residual.mean().item()) < 0.01
    exact = SineSampler(frequency=(2.0, 2.0), amplitude=(1.0, 1.0), phase=(0.0, 0.0)).sample(4, gen(0))
    assert torch.allclose(exact.y, torch.sin(2.0 * exact.x), atol=1e-6)
    with pytest.raises(ValueError, match="noise must be a std >= 0"):
        SineSampler(noise=-1.0)
    with pytest.raises(ValueError, match="frequency must be"):
        SineSampler(frequency=(2.0, 1.0))


def test_kernel_for_a_preset_without_kernels_is_reported():
    with pytest.raises(ValueError, match="'sine5' has no kernel"):
        make_sampler("sine5", kernel="rbf")


def test_true_gp_to_moves_a_per_task_noise_tensor():
    noise = torch.tensor([0.1, 0.2], dtype=torch.float64)
    gp = TrueGP("rbf", noise.clone(), noise.clone(), None, noise).to("meta")
    assert gp.noise_std.device.type == "meta" and gp.scale.device.type == "meta"


# --------------------------------------------------------------------------- task pool


def test_task_pool_only_serves_its_own_functions_split_into_context_and_targets():
    sine = SineSampler(amplitude=(0.5, 5.0), frequency=(0.5, 2.0))
    pool = TaskPool.draw(sine, num_tasks=6, num_points=30, generator=gen(0), num_context=(1, 8), num_target=(5, 10))
    assert pool.x.shape == (6, 30, 1) and pool.num_tasks == 6
    batch = pool.sample(16, gen(1))
    assert 1 <= batch.num_context <= 8 and 5 <= batch.num_target <= 10
    # every (x, y) pair of the batch is a point of one pool task, and a task's points are all distinct
    for b in range(16):
        x, y = batch.x[b, :, 0], batch.y[b, :, 0]
        owners = [t for t in range(6) if all((pool.x[t, :, 0] == v).any() for v in x)]
        assert len(owners) == 1
        t = owners[0]
        index = (pool.x[t, :, 0].unsqueeze(0) == x.unsqueeze(1)).float().argmax(1)
        assert torch.equal(pool.y[t, index, 0], y) and len(set(index.tolist())) == len(index)
    assert torch.equal(pool.sample(4, gen(5)).y, pool.sample(4, gen(5)).y)  # seeded


def test_task_pool_rejects_counts_beyond_its_points():
    with pytest.raises(ValueError, match=r"num_context\[1\] \+ num_target\[0\] <= num_points = 10"):
        TaskPool(torch.zeros(2, 10, 1), torch.zeros(2, 10, 1), num_context=(1, 8), num_target=(3, 4))
    with pytest.raises(ValueError, match="x and y must be"):
        TaskPool(torch.zeros(2, 10, 1), torch.zeros(3, 10, 1))


def test_a_kernel_mixture_draws_each_batch_from_one_of_its_kernels_evenly():
    sampler = make_sampler("gp1d", kernels=["rbf", "matern52", "periodic"])
    generator = gen(5)
    drawn = [sampler.sample_with_truth(4, generator)[1] for _ in range(300)]
    counts = {k: sum(gp.kernel == k for gp in drawn) for k in ("rbf", "matern52", "periodic")}
    assert all(70 <= c <= 130 for c in counts.values()), counts  # 100 each, sd 8
    assert all((gp.period is not None) == (gp.kernel == "periodic") for gp in drawn)
    assert make_sampler("gp1d").sample(4, gen(5)).yc.equal(GPSampler().sample(4, gen(5)).yc)  # no mixture: as before
    with pytest.raises(ValueError, match=r"unknown kernel 'cosine'"):
        make_sampler("gp1d", kernels=["rbf", "cosine"])


def test_the_sampler_repr_names_a_kernel_mixture_only_when_there_is_one():
    """The repr identifies the data in checkpoints and cached evaluation sets: runs saved before
    ``kernels`` existed must resume (the same repr), and a mixture must differ from no mixture."""
    plain = repr(make_sampler("gp1d"))
    assert plain == (
        "GPSampler(x_range=(-2.0, 2.0), num_context=(3, 46), num_target=(3, 49), max_points=49, kernel='rbf', "
        "scale=(0.1, 1.0), length=(0.1, 0.6), period=(0.1, 0.5), noise_std=0.02)"
    )
    assert repr(make_sampler("gp1d", kernels=["rbf", "periodic"])) == plain[:-1] + ", kernels=('rbf', 'periodic'))"
