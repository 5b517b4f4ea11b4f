"""Specification of the Pyro bridge (npkit.pyro): the same ELBO as npkit's objectives, SVI training
of npkit's networks, swappable guides."""

from __future__ import annotations

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from pyro.infer.autoguide import AutoNormal
from torch.distributions import Exponential

from npkit.data import SineSampler
from npkit.data.vectors import digit_vectors
from npkit.models import build_model
from npkit.models.vae import VAE
from npkit.objectives import elbo, vae_elbo
from npkit.pyro import np_model_guide, to_pyro, train_svi, train_vae_svi, vae_model_guide
from npkit.tasks import Batch

TINY_NP = dict(hidden_dim=16, r_dim=16, z_dim=4, encoder_layers=2, decoder_layers=2)
TINY_VAE = dict(x_dim=64, hidden_dim=16, z_dim=3, layers=2)


@pytest.fixture(autouse=True)
def fresh_param_store():
    pyro.clear_param_store()
    yield
    pyro.clear_param_store()


def sine_batch(batch_size: int = 3, seed: int = 0) -> Batch:
    return SineSampler().sample(batch_size, torch.Generator().manual_seed(seed)).to("cpu", torch.float64)


def seeded(fn, *args, seed: int = 5, **kwargs):
    """``fn(*args)`` after seeding torch, so npkit and Pyro draw the same z."""
    torch.manual_seed(seed)
    return fn(*args, **kwargs)


@pytest.mark.parametrize("name", ["lnp", "np", "anp"])
def test_pyro_elbo_equals_npkit_elbo_with_the_conditional_prior(name):
    torch.manual_seed(0)
    model, batch = build_model(name, **TINY_NP).double(), sine_batch()
    pyro_model, guide = np_model_guide(model)
    pyro_loss = seeded(TraceMeanField_ELBO().differentiable_loss, pyro_model, guide, batch)
    points = batch.batch_size * batch.y.shape[1]
    torch.testing.assert_close(pyro_loss / points, seeded(elbo, model, batch, prior="conditional").loss)


def test_masked_points_count_in_neither_elbo():
    torch.manual_seed(0)
    model, batch = build_model("np", **TINY_NP).double(), sine_batch()
    mask_t = torch.ones(batch.xt.shape[:2], dtype=torch.bool)
    mask_t[:, -2:] = False  # every task loses its last two targets
    masked = Batch(batch.xc, batch.yc, batch.xt, batch.yt, mask_t=mask_t)
    pyro_loss = seeded(TraceMeanField_ELBO().differentiable_loss, *np_model_guide(model), masked)
    points = batch.batch_size * (batch.y.shape[1] - 2)
    torch.testing.assert_close(pyro_loss / points, seeded(elbo, model, masked).loss)
    unmasked = seeded(TraceMeanField_ELBO().differentiable_loss, *np_model_guide(model), batch)
    assert not torch.allclose(pyro_loss, unmasked)


@pytest.mark.parametrize("options", [dict(beta=0.5), dict(num_classes=10)])
def test_pyro_elbo_equals_vae_elbo(options):
    torch.manual_seed(0)
    vae = VAE(**TINY_VAE, **options).double()
    batch = digit_vectors(binarize=True).sample(6, torch.Generator().manual_seed(0)).to("cpu", torch.float64)
    pyro_loss = seeded(TraceMeanField_ELBO().differentiable_loss, *vae_model_guide(vae), batch)
    torch.testing.assert_close(pyro_loss / 6, seeded(vae_elbo, vae, batch).loss)


def test_svi_on_the_wrapped_np_lowers_its_loss():
    torch.manual_seed(0)
    model, evaluation = build_model("np", **TINY_NP), SineSampler().sample(64, torch.Generator().manual_seed(9))
    before = seeded(elbo, model, evaluation).loss
    pyro_model, guide = np_model_guide(model)
    losses = train_svi(pyro_model, guide, SineSampler(), steps=150, batch_size=8, lr=3e-3, progress=False)
    after = seeded(elbo, model, evaluation).loss
    assert len(losses) == 150 and after < before - 0.3


def test_a_swapped_guide_trains_the_npkit_decoder():
    torch.manual_seed(0)
    model = build_model("np", **TINY_NP)
    pyro_model, _ = np_model_guide(model)
    guide = AutoNormal(pyro_model)
    decoder_before = model.decoder.net[0].weight.detach().clone()
    losses = train_svi(pyro_model, guide, SineSampler(), steps=20, batch_size=4, lr=1e-2, progress=False)
    assert all(torch.isfinite(torch.tensor(losses))) and guide.locs.z.shape == (4, 4)
    assert not torch.equal(model.decoder.net[0].weight, decoder_before)
    batch = SineSampler().sample(4, torch.Generator().manual_seed(0))
    assert model(batch.xc, batch.yc, batch.xt, num_samples=3).mean.shape == (3, *batch.yt.shape)


def test_svi_trains_the_vae_in_place():
    torch.manual_seed(0)
    vae = VAE(**TINY_VAE)
    test = digit_vectors("test", binarize=True).sample(200, torch.Generator().manual_seed(1))
    before = seeded(vae_elbo, vae, test, num_samples=5).loss
    losses = train_vae_svi(vae, digit_vectors(binarize=True), steps=300, batch_size=32, lr=3e-3, progress=False)
    after = seeded(vae_elbo, vae, test, num_samples=5).loss
    assert after < before - 5 and abs(sum(losses[-20:]) / 20 - after.item()) < 5


def test_svi_follows_the_trajectory_of_npkit_fit():
    from npkit.train import fit

    native, wrapped = (VAE(**TINY_VAE) for _ in range(2))
    wrapped.load_state_dict(native.state_dict())
    budget = dict(steps=40, batch_size=16, lr=1e-3, seed=3)
    history = fit(native, digit_vectors(binarize=True), vae_elbo, **budget, schedule="constant", progress=False)
    losses = train_vae_svi(wrapped, digit_vectors(binarize=True), **budget, progress=False, loss=TraceMeanField_ELBO())
    assert abs(history[-1]["train/loss"] - losses[-1]) < 1e-3
    for a, b in zip(native.parameters(), wrapped.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-4)


def test_the_elbo_estimate_depends_on_the_loss_class():
    torch.manual_seed(0)
    model, batch = build_model("np", **TINY_NP).double(), sine_batch()
    analytic = seeded(TraceMeanField_ELBO().differentiable_loss, *np_model_guide(model), batch)
    sampled = seeded(Trace_ELBO().differentiable_loss, *np_model_guide(model), batch)
    assert not torch.allclose(analytic, sampled)  # Trace_ELBO estimates the KL from the one z


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(TypeError, match="needs a latent NeuralProcess"):
        np_model_guide(build_model("cnp"))
    with pytest.raises(TypeError, match="a DeepPrior has the fixed prior"):  # not the conditional prior of the pair
        np_model_guide(build_model("deep_prior", posterior="iaf"))
    with pytest.raises(TypeError, match="vae_model_guide needs a VAE, got NP"):
        vae_model_guide(build_model("np"))
    with pytest.raises(TypeError, match="got Exponential"):
        to_pyro(Exponential(torch.ones(2)))
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        train_svi(*np_model_guide(build_model("np")), SineSampler(), steps=0, batch_size=2)
