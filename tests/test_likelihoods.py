"""Likelihoods turn decoder parameters into distributions; models and evaluation use any of them."""

import math

import pytest
import torch
import torch.nn.functional as F

from npkit.autoregressive import ar_log_prob, ar_sample
from npkit.data import make_sampler
from npkit.evaluation.metrics import evaluate
from npkit.likelihoods import Bernoulli, Gaussian, GaussianMixture, StudentTHead, build_likelihood
from npkit.models import build_model
from npkit.objectives import nll
from npkit.predictive import event_cdf


def test_gaussian_std_is_min_sigma_plus_the_softplus_share():
    params = torch.tensor([[[0.3, -1.0], [2.0, 0.5]]])  # [1, 2, 2]: mean, raw std per point
    dist = Gaussian(min_sigma=0.2)(params)
    assert dist.batch_shape == (1, 2) and dist.event_shape == (1,)
    expected = 0.2 + 0.8 * F.softplus(params[..., 1:])
    torch.testing.assert_close(dist.stddev, expected)
    torch.testing.assert_close(dist.mean, params[..., :1])


def test_gaussian_fixed_sigma_takes_one_parameter_per_output():
    likelihood = Gaussian(fixed_sigma=0.005)
    assert likelihood.num_params(3) == 3 and Gaussian().num_params(3) == 6
    dist = likelihood(torch.zeros(2, 4, 3))
    assert torch.all(dist.stddev == 0.005)


def test_bernoulli_log_prob_is_the_negative_binary_cross_entropy():
    logits = torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(0))
    y = (torch.rand(2, 5, 3, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    expected = -F.binary_cross_entropy_with_logits(logits, y, reduction="none").sum(-1)
    torch.testing.assert_close(Bernoulli()(logits).log_prob(y), expected)


def test_parameters_are_promoted_to_float32_under_half_precision():
    assert Gaussian()(torch.zeros(1, 2, 2, dtype=torch.bfloat16)).mean.dtype == torch.float32
    assert Bernoulli()(torch.zeros(1, 2, 1, dtype=torch.float16)).mean.dtype == torch.float32


def test_unknown_likelihood_and_bad_sigmas_are_rejected():
    with pytest.raises(ValueError, match="unknown likelihood 'poisson'"):
        build_likelihood("poisson")
    with pytest.raises(ValueError, match="likelihood must be one of"):
        build_model("cnp", likelihood="poisson")
    with pytest.raises(ValueError, match="min_sigma must lie in"):
        build_model("cnp", min_sigma=1.5)


def test_a_bernoulli_cnp_trains_and_evaluates_without_changes_elsewhere():
    """A binary-output model goes through nll, fit-style steps and evaluate with no code of its own."""
    torch.manual_seed(0)
    model = build_model("cnp", hidden_dim=16, r_dim=16, likelihood="bernoulli")
    sampler = make_sampler("sine", num_context=(5, 5), num_target=(10, 10))
    batches = []
    for seed in range(2):
        batch = sampler.sample(8, torch.Generator().manual_seed(seed))
        binary = lambda y: (y > 0).float()
        batches.append(type(batch)(batch.xc, binary(batch.yc), batch.xt, binary(batch.yt)))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        loss = nll(model, batches[0]).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1
    result = evaluate(model, batches)
    assert result["tar_ll"] > -math.log(2)  # better than a coin
    assert math.isnan(result["coverage95"])  # no interval for binary outputs


def test_log_prob_refuses_targets_that_would_broadcast_silently():
    torch.manual_seed(0)
    model = build_model("np", hidden_dim=8, r_dim=8, z_dim=4)
    x = torch.randn(4, 6, 1)
    pred = model(x, x, x, num_samples=3)  # batch [3, 4, 6], event [1]
    assert pred.log_prob(x).shape == (3, 4, 6)  # targets without the sample axis: fine
    for wrong in (x[:, :1], x[..., 0], x[:1]):  # [4, 1, 1], [4, 6], [1, 6, 1]
        with pytest.raises(ValueError, match=r"y has shape .* points of shape \[4, 6, 1\]"):
            pred.log_prob(wrong)


def test_model_inputs_of_another_dtype_get_npkits_error():
    model = build_model("cnp", hidden_dim=8, r_dim=8)
    x = torch.zeros(2, 3, 1, dtype=torch.float64)
    with pytest.raises(ValueError, match="xc is torch.float64 but the model's parameters are torch.float32"):
        model(x, x, x)
    with pytest.raises(ValueError, match="num_samples must be a positive integer"):
        model(x.float(), x.float(), x.float(), num_samples=0)


# --------------------------------------------------------------------------- non-Gaussian heads


def mixture_params(b=2, n=5, y_dim=2, k=3, seed=0) -> torch.Tensor:
    return torch.randn(b, n, 3 * k * y_dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_mixture_log_prob_is_the_brute_force_sum_over_components():
    """log p(y) = sum_d log sum_k w_dk N(y_d; mu_dk, sigma_dk), written out by hand."""
    k, y_dim = 3, 2
    params = mixture_params(y_dim=y_dim, k=k)
    y = torch.randn(2, 5, y_dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    dist = GaussianMixture(components=k, min_sigma=0.05)(params)
    assert dist.batch_shape == (2, 5) and dist.event_shape == (y_dim,)
    logits, mu, raw = params.view(2, 5, 3, y_dim, k).unbind(2)
    weights = logits.exp() / logits.exp().sum(-1, keepdim=True)
    sigma = 0.05 + 0.95 * torch.log1p(raw.exp())
    density = weights * torch.exp(-0.5 * ((y[..., None] - mu) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
    torch.testing.assert_close(dist.log_prob(y), density.sum(-1).log().sum(-1), rtol=1e-12, atol=1e-12)
    # mean and variance by the law of total variance; the CDF as the weighted sum of Normal CDFs
    mean = (weights * mu).sum(-1)
    torch.testing.assert_close(dist.mean, mean)
    torch.testing.assert_close(dist.variance, (weights * (sigma**2 + mu**2)).sum(-1) - mean**2)
    normal_cdf = 0.5 * (1 + torch.erf((y[..., None] - mu) / (sigma * math.sqrt(2))))
    torch.testing.assert_close(event_cdf(dist, y), (weights * normal_cdf).sum(-1))


def test_mixture_of_one_component_equals_the_gaussian_head():
    """K = 1: the logit is ignored and the (mean, raw std) are the Gaussian head's."""
    gaussian_params = mixture_params(k=1)[..., :4]  # [mu (2), raw (2)]
    logits = torch.randn(2, 5, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    gaussian = Gaussian(min_sigma=0.1)(gaussian_params)
    mixture = GaussianMixture(components=1, min_sigma=0.1)(torch.cat([logits, gaussian_params], -1))
    y = torch.randn(2, 5, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    torch.testing.assert_close(mixture.log_prob(y), gaussian.log_prob(y), rtol=0, atol=1e-14)
    torch.testing.assert_close(mixture.mean, gaussian.mean, rtol=0, atol=0)
    torch.testing.assert_close(mixture.stddev, gaussian.stddev, rtol=0, atol=1e-15)


def test_mixture_components_are_floored_at_min_sigma_and_draws_follow_the_weights():
    k = 2
    params = torch.zeros(1, 1, 3 * k)
    params[..., 0] = math.log(3.0)  # weights 3/4, 1/4
    params[..., 2:4] = torch.tensor([-5.0, 5.0])  # means
    params[..., 4:6] = -100.0  # raw stds far below: the floor
    dist = GaussianMixture(components=k, min_sigma=0.2)(params)
    torch.testing.assert_close(dist.base_dist.component_distribution.stddev, torch.full((1, 1, 1, 2), 0.2))
    torch.manual_seed(0)
    draws = dist.sample((4000,))  # [4000, 1, 1, 1]
    assert abs((draws < 0).float().mean().item() - 0.75) < 0.03
    assert ((draws.abs() - 5.0).abs() < 1.5).all()


def test_student_t_log_prob_and_cdf_have_their_closed_forms():
    params = mixture_params(y_dim=2, k=1)[..., :6]  # loc, raw scale, raw df: [2, 5, 2] each
    y = torch.randn(2, 5, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    dist = StudentTHead(min_sigma=0.05)(params)
    loc, raw_scale, raw_df = params.chunk(3, -1)
    scale, df = 0.05 + 0.95 * F.softplus(raw_scale), 2 + F.softplus(raw_df)
    t = (y - loc) / scale
    log_density = (
        torch.lgamma((df + 1) / 2)
        - torch.lgamma(df / 2)
        - 0.5 * torch.log(df * math.pi)
        - scale.log()
        - (df + 1) / 2 * torch.log1p(t**2 / df)
    )
    torch.testing.assert_close(dist.log_prob(y), log_density.sum(-1))
    assert (dist.base_dist.df > 2).all() and torch.isfinite(dist.variance).all()
    torch.testing.assert_close(dist.variance, scale**2 * df / (df - 2))
    cdf = event_cdf(dist, y)
    torch.testing.assert_close(event_cdf(dist, loc), torch.full_like(cdf, 0.5))  # symmetric about loc
    torch.testing.assert_close(cdf + event_cdf(dist, 2 * loc - y), torch.ones_like(cdf))


def test_student_t_cdf_is_the_integral_of_its_density():
    raw_df = math.log(math.expm1(1.0))  # df = 2 + softplus(raw) = 3
    params = torch.tensor([[[0.3, 0.0, raw_df]]], dtype=torch.float64)  # loc 0.3, scale softplus(0)
    dist = StudentTHead(min_sigma=0.0)(params)
    for y in (-1.0, 0.3, 2.5):
        grid = torch.linspace(-3000.0, y, 600001, dtype=torch.float64)
        density = dist.base_dist.log_prob(grid.view(-1, 1, 1, 1)).exp().flatten()  # [G]
        integral = torch.trapezoid(density, grid)  # the mass left of -3000 is ~1e-10 for df = 3
        cdf = event_cdf(dist, torch.tensor([[[y]]], dtype=torch.float64))
        assert abs(cdf.item() - integral.item()) < 1e-6, y


def test_heads_validate_their_options_naming_them():
    with pytest.raises(ValueError, match="mixture_components must be a positive integer, got 0"):
        build_model("tnpd", likelihood="mixture", mixture_components=0)
    with pytest.raises(ValueError, match="fixed_sigma applies to the gaussian likelihood only"):
        build_model("cnp", likelihood="mixture", fixed_sigma=0.1)
    with pytest.raises(ValueError, match="min_sigma must lie in"):
        build_model("tnpd", likelihood="student_t", min_sigma=-0.1)
    assert build_likelihood("mixture", components=5).num_params(2) == 30
    assert build_likelihood("student_t").num_params(2) == 6


@pytest.mark.parametrize("head", ["mixture", "student_t"])
def test_a_non_gaussian_tnpd_trains_evaluates_and_samples_with_no_code_of_its_own(head):
    """nll, evaluate (coverage from the head's CDF) and the autoregressive mode take any head."""
    torch.manual_seed(0)
    model = build_model(
        "tnpd", r_dim=16, hidden_dim=32, transformer_layers=2, num_heads=2, likelihood=head, min_sigma=0.0
    )
    sampler = make_sampler("gp1d")
    batches = [sampler.sample(8, torch.Generator().manual_seed(s)) for s in range(2)]
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(80):
        loss = nll(model, batches[step % 2], include_context=False).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10 - 0.3
    result = evaluate(model, batches)
    assert math.isfinite(result["tar_ll"]) and 0.5 < result["coverage95"] <= 1.0
    batch = batches[0]
    with torch.no_grad():
        joint = ar_log_prob(model, batch.xc, batch.yc, batch.xt[:, :4], batch.yt[:, :4])
        draws = ar_sample(model, batch.xc, batch.yc, batch.xt[:, :4], num_samples=3)
    assert joint.shape == (8,) and torch.isfinite(joint).all() and draws.shape == (3, 8, 4, 1)
