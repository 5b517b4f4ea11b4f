"""The latent-sample axis in one place: SampleMixture, per_sample, marginal, predict, sample_functions."""

import math

import pytest
import torch
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from npkit.models import build_model
from npkit.predictive import SampleMixture, marginal, per_sample, predict, sample_functions


def components(s=5, b=3, n=4, d=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    loc = torch.randn(s, b, n, d, generator=g, dtype=torch.float64)
    scale = torch.rand(s, b, n, d, generator=g, dtype=torch.float64) + 0.1
    return Independent(Normal(loc, scale), 1), loc, scale


def reference(loc, scale):
    """torch's MixtureSameFamily with the mixture axis moved last, as an independent reference."""
    loc, scale = loc.movedim(0, -2), scale.movedim(0, -2)  # [B, N, S, D]
    weights = Categorical(logits=torch.zeros(loc.shape[:-1], dtype=loc.dtype))
    return MixtureSameFamily(weights, Independent(Normal(loc, scale), 1))


def test_sample_mixture_matches_mixture_same_family():
    comp, loc, scale = components()
    mixture, ref = SampleMixture(comp), reference(loc, scale)
    y = torch.randn(3, 4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert mixture.batch_shape == ref.batch_shape and mixture.event_shape == ref.event_shape
    torch.testing.assert_close(mixture.log_prob(y), ref.log_prob(y))
    torch.testing.assert_close(mixture.mean, ref.mean)
    torch.testing.assert_close(mixture.variance, ref.variance)


def test_sample_mixture_cdf_is_the_mean_of_component_cdfs():
    comp, loc, scale = components(d=1)
    y = torch.zeros(3, 4, 1, dtype=torch.float64)
    torch.testing.assert_close(SampleMixture(comp).cdf(y), Normal(loc, scale).cdf(y).mean(0))


def test_sample_mixture_draws_each_component_equally_often():
    loc = torch.tensor([-100.0, 0.0, 100.0]).view(3, 1, 1, 1)
    mixture = SampleMixture(Independent(Normal(loc, torch.ones_like(loc)), 1))
    torch.manual_seed(0)
    draws = mixture.sample((6000,))  # [6000, 1, 1, 1]
    assert draws.shape == (6000, 1, 1, 1)
    counts = torch.stack([(draws < -50).sum(), (draws.abs() < 50).sum(), (draws > 50).sum()]).double()
    # binomial standard deviation of each count is sqrt(6000 / 3 * 2 / 3) ~ 37; allow 5 of them
    assert torch.all((counts - 2000).abs() < 5 * 37)


def test_per_sample_and_marginal_of_a_deterministic_model_keep_its_predictive():
    torch.manual_seed(0)
    model = build_model("cnp", hidden_dim=8, r_dim=8)
    x = torch.randn(2, 3, 1)
    pred = model(x, x, x)
    assert per_sample(model, pred).batch_shape == (1, 2, 3)
    assert marginal(model, pred) is pred
    torch.testing.assert_close(predict(model, x, x, x).mean, pred.mean)


def test_predict_of_a_latent_model_is_the_mixture_over_prior_samples():
    torch.manual_seed(0)
    model = build_model("np", hidden_dim=8, r_dim=8, z_dim=4, init="normal", init_std=1.0)
    x, y = torch.randn(2, 3, 1), torch.randn(2, 3, 1)
    torch.manual_seed(1)
    pred = predict(model, x, y, x, num_samples=7)
    torch.manual_seed(1)
    samples = model(x, y, x, num_samples=7)
    assert pred.batch_shape == (2, 3)
    expected = torch.logsumexp(samples.log_prob(y), 0) - math.log(7)
    torch.testing.assert_close(pred.log_prob(y), expected)


def test_sample_functions_draws_one_coherent_function_per_latent_sample():
    torch.manual_seed(0)
    model = build_model("np", hidden_dim=8, r_dim=8, z_dim=4, init="normal", init_std=1.0)
    x = torch.randn(2, 3, 1)
    xt = torch.linspace(-2, 2, 11).view(1, 11, 1).expand(2, -1, -1)
    torch.manual_seed(1)
    functions = sample_functions(model, x, x, xt, num_samples=6)
    torch.manual_seed(1)
    means = model(x, x, xt, num_samples=6).mean
    assert functions.shape == (6, 2, 11, 1)
    torch.testing.assert_close(functions, means)
    assert functions.std(0).min() > 0  # the samples differ
    with pytest.raises(TypeError, match="no function samples"):
        sample_functions(build_model("cnp", hidden_dim=8, r_dim=8), x, x, xt)
