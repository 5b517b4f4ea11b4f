"""Exact GP posterior, the oracle and the per-task fitted GP (npkit.baselines.gp)."""

from __future__ import annotations

import math

import pytest
import torch

from npkit.baselines import fit_gp, fitted_gp, gp_posterior, oracle
from npkit.baselines.gp import FIT_KERNELS, _covar_module, _to_true_gp
from npkit.data import GPSampler, TrueGP, make_sampler
from npkit.evaluation.metrics import evaluate_gp, make_eval_set


def _t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_gp_posterior_one_point_by_hand():
    s, length, noise = 0.8, 0.3, 0.1
    x1, y1, x2 = 0.1, 0.5, 0.4
    gp = TrueGP("rbf", _t(s), _t(length), None, noise)
    post = gp_posterior(gp, _t(x1).view(1, 1, 1), _t(y1).view(1, 1, 1), _t(x2).view(1, 1, 1))
    k11 = k22 = s**2
    k12 = s**2 * math.exp(-((x2 - x1) ** 2) / (2 * length**2))
    s2 = noise**2
    assert post.mean.item() == pytest.approx(k12 / (k11 + s2) * y1, rel=1e-12)
    assert post.variance.item() == pytest.approx(k22 + s2 - k12**2 / (k11 + s2), rel=1e-12)


def test_gp_posterior_empty_context_is_prior():
    gp = TrueGP("rbf", _t(0.5, 1.0), _t(0.2, 0.4), None, 0.02)
    xq = torch.linspace(-1, 1, 4, dtype=torch.float64).expand(2, 4).unsqueeze(-1)
    empty = xq[:, :0]
    post = gp_posterior(gp, empty, empty, xq)
    assert torch.equal(post.mean, torch.zeros(2, 4, dtype=torch.float64))
    torch.testing.assert_close(post.covariance_matrix, gp.covariance(xq, xq) + 0.02**2 * torch.eye(4))


def test_gp_posterior_per_task_noise_tensor():
    g = torch.Generator().manual_seed(0)
    batch, gp = make_sampler("gp1d").sample_with_truth(3, generator=g)
    noise = _t(0.02, 0.1, 0.5)
    joint = gp_posterior(TrueGP("rbf", gp.scale, gp.length, None, noise), batch.xc, batch.yc, batch.xt)
    for i in range(3):
        one = TrueGP("rbf", gp.scale[i : i + 1], gp.length[i : i + 1], None, float(noise[i]))
        ref = gp_posterior(one, batch.xc[i : i + 1], batch.yc[i : i + 1], batch.xt[i : i + 1])
        torch.testing.assert_close(joint.mean[i], ref.mean[0])
        torch.testing.assert_close(joint.covariance_matrix[i], ref.covariance_matrix[0])


def test_oracle_matches_published_gp1d_numbers():
    # docs/benchmarks/protocols.md: RBF oracle ctx_ll 2.62, tar_ll 1.52 (marginal), 1.81 (joint / Nt).
    batches = make_eval_set(make_sampler("gp1d", kernel="rbf"), 50, 16, seed=0)
    result = evaluate_gp(batches, kind="oracle")
    assert result["ctx_ll"] == pytest.approx(2.62, abs=0.25)
    assert result["tar_ll"] == pytest.approx(1.52, abs=0.25)
    assert result["tar_ll_joint"] == pytest.approx(1.81, abs=0.3)
    assert result["tar_ll_joint"] > result["tar_ll"]
    assert 0.9 <= result["coverage95"] <= 1.0
    assert result["num_tasks"] == 800


def test_oracle_needs_the_generating_gp():
    batch, gp = make_sampler("gp1d").sample_with_truth(2, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="needs the generating TrueGP"):
        oracle(batch, None, batch.xt)
    torch.testing.assert_close(oracle(batch, gp, batch.xt).mean, gp_posterior(gp, batch.xc, batch.yc, batch.xt).mean)


@pytest.mark.parametrize("kernel", FIT_KERNELS)
def test_gpytorch_kernels_match_npkit_kernels(kernel):
    # The conversion of GPyTorch's parameters (periodic: lengthscale not squared) to TrueGP.
    batch_shape = torch.Size([3])
    covar = _covar_module(kernel, batch_shape).double()
    covar.outputscale = _t(0.5, 1.2, 2.0)
    base = covar.base_kernel.kernels if kernel == "weakly_periodic" else [covar.base_kernel]
    for k in base:
        if k.raw_lengthscale.requires_grad:
            k.lengthscale = _t(0.2, 0.5, 0.9).view(3, 1, 1)
        if hasattr(k, "period_length"):
            k.period_length = _t(0.3, 0.4, 0.7).view(3, 1, 1)
    import gpytorch

    gp = _to_true_gp(kernel, covar, gpytorch.likelihoods.GaussianLikelihood(batch_shape=batch_shape))
    x = torch.linspace(-2, 2, 7, dtype=torch.float64).expand(3, 7).unsqueeze(-1)
    with torch.no_grad():
        expected = covar(x).to_dense()
    torch.testing.assert_close(gp.covariance(x, x), expected, atol=1e-8, rtol=1e-6)


def test_fit_gp_recovers_length_scale():
    sampler = GPSampler(
        kernel="rbf",
        length=(0.3, 0.3),
        scale=(1.0, 1.0),
        noise_std=0.02,
        num_context=(49, 49),
        num_target=(1, 1),
        max_points=None,
    )
    batch = sampler.sample(8, generator=torch.Generator().manual_seed(0))
    fit = fit_gp(batch.xc, batch.yc, kernel="rbf", steps=100)
    assert fit.length.shape == fit.scale.shape == fit.noise_std.shape == (8,)
    ratio = torch.exp(torch.log(fit.length / 0.3).abs().mean())  # geometric mean of the factor
    assert ratio < 1.5
    assert fit.noise_std.median() < 0.1


def test_fitted_gp_is_no_better_than_oracle():
    batches = make_eval_set(make_sampler("gp1d", kernel="rbf"), 4, 16, seed=1)
    fitted = evaluate_gp(batches, kind="fitted", fit_steps=50)
    truth = evaluate_gp(batches, kind="oracle")
    assert math.isfinite(fitted["tar_ll"]) and math.isfinite(fitted["tar_ll_joint"])
    assert fitted["tar_ll"] <= truth["tar_ll"] + 0.05
    mvn = fitted_gp(batches[0], batches[0].xt, steps=5)
    assert mvn.mean.shape == (16, batches[0].num_target) and mvn.mean.dtype == torch.float64


def test_fit_gp_empty_context_gives_gpytorch_defaults():
    empty = torch.zeros(2, 0, 1)
    softplus0 = math.log(2.0)
    rbf = fit_gp(empty, empty, kernel="rbf")
    torch.testing.assert_close(rbf.length, _t(softplus0, softplus0))
    torch.testing.assert_close(rbf.scale, _t(softplus0, softplus0).sqrt())
    assert rbf.period is None and torch.all(rbf.noise_std > 0.8)
    periodic = fit_gp(empty, empty, kernel="periodic")
    torch.testing.assert_close(periodic.length, _t(softplus0, softplus0).sqrt())
    torch.testing.assert_close(periodic.period, _t(softplus0, softplus0))


def test_fit_gp_bad_input():
    x = torch.zeros(2, 3, 1)
    with pytest.raises(ValueError, match="'cosine'.*rbf"):
        fit_gp(x, x, kernel="cosine")
    with pytest.raises(ValueError, match="yc"):
        fit_gp(x, torch.zeros(2, 3, 2))
    with pytest.raises(ValueError, match="one-dimensional"):
        fit_gp(torch.zeros(2, 3, 2), x, kernel="periodic")


def test_best_restart_keeps_each_tasks_highest_scoring_fit():
    from npkit.baselines.gp import _best_restart

    # 3 restarts x 2 tasks, laid out restart-major as fit_gp does: index = restart * B + task.
    gp = TrueGP(
        "periodic", _t(1, 2, 3, 4, 5, 6), _t(10, 20, 30, 40, 50, 60), _t(7, 8, 9, 10, 11, 12), _t(1, 1, 2, 2, 3, 3)
    )
    score = torch.tensor([[0.0, 5.0], [2.0, 1.0], [1.0, 4.0]])  # [restarts, B]: task 0 -> restart 1, task 1 -> 0
    best = _best_restart(gp, score)
    torch.testing.assert_close(best.scale, _t(3, 2))
    torch.testing.assert_close(best.length, _t(30, 20))
    torch.testing.assert_close(best.period, _t(9, 8))
    torch.testing.assert_close(best.noise_std, _t(2, 1))


# ----------------------------------------------------------------------------- kNN and image baselines


def _digits_set(n_context: int, num_batches: int = 2, batch_size: int = 8, **options):
    return make_eval_set(
        make_sampler("digits", num_context=(n_context, n_context), **options), num_batches, batch_size, 0
    )


def test_knn_mean_and_std_by_hand():
    from npkit.baselines.knn import knn_predictive

    # One task, 1-D inputs: contexts at 0, 1, 2, 10 with values 1, 3, 8, 100 (two channels).
    xc = _t(0, 1, 2, 10).view(1, 4, 1)
    yc = torch.stack([_t(1, 3, 8, 100), _t(0, 0, 0, 5)], -1).unsqueeze(0)
    xq = _t(0.9, 9.0).view(1, 2, 1)
    pred = knn_predictive(xc, yc, xq, k=3, min_std=0.05)
    assert pred.batch_shape == (1, 2) and pred.event_shape == (2,) and pred.mean.dtype == torch.float64
    # 0.9 -> neighbours {0, 1, 2}; 9.0 -> {10, 2, 1}.
    near, far = _t(1, 3, 8), _t(100, 8, 3)
    torch.testing.assert_close(pred.mean[0, :, 0], torch.stack([near.mean(), far.mean()]))
    torch.testing.assert_close(pred.stddev[0, :, 0], torch.stack([near.std(correction=0), far.std(correction=0)]))
    # Channel 1: zero spread at 0.9 is floored; at 9.0 the values are 5, 0, 0.
    torch.testing.assert_close(pred.mean[0, :, 1], _t(0, 5 / 3))
    torch.testing.assert_close(pred.stddev[0, :, 1], torch.stack([_t(0.05)[0], _t(5, 0, 0).std(correction=0)]))
    # k = min(k, Nc); the mask drops padded context points.
    all_pts = knn_predictive(xc, yc, xq, k=10)
    torch.testing.assert_close(all_pts.mean[0, 0], yc[0].mean(0).expand(2))
    masked = knn_predictive(xc, yc, xq, k=10, mask_c=torch.tensor([[True, True, False, False]]))
    torch.testing.assert_close(masked.mean[0, :, 0], _t(2, 2))
    with pytest.raises(ValueError, match="at least one context"):
        knn_predictive(xc[:, :0], yc[:, :0], xq)


def test_evaluate_knn_digits_finite_and_better_with_more_context():
    from npkit.evaluation.metrics import evaluate_knn

    small, large = evaluate_knn(_digits_set(10), k=5), evaluate_knn(_digits_set(50), k=5)
    for result in (small, large):
        for key in ("ctx_ll", "tar_ll", "tar_ll_joint", "mse", "coverage95"):
            assert math.isfinite(result[key]), key
        assert result["tar_ll_joint"] == pytest.approx(result["tar_ll"])  # independent points
        assert result["num_tasks"] == 16
    assert large["mse"] < small["mse"]
    assert large["tar_ll"] > small["tar_ll"]


@pytest.mark.parametrize("channels", [1, 3])
def test_fitted_gp_on_images_subsamples_the_context(monkeypatch, channels):
    import npkit.evaluation.metrics as evaluation

    evalset = _digits_set(40, num_batches=1, batch_size=4)
    if channels > 1:  # colour: the digit in channel 0, scaled copies in the others
        for batch in evalset:
            for name in ("yc", "yt"):
                y = getattr(batch, name)
                setattr(batch, name, torch.cat([y * (1 - 0.3 * i) for i in range(channels)], -1))
    seen = []

    def recording_fit_gp(xc, yc, **options):
        seen.append((tuple(xc.shape), tuple(yc.shape)))
        return fit_gp(xc, yc, **options)

    monkeypatch.setattr(evaluation, "fit_gp", recording_fit_gp)
    result = evaluate_gp(evalset, kind="fitted", fit_steps=10, fit_restarts=1, max_context=25)
    assert seen == [((4 * channels, 25, 2), (4 * channels, 25, 1))]
    for key in ("ctx_ll", "tar_ll", "tar_ll_joint", "mse", "coverage95"):
        assert math.isfinite(result[key]), key
    with pytest.raises(ValueError, match="oracle needs GP tasks"):
        evaluate_gp(evalset, kind="oracle")


def test_fitted_gp_channels_are_independent_gps():
    # Two identical channels: the same fit twice, so log-likelihoods double and the MSE is unchanged.
    one = _digits_set(30, num_batches=1, batch_size=4)
    two = _digits_set(30, num_batches=1, batch_size=4)
    for batch in two:
        batch.yc, batch.yt = batch.yc.repeat(1, 1, 2), batch.yt.repeat(1, 1, 2)
    options = {"kind": "fitted", "fit_steps": 10, "fit_restarts": 1, "max_context": 20}
    r1, r2 = evaluate_gp(one, **options), evaluate_gp(two, **options)
    for key in ("ctx_ll", "tar_ll", "tar_ll_joint"):
        assert r2[key] == pytest.approx(2 * r1[key], rel=1e-6), key
    assert r2["mse"] == pytest.approx(r1["mse"], rel=1e-6)
    assert r2["coverage95"] == pytest.approx(r1["coverage95"], rel=1e-6)
