"""Deep Prior: the four posterior variants, the flows' log-determinant in log q, the score-function
gradient of the non-reparameterised posterior, training and checkpoints."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Independent, TransformedDistribution

from npkit import build_model, fit, load_model, save_model
from npkit.data import make_sampler
from npkit.models.deep_prior import POSTERIORS, DeepPrior, NotReparameterised
from npkit.objectives import elbo, iwae

SINE = make_sampler("sine", frequency=(0.5, 2.0), noise=0.1, num_context=(1, 8), num_target=(5, 10))
SMALL = {"hidden_dim": 16, "r_dim": 16, "z_dim": 2, "encoder_layers": 2, "decoder_layers": 2, "flow_steps": 2}


def small(posterior: str, seed: int = 0, **options) -> DeepPrior:
    torch.manual_seed(seed)
    return DeepPrior(posterior=posterior, **{**SMALL, **options})


def batch(size: int = 4, seed: int = 0):
    return SINE.sample(size, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("posterior", POSTERIORS)
def test_every_posterior_gives_task_latents_and_marginal_predictions(posterior):
    model, b = small(posterior), batch()
    q = model.posterior(b.xc, b.yc)
    kinds = {"standard": NotReparameterised, "gaussian": Independent}
    assert isinstance(q, kinds.get(posterior, TransformedDistribution))
    assert q.batch_shape == (4,) and q.event_shape == (2,)
    assert q.has_rsample == (posterior != "standard")
    z = q.rsample((3,))
    assert z.shape == (3, 4, 2) and q.log_prob(z).shape == (3, 4)
    assert z.requires_grad == (posterior != "standard")
    pred = model(b.xc, b.yc, b.xt, num_samples=5)
    assert pred.mean.shape == (5, 4, b.num_target, 1)
    assert (pred.stddev > 0).all() and pred.stddev.std() > 0  # heteroscedastic: the std depends on x and z


@pytest.mark.parametrize("posterior", ["planar", "iaf"])
def test_flow_log_density_is_the_base_density_minus_the_log_determinant(posterior):
    """log q(z) = log q0(u) - log |det dz/du| with the Jacobian of the composed flow by autograd."""
    model, b = small(posterior, flow_steps=3), batch(size=1)
    q = model.posterior(b.xc, b.yc)
    u = q.base_dist.sample()  # [1, 2]

    def flow(v):
        for t in q.transforms:
            v = t(v)
        return v

    jacobian = torch.autograd.functional.jacobian(lambda v: flow(v.unsqueeze(0))[0], u[0])
    z = flow(u)  # leaves each transform's cache at (u, z), as rsample does
    expected = q.base_dist.log_prob(u) - torch.linalg.slogdet(jacobian).logabsdet
    assert torch.allclose(q.log_prob(z), expected, atol=1e-5)
    assert not torch.allclose(q.log_prob(z), q.base_dist.log_prob(u), atol=1e-3)  # the flow does something


def test_the_iaf_posterior_is_a_normalised_density():
    model, b = small("iaf", flow_steps=3), batch(size=1)
    q = model.posterior(b.xc, b.yc)
    grid = torch.linspace(-8, 8, 401)
    z = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 1, 2)
    mass = q.log_prob(z).detach().exp().sum() * (grid[1] - grid[0]) ** 2
    assert abs(mass.item() - 1.0) < 0.02


def test_the_standard_posterior_gets_the_score_function_gradient_of_the_reparameterised_one():
    """Same loss value; q's gradient without reparameterisation agrees with the pathwise one in
    expectation (many samples), while the decoder's gradient needs no estimator."""
    b = batch(size=2)
    grads = {}
    for posterior in ("standard", "gaussian"):
        model = small(posterior)
        torch.manual_seed(1)
        loss = elbo(model, b, num_samples=20000, prior="fixed").loss
        loss.backward()
        grads[posterior] = (loss.item(), torch.cat([p.grad.flatten() for p in model.latent.parameters()]))
    (loss_sf, g_sf), (loss_rep, g_rep) = grads["standard"], grads["gaussian"]
    assert abs(loss_sf - loss_rep) < 0.05
    assert torch.nn.functional.cosine_similarity(g_sf, g_rep, dim=0) > 0.9
    assert g_sf.norm() > 0


def test_iwae_refuses_to_train_a_posterior_without_reparameterisation():
    with pytest.raises(ValueError, match="iwae and ml need a reparameterised posterior to train"):
        iwae(small("standard"), batch())


@pytest.mark.parametrize("posterior", POSTERIORS)
def test_training_lowers_the_loss_of_every_variant(posterior):
    model, b = small(posterior), batch(size=64, seed=9)
    before = elbo(model, b, num_samples=8, prior="fixed").loss.item()
    fit(model, SINE, "elbo", {"prior": "fixed", "num_samples": 4}, steps=150, batch_size=16, lr=3e-3, progress=False)
    torch.manual_seed(0)
    after = elbo(model, b, num_samples=8, prior="fixed").loss.item()
    assert after < before - 0.3


def test_flow_posteriors_round_trip_through_checkpoints(tmp_path):
    model, b = small("iaf"), batch()
    loaded = load_model(save_model(model, tmp_path / "iaf"))
    assert isinstance(loaded, DeepPrior) and loaded.config == model.config
    for m in (model, loaded):
        torch.manual_seed(3)
        m.out = m(b.xc, b.yc, b.xt, num_samples=4).mean
    assert torch.equal(model.out, loaded.out)


def test_bad_options_name_the_option():
    with pytest.raises(ValueError, match=r"posterior must be one of \['standard', 'gaussian', 'planar', 'iaf'\]"):
        build_model("deep_prior", posterior="sylvester")
    with pytest.raises(ValueError, match="flow_steps"):
        build_model("deep_prior", flow_steps=0)


@pytest.mark.parametrize("posterior", ["planar", "iaf"])
def test_flow_posteriors_are_diagnosed_and_evaluated(posterior):
    """The planar flow cannot score foreign z: its KL, mutual information and importance-weighted
    joint log-likelihood are NaN; the IAF (invertible) gets every number; both get a verdict."""
    from npkit.evaluation.diagnostics import diagnose
    from npkit.evaluation.metrics import evaluate

    model = small(posterior)
    d = diagnose(model, SINE, num_tasks=16, num_samples=8)
    metrics = evaluate(model, [batch(seed=s) for s in range(2)], num_samples=8)
    finite = posterior == "iaf"
    for value in (d.kl, d.mutual_information, metrics["tar_ll_joint_iw"]):
        assert math.isfinite(value) == finite
    assert d.verdict and math.isfinite(d.std_context) and math.isfinite(metrics["tar_ll"])
