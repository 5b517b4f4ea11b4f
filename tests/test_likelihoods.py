"""Likelihoods turn decoder parameters into distributions; models and evaluation use any of them."""

import math

import pytest
import torch
import torch.nn.functional as F

from npkit.data import make_sampler
from npkit.evaluation import evaluate
from npkit.likelihoods import Bernoulli, Gaussian, build_likelihood
from npkit.models import build_model
from npkit.objectives import nll


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
