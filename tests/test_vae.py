"""Specification of the VAE (npkit.models.vae), its objectives and the image-vector sampler
(npkit.data.vectors)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import MultivariateNormal

from npkit.data.vectors import ImageVectors, VectorBatch, digit_vectors
from npkit.models.vae import VAE, VAEConfig
from npkit.objectives import importance_log_likelihood, vae_elbo
from npkit.train import fit

SMALL = dict(x_dim=64, hidden_dim=16, z_dim=3, layers=2)


def make(double: bool = False, **options) -> VAE:
    torch.manual_seed(0)
    model = VAE(**{**SMALL, **options})
    return model.double() if double else model


def digits_batch(batch_size: int = 8, seed: int = 0, split: str = "train") -> VectorBatch:
    return digit_vectors(split, binarize=True).sample(batch_size, torch.Generator().manual_seed(seed))


def seeded(fn, *args, seed: int = 7, **kwargs):
    """``fn(*args)`` after seeding torch, so two calls draw the same z."""
    torch.manual_seed(seed)
    return fn(*args, **kwargs)


def inverse_softplus(y: float) -> float:
    return math.log(math.expm1(y))


# --------------------------------------------------------------------------- the sampler


def test_image_vectors_flatten_the_chosen_images_with_their_labels():
    images, labels = torch.rand(5, 2, 3, 4), torch.arange(5)
    batch = ImageVectors(images, labels).batch_of(torch.tensor([3, 1]))
    assert torch.equal(batch.x, images[[3, 1]].flatten(1)) and torch.equal(batch.labels, torch.tensor([3, 1]))
    assert ImageVectors(images, labels).x_dim == 24


def test_sampling_is_reproducible_from_the_generator_alone():
    sampler = digit_vectors(binarize=True)
    first, again = (sampler.sample(16, torch.Generator().manual_seed(3)) for _ in range(2))
    other = sampler.sample(16, torch.Generator().manual_seed(4))
    assert torch.equal(first.x, again.x) and torch.equal(first.labels, again.labels)
    assert not torch.equal(first.x, other.x)


def test_dynamic_binarisation_draws_bernoulli_pixels_from_the_intensities():
    images = torch.tensor([0.0, 0.25, 0.75, 1.0]).reshape(1, 1, 2, 2)
    sampler = ImageVectors(images, torch.tensor([0]), binarize=True)
    x = sampler.sample(4000, torch.Generator().manual_seed(0)).x
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(x.mean(0), images.flatten(), atol=0.03, rtol=0)
    assert torch.equal(ImageVectors(images, torch.tensor([0])).sample(2).x, images.flatten(1).expand(2, 4))


def test_digit_vectors_use_the_digits_split_of_npkit_data():
    from npkit.data import digits_split

    train, test = digit_vectors("train"), digit_vectors("test")
    assert (len(train), len(test), train.x_dim) == (1437, 360, 64)
    images, labels = digits_split("test")
    batch = test.batch_of(torch.arange(360))
    assert torch.equal(batch.x, images.flatten(1)) and torch.equal(batch.labels, labels)


def test_vector_batch_moves_and_converts():
    batch = digits_batch(4).to("cpu", torch.float64)
    assert batch.x.dtype == torch.float64 and batch.labels.dtype == torch.int64 and batch.batch_size == 4


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: ImageVectors(torch.rand(3, 8, 8), torch.arange(3)), "images must be a float tensor"),
        (lambda: ImageVectors(torch.rand(3, 1, 8, 8), torch.arange(2)), "labels must be a tensor of shape"),
        (lambda: ImageVectors(2 * torch.rand(3, 1, 8, 8), torch.arange(3)), r"every value in \[0, 1\]"),
        (lambda: ImageVectors(torch.rand(3, 1, 2, 2), torch.arange(3), binarize=1), "binarize must be a bool"),
        (lambda: digit_vectors().sample(0), "batch_size must be a positive integer"),
        (lambda: digit_vectors("valid"), "unknown digits split"),
        (lambda: VectorBatch(torch.rand(2, 3, 4)), r"x must be a float \[batch, x_dim\]"),
        (lambda: VectorBatch(torch.rand(2, 3), torch.arange(3)), r"labels must have shape \[2\]"),
    ],
)
def test_bad_sampler_inputs_raise_one_line_errors(build, message):
    with pytest.raises(ValueError, match=message):
        build()


# --------------------------------------------------------------------------- the model


def test_every_distribution_has_the_documented_shape():
    model, x = make(), digits_batch(5).x
    out = model(x, num_samples=4)
    assert (out.q_z.batch_shape, out.q_z.event_shape, out.z.shape) == ((5,), (3,), (4, 5, 3))
    assert (out.p_x.batch_shape, out.p_x.event_shape) == ((4, 5), (64,))
    assert model.decode(out.z[0]).batch_shape == (5,) and model.reconstruct(x).batch_shape == (5,)
    assert model.sample(6).mean.shape == (6, 64) and model.prior(5).event_shape == (3,)


def test_config_and_keyword_options_build_the_same_model():
    config = VAEConfig(**SMALL, likelihood="gaussian", beta=0.5)
    assert VAEConfig.from_dict(config.to_dict()) == config
    assert VAE(config).config == VAE(**config.to_dict()).config == config
    assert (VAE.name, VAE.is_latent, VAE.config_class) == ("vae", True, VAEConfig)


def test_reconstruction_decodes_the_posterior_mean():
    model, x = make(), digits_batch(5).x
    torch.testing.assert_close(model.reconstruct(x).mean, model.decode(model.encode(x).mean).mean)


def test_a_conditional_vae_reads_the_label():
    model, batch = make(num_classes=10), digits_batch(5)
    z = torch.zeros(5, 3)
    assert not torch.allclose(model.decode(z, batch.labels).mean, model.decode(z, (batch.labels + 1) % 10).mean)
    assert model.sample(5, batch.labels).batch_shape == (5,)
    assert torch.isfinite(vae_elbo(model, batch).loss)


# --------------------------------------------------------------------------- the objectives


def test_elbo_is_the_log_likelihood_minus_beta_times_the_kl():
    out = vae_elbo(make(beta=0.3), digits_batch(), num_samples=2)
    assert torch.equal(out.loss, -(out.log_lik - 0.3 * out.kl))


def test_elbo_terms_match_their_definitions():
    model, batch = make(double=True), digits_batch(6).to("cpu", torch.float64)
    out = seeded(vae_elbo, model, batch)
    q = model.encode(batch.x)
    mu, sigma = q.mean, q.stddev
    closed_form = 0.5 * (mu**2 + sigma**2 - 1 - 2 * sigma.log()).sum(-1).mean()
    torch.testing.assert_close(out.kl, closed_form)
    torch.manual_seed(7)
    z = mu + sigma * torch.randn(1, *mu.shape, dtype=torch.float64)
    logits = model.decoder(z)[0]
    log_lik = -F.binary_cross_entropy_with_logits(logits, batch.x, reduction="none").sum(-1).mean()
    torch.testing.assert_close(out.log_lik, log_lik)


def test_importance_weighting_beats_the_elbo_on_average():
    model, batch = make(), digits_batch(64)
    torch.manual_seed(0)
    iwae = importance_log_likelihood(model, batch.x, num_samples=50).mean()
    elbo = -vae_elbo(model, batch, num_samples=50).loss
    assert iwae > elbo + 0.1


def linear_gaussian_vae(sigma: float = 0.5, shift: float = 0.0) -> tuple[VAE, torch.Tensor, torch.Tensor]:
    """A VAE with linear maps: p(x | z) = N(W z + b, sigma^2 I), so p(x) = N(b, W W^T + sigma^2 I);
    W has orthogonal columns, so the exact posterior is diagonal and the encoder is set to it
    (its mean moved by ``shift``). Returns the model, W and b."""
    model = VAE(x_dim=3, z_dim=2, layers=1, likelihood="gaussian", min_sigma=0.0, latent_min_sigma=0.0).double()
    w = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    b = torch.tensor([0.5, -1.0, 0.25], dtype=torch.float64)
    precision = 1 + (w**2).sum(0) / sigma**2  # [z_dim]
    gain = w.T / (sigma**2 * precision[:, None])  # posterior mean = gain (x - b)
    with torch.no_grad():
        model.decoder[0].weight.copy_(torch.cat([w, torch.zeros(3, 2, dtype=torch.float64)]))
        model.decoder[0].bias.copy_(torch.cat([b, torch.full((3,), inverse_softplus(sigma), dtype=torch.float64)]))
        model.encoder[0].weight.copy_(torch.cat([gain, torch.zeros(2, 3, dtype=torch.float64)]))
        std = [inverse_softplus(float(s)) for s in precision.rsqrt()]
        model.encoder[0].bias.copy_(torch.cat([-gain @ b + shift, torch.tensor(std, dtype=torch.float64)]))
    return model, w, b


def exact_log_likelihood(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, sigma: float = 0.5) -> torch.Tensor:
    return MultivariateNormal(b, w @ w.T + sigma**2 * torch.eye(3, dtype=torch.float64)).log_prob(x)


def test_importance_log_likelihood_is_exact_with_the_exact_posterior():
    model, w, b = linear_gaussian_vae()
    x = torch.randn(10, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2
    estimate = importance_log_likelihood(model, x, num_samples=3)
    torch.testing.assert_close(estimate, exact_log_likelihood(x, w, b), rtol=0, atol=1e-10)


def test_importance_log_likelihood_closes_the_gap_of_a_wrong_posterior():
    model, w, b = linear_gaussian_vae(shift=0.3)
    x = torch.randn(10, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2
    exact = exact_log_likelihood(x, w, b).mean()
    torch.manual_seed(0)
    elbo = -vae_elbo(model, VectorBatch(x), num_samples=2000).loss
    iwae = importance_log_likelihood(model, x, num_samples=2000).mean()
    assert elbo < exact - 0.5 and abs(iwae - exact) < 0.02


def test_training_lowers_the_loss_on_digits():
    model, test = make(hidden_dim=32, z_dim=4), digits_batch(200, seed=1, split="test")
    before = seeded(vae_elbo, model, test, num_samples=5).loss
    fit(model, digit_vectors(binarize=True), vae_elbo, steps=300, batch_size=32, lr=3e-3, progress=False, seed=0)
    after = seeded(vae_elbo, model, test, num_samples=5).loss
    assert after < before - 10


# --------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(z_dim=0), "z_dim must be a positive integer, got 0"),
        (dict(layers=1.5), "model.layers must be an integer"),
        (dict(likelihood="poisson"), "likelihood must be one of"),
        (dict(beta=-1.0), "beta must be >= 0"),
        (dict(min_sigma=1.0), r"min_sigma must lie in \[0, 1\)"),
        (dict(num_classes=-1), "num_classes must be an integer >= 0"),
        (dict(hidden=3), "unknown model option"),
    ],
)
def test_bad_options_raise_one_line_errors(options, message):
    with pytest.raises(ValueError, match=message):
        VAE(**options)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m, b: m.encode(b.x[:, :10]), r"x must have shape \[batch, 64\]"),
        (lambda m, b: m.decode(torch.zeros(4, 5)), r"z must have shape \[..., batch, 3\]"),
        (lambda m, b: m.encode(b.x, b.labels), "this VAE is unconditional"),
        (lambda m, b: vae_elbo(m, VectorBatch(b.x / 2)), r"needs x in \{0, 1\}"),
        (lambda m, b: vae_elbo(m, b, num_samples=0), "num_samples must be a positive integer"),
    ],
)
def test_bad_model_inputs_raise_one_line_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call(make(), digits_batch(4))


def test_a_conditional_vae_needs_valid_labels():
    model, batch = make(num_classes=10), digits_batch(4)
    with pytest.raises(ValueError, match=r"labels must be int64 of shape \[4\]"):
        model.encode(batch.x)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\)"):
        model.encode(batch.x, batch.labels + 10)


def test_objectives_refuse_other_models():
    from npkit.models import build_model

    with pytest.raises(TypeError, match="vae_elbo needs a VAE, got NP"):
        vae_elbo(build_model("np"), digits_batch(4))
