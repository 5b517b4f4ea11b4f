"""The hyper-parameter-marginalised GP: exact against brute-force mixtures of exact GPs."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch.distributions import MultivariateNormal, Normal

from npkit.baselines import gp_posterior, hyper_marginal_gp
from npkit.data import GPSampler, TrueGP, make_sampler
from npkit.evaluation.metrics import evaluate_gp, make_eval_set


def _task(kernel: str, n: int = 12, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(3, n, 1, generator=g, dtype=torch.float64) * 4 - 2
    y = torch.sin(3 * x) + 0.1 * torch.randn(3, n, 1, generator=g, dtype=torch.float64)
    return x, y


def _brute_force(prior: GPSampler, x, y, nc, nodes):
    """Mixture over the (scale, length) ``nodes`` of exact GPs, weights p(yc | theta), computed
    with gp_posterior and MultivariateNormal densities only."""
    b = x.shape[0]
    log_w, comps, joints = [], [], []
    for s, length in nodes:
        gp = TrueGP(
            prior.kernel,
            torch.full((b,), s, dtype=torch.float64),
            torch.full((b,), length, dtype=torch.float64),
            None,
            prior.noise_std,
        )
        evidence = gp_posterior(gp, x[:, :0], y[:, :0], x[:, :nc]).log_prob(y[:, :nc, 0]) if nc else torch.zeros(b)
        log_w.append(evidence)
        pred = gp_posterior(gp, x[:, :nc], y[:, :nc], x)
        comps.append(Normal(pred.mean, pred.variance.sqrt()))
        t = MultivariateNormal(pred.mean[:, nc:], covariance_matrix=pred.covariance_matrix[:, nc:, nc:])
        joints.append(t.log_prob(y[:, nc:, 0]))
    log_w = torch.stack(log_w, 1).log_softmax(1)  # [B, G]
    yy = y[..., 0]
    log_prob = torch.stack([c.log_prob(yy) for c in comps], 1)  # [B, G, N]
    mean = torch.stack([c.mean for c in comps], 1)
    var = torch.stack([c.variance for c in comps], 1)
    w = log_w.exp().unsqueeze(-1)
    m = (w * mean).sum(1)
    return {
        "log_prob": (log_w.unsqueeze(-1) + log_prob).logsumexp(1),
        "mean": m,
        "variance": (w * (var + mean**2)).sum(1) - m**2,
        "cdf": (w * torch.stack([c.cdf(yy) for c in comps], 1)).sum(1),
        "joint_log_prob": (log_w + torch.stack(joints, 1)).logsumexp(1),
    }


@pytest.mark.parametrize("kernel", ["rbf", "matern52"])
@pytest.mark.parametrize("nc", [0, 1, 7])
def test_equals_brute_force_mixture(kernel, nc):
    prior = GPSampler(kernel=kernel, scale=(0.2, 1.0), length=(0.1, 0.5), noise_std=0.05)
    x, y = _task(kernel)
    got = hyper_marginal_gp(prior, x, y, nc, grid=2, scale_grid=3)
    # The midpoint nodes: scales 0.2 + 0.8 (i + 0.5) / 3, lengths 0.1 + 0.4 (j + 0.5) / 2.
    nodes = [(0.2 + 0.8 * (i + 0.5) / 3, 0.1 + 0.4 * (j + 0.5) / 2) for i in range(3) for j in range(2)]
    want = _brute_force(prior, x, y, nc, nodes)
    for name, value in want.items():
        torch.testing.assert_close(getattr(got, name), value, rtol=1e-7, atol=1e-9, msg=name)
    gaussian = Normal(want["mean"], want["variance"].sqrt()).log_prob(y[..., 0])
    torch.testing.assert_close(got.gaussian_log_prob, gaussian, rtol=1e-7, atol=1e-9)


def test_point_prior_is_the_exact_gp():
    prior = GPSampler(kernel="rbf", scale=(0.7, 0.7), length=(0.3, 0.3), noise_std=0.02)
    x, y = _task("rbf", n=20)
    nc = 8
    got = hyper_marginal_gp(prior, x, y, nc)
    gp = TrueGP(
        "rbf", torch.full((3,), 0.7, dtype=torch.float64), torch.full((3,), 0.3, dtype=torch.float64), None, 0.02
    )
    pred = gp_posterior(gp, x[:, :nc], y[:, :nc], x)
    torch.testing.assert_close(got.mean, pred.mean)
    torch.testing.assert_close(got.variance, pred.variance)
    torch.testing.assert_close(got.log_prob, got.gaussian_log_prob)  # one component: no mixture
    joint = MultivariateNormal(pred.mean[:, nc:], covariance_matrix=pred.covariance_matrix[:, nc:, nc:])
    torch.testing.assert_close(got.joint_log_prob, joint.log_prob(y[:, nc:, 0]))


def test_wide_prior_mixture_is_not_gaussian():
    """With little context the hyper-parameter posterior is wide: the per-point mixture scores
    the data better than its own moment-matched Gaussian (the data were drawn from the prior)."""
    sampler = make_sampler("gp1d", kernel="rbf")
    evalset = make_eval_set(replace(sampler, num_context=(3, 4)), 6, 16, seed=1)
    bayes = evaluate_gp(evalset, "bayes", prior=sampler)
    oracle = evaluate_gp(evalset, "oracle")
    assert bayes["tar_ll"] > bayes["tar_ll_gaussian"] + 0.01
    assert oracle["tar_ll"] > bayes["tar_ll"] + 0.01  # knowing the hyper-parameters helps


def test_evaluate_gp_bayes_with_a_point_prior_is_the_oracle():
    sampler = GPSampler(kernel="matern52", scale=(0.5, 0.5), length=(0.2, 0.2))
    evalset = make_eval_set(sampler, 3, 8, seed=2)
    bayes, oracle = evaluate_gp(evalset, "bayes", prior=sampler), evaluate_gp(evalset, "oracle")
    for key in ("ctx_ll", "tar_ll", "tar_ll_joint", "mse", "coverage95"):
        assert bayes[key] == pytest.approx(oracle[key], rel=1e-6), key
    assert bayes["tar_ll_gaussian"] == pytest.approx(bayes["tar_ll"], rel=1e-6)


def test_bad_input():
    x, y = _task("rbf")
    with pytest.raises(ValueError, match="non-periodic"):
        hyper_marginal_gp(make_sampler("gp1d", kernel="periodic"), x, y, 3)
    with pytest.raises(ValueError, match=r"kernels=\('rbf', 'matern52'\)"):  # a kernel mixture: not one prior
        hyper_marginal_gp(make_sampler("gp1d", kernels=("rbf", "matern52")), x, y, 3)
    with pytest.raises(ValueError, match="num_context"):
        hyper_marginal_gp(make_sampler("gp1d"), x, y, 13)
    with pytest.raises(ValueError, match=r"x and y \[B, N, 1\]"):
        hyper_marginal_gp(make_sampler("gp1d"), x, y[:, :5], 3)
    evalset = make_eval_set(make_sampler("gp1d"), 1, 2, seed=0)
    with pytest.raises(ValueError, match="prior="):
        evaluate_gp(evalset, "bayes")
