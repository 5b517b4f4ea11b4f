"""Autoregressive mode: the chain rule over targets, checked against the exact GP's joint."""

import pytest
import torch
from torch import nn
from torch.distributions import Independent, Normal

import npkit.autoregressive as ar
from npkit.autoregressive import ar_log_prob, ar_sample
from npkit.baselines.gp import gp_posterior
from npkit.data.gp import TrueGP
from npkit.evaluation.metrics import evaluate
from npkit.models import build_model
from npkit.tasks import Batch

GP = TrueGP("rbf", torch.tensor([0.8]), torch.tensor([0.4]), None, 0.1)


class ExactGPModel(nn.Module):
    """The exact GP's per-point predictive behind the model interface (deterministic): its
    autoregressive joint must equal the GP's joint density."""

    is_latent = False

    def forward(self, xc, yc, xt, mask_c=None):
        means, stds = [], []
        for b in range(xc.shape[0]):
            keep = slice(None) if mask_c is None else mask_c[b]
            mvn = gp_posterior(GP, xc[b, keep][None], yc[b, keep][None], xt[b][None])
            means.append(mvn.mean[0])
            stds.append(mvn.variance[0].sqrt())
        return Independent(Normal(torch.stack(means)[..., None], torch.stack(stds)[..., None]), 1)


def gp_task(batch=3, num_c=4, num_t=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = 4 * torch.rand(batch, num_c + num_t, 1, generator=g, dtype=torch.float64) - 2
    cov = GP.covariance(x, x) + 0.01 * torch.eye(num_c + num_t, dtype=torch.float64)
    y = torch.linalg.cholesky(cov) @ torch.randn(batch, num_c + num_t, 1, generator=g, dtype=torch.float64)
    return x[:, :num_c], y[:, :num_c], x[:, num_c:], y[:, num_c:]


def test_ar_log_prob_of_the_exact_gp_is_its_joint_density():
    xc, yc, xt, yt = gp_task()
    joint = gp_posterior(GP, xc, yc, xt).log_prob(yt[..., 0])
    marginal = Normal(gp_posterior(GP, xc, yc, xt).mean, gp_posterior(GP, xc, yc, xt).variance.sqrt())
    got = ar_log_prob(ExactGPModel(), xc, yc, xt, yt)
    torch.testing.assert_close(got, joint)
    assert (joint - marginal.log_prob(yt[..., 0]).sum(-1)).abs().min() > 0.1  # the test can tell them apart


def test_ar_log_prob_from_an_empty_context_and_in_small_groups_of_steps(monkeypatch):
    xc, yc, xt, yt = gp_task(num_c=0)
    joint = gp_posterior(GP, xc, yc, xt).log_prob(yt[..., 0])
    monkeypatch.setattr(ar, "AR_CHUNK_POINTS", 7)  # one step per forward pass
    torch.testing.assert_close(ar_log_prob(ExactGPModel(), xc, yc, xt, yt), joint)


def test_masked_targets_are_neither_scored_nor_conditioned_on():
    xc, yc, xt, yt = gp_task(batch=1, num_t=5)
    mask_t = torch.tensor([[True, False, True, True, False]])
    kept = mask_t[0]
    expected = gp_posterior(GP, xc, yc, xt[:, kept]).log_prob(yt[:, kept, 0])
    got = ar_log_prob(ExactGPModel(), xc, yc, xt, yt, mask_t=mask_t)
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("name", ["cnp", "canp", "tnpd"])
def test_ar_log_prob_of_a_model_is_its_chain_rule(name):
    """Each factor is the model's predictive given C and the earlier targets, nothing later."""
    torch.manual_seed(0)
    model = build_model(name).double()
    xc, yc, xt, yt = gp_task(batch=2, num_c=3, num_t=4)
    expected = 0.0
    for i in range(4):
        x, y = torch.cat([xc, xt[:, :i]], 1), torch.cat([yc, yt[:, :i]], 1)
        expected = expected + model(x, y, xt[:, i : i + 1]).log_prob(yt[:, i : i + 1])[:, 0]
    torch.testing.assert_close(ar_log_prob(model, xc, yc, xt, yt), expected)


def test_ar_samples_have_the_exact_gps_joint_covariance():
    xc, yc, _, _ = gp_task(batch=1, num_c=2, num_t=3)
    xt = torch.tensor([[[0.0], [0.15], [0.3]]], dtype=torch.float64)  # close together: correlated
    torch.manual_seed(0)
    draws = ar_sample(ExactGPModel(), xc, yc, xt, num_samples=4000)[:, 0, :, 0]  # [S, Nt]
    mvn = gp_posterior(GP, xc, yc, xt)
    torch.testing.assert_close(draws.mean(0), mvn.mean[0], atol=0.05, rtol=0)
    torch.testing.assert_close(torch.cov(draws.T), mvn.covariance_matrix[0], atol=0.05, rtol=0)
    assert mvn.covariance_matrix[0].triu(1).abs().max() > 0.2  # correlated: independent draws would fail


def test_evaluate_reports_the_autoregressive_joint_for_deterministic_models():
    torch.manual_seed(0)
    model = build_model("cnp").double()
    batch = Batch(*gp_task(batch=2, num_c=3, num_t=4))
    metrics = evaluate(model, [batch], autoregressive=True)
    expected = ar_log_prob(model, batch.xc, batch.yc, batch.xt, batch.yt).mean() / 4
    assert metrics["tar_ll_ar"] == pytest.approx(expected.item())
    assert "tar_ll_ar" not in evaluate(model, [batch])
