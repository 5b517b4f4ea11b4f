"""Prediction and evaluation chunk over targets and latent samples: same numbers, bounded pieces."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import MODEL_WIDE, build_variant, family_of

import npkit.evaluation.metrics as evaluation
import npkit.models.chunking as chunking
from npkit.evaluation.metrics import evaluate
from npkit.models import MODELS, build_model
from npkit.predictive import predict
from npkit.tasks import Batch

ALL = MODEL_WIDE  # every family, and TNP-D with a mixture head
X_DIM = {"convcnp": 1}  # 1D only; the others take 2D inputs, as images
HIDDEN = 16


def make(name: str, y_dim: int = 2):
    torch.manual_seed(0)
    latent = {"z_dim": 4} if MODELS[family_of(name)].is_latent else {"global_paths": 1}  # CNPs: two concatenated paths
    sizes = dict(hidden_dim=HIDDEN, r_dim=HIDDEN, **latent)
    model = build_variant(name, x_dim=X_DIM.get(name, 2), y_dim=y_dim, init="normal", init_std=0.3, **sizes)
    return model.eval()


def image_like(
    b: int = 3, nc: int = 9, nt: int = 23, y_dim: int = 2, masked: bool = False, seed: int = 1, x_dim: int = 2
) -> Batch:
    g = torch.Generator().manual_seed(seed)
    u = lambda n, d: torch.rand(b, n, d, generator=g)
    masks = {}
    if masked:
        masks = {"mask_c": torch.rand(b, nc, generator=g) > 0.3, "mask_t": torch.rand(b, nt, generator=g) > 0.3}
        masks["mask_c"][:, 0] = True
        masks["mask_t"][0] = False  # a task without scored targets
    return Batch(u(nc, x_dim), u(nc, y_dim), u(nt, x_dim), u(nt, y_dim), **masks)


def one_pass(model, batch, z):
    with torch.no_grad():
        return model(batch.xc, batch.yc, batch.xt, z=z, mask_c=batch.mask_c)


# (PREDICT_CHUNK_ELEMENTS, what it chunks) for batch 3, hidden 16, 6 samples: 48 per sample-point
CHUNKINGS = [(48 * 6 * 5, "5 targets, all samples"), (48 * 2, "1 target, 2 samples"), (1, "1 target, 1 sample")]


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("elements", [c for c, _ in CHUNKINGS], ids=[i for _, i in CHUNKINGS])
def test_chunked_prediction_equals_one_pass(name, elements, monkeypatch):
    model = make(name)
    batch = image_like(masked=True, x_dim=model.config.x_dim)
    z = torch.randn(6, 3, 4, generator=torch.Generator().manual_seed(2)) if model.is_latent else None
    whole = one_pass(model, batch, z)
    monkeypatch.setattr(chunking, "PREDICT_CHUNK_ELEMENTS", elements)
    chunked = one_pass(model, batch, z)
    assert chunked.batch_shape == whole.batch_shape
    torch.testing.assert_close(chunked.mean, whole.mean, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(chunked.stddev, whole.stddev, rtol=1e-6, atol=1e-6)
    # and equal to the pass with gradients, which never chunks
    with torch.enable_grad():
        grad_pass = model(batch.xc, batch.yc, batch.xt, z=z, mask_c=batch.mask_c)
    torch.testing.assert_close(chunked.mean, grad_pass.mean.detach(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ALL)
def test_chunked_predictive_mixture_equals_one_pass(name, monkeypatch):
    """npkit.predict draws its own z: same seed, same mixture."""
    model = make(name)
    batch = image_like(x_dim=model.config.x_dim)
    with torch.no_grad():
        torch.manual_seed(3)
        whole = predict(model, batch.xc, batch.yc, batch.xt, num_samples=7)
        monkeypatch.setattr(chunking, "PREDICT_CHUNK_ELEMENTS", 50)
        torch.manual_seed(3)
        chunked = predict(model, batch.xc, batch.yc, batch.xt, num_samples=7)
    torch.testing.assert_close(chunked.mean, whole.mean, rtol=1e-6, atol=1e-6)
    # float32 round-off: a mixture head's variance sums K terms of size ~10 (init_std 0.3)
    torch.testing.assert_close(chunked.variance, whole.variance, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(chunked.log_prob(batch.yt), whole.log_prob(batch.yt), rtol=2e-6, atol=1e-5)


def test_decoder_pieces_are_bounded_in_targets_and_samples(monkeypatch):
    """Without gradients no decoder call sees more than PREDICT_CHUNK_ELEMENTS activations (or one
    sample of one target when that alone is larger)."""
    model = make("anp")
    batch = image_like(nt=40)
    sizes = []
    decode = model.decode
    model.decode = lambda h, z: sizes.append((z.shape[0], h[0].shape[1])) or decode(h, z)  # h[0]: x_t
    monkeypatch.setattr(chunking, "PREDICT_CHUNK_ELEMENTS", 3 * HIDDEN * 10)  # 10 sample-targets
    with torch.no_grad():
        pred = model(batch.xc, batch.yc, batch.xt, num_samples=4)
    assert pred.batch_shape == (4, 3, 40)
    assert max(s * n for s, n in sizes) <= 10
    assert sum(s * n for s, n in sizes) == 4 * 40  # every (sample, target) decoded once
    sizes.clear()
    monkeypatch.setattr(chunking, "PREDICT_CHUNK_ELEMENTS", 1)
    with torch.no_grad():
        model(batch.xc, batch.yc, batch.xt[:, :5], num_samples=4)
    assert set(sizes) == {(1, 1)} and len(sizes) == 20


def _same_metrics(a: dict, b: dict, tol: float = 1e-6) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if math.isnan(a[key]):
            assert math.isnan(b[key]), key
        else:
            assert b[key] == pytest.approx(a[key], rel=tol, abs=tol), key


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("masked", [False, True], ids=["dense", "masked"])
def test_evaluate_metrics_are_unchanged_by_chunking(name, masked, monkeypatch):
    model = make(name)
    dx = model.config.x_dim
    batches = [image_like(masked=masked, x_dim=dx), image_like(nc=0, masked=False, seed=4, x_dim=dx)]
    torch.manual_seed(5)
    whole = evaluate(model, batches, num_samples=6)
    monkeypatch.setattr(chunking, "PREDICT_CHUNK_ELEMENTS", 50)
    monkeypatch.setattr(evaluation, "EVAL_CHUNK_ELEMENTS", 40)  # a few points per model query
    torch.manual_seed(5)
    chunked = evaluate(model, batches, num_samples=6)
    _same_metrics(whole, chunked)


def test_evaluate_queries_the_model_in_chunks_with_the_same_samples(monkeypatch):
    model = make("np")
    batch = image_like(nt=30)
    calls = []
    forward = model.forward

    def spy(xc, yc, xt, num_samples=None, *, z=None, mask_c=None):
        calls.append((xt.shape[1], z))
        return forward(xc, yc, xt, num_samples, z=z, mask_c=mask_c)

    model.forward = spy
    monkeypatch.setattr(evaluation, "EVAL_CHUNK_ELEMENTS", 6 * 3 * 2 * 8)  # 8 points of [6, 3, n, 2]
    evaluate(model, [batch], num_samples=6)
    context_query = [c for c in calls if c[1] is calls[0][1]]  # first: context ∪ targets with z ~ p(z | C)
    assert [n for n, _ in context_query] == [8, 8, 8, 8, 7]  # 9 + 30 points
    iw_query = [c for c in calls if c[1] is not calls[0][1]]  # then the targets with z ~ q(z | C ∪ T)
    assert [n for n, _ in iw_query] == [8, 8, 8, 6]
    assert all(z is iw_query[0][1] for _, z in iw_query)


def test_evaluate_with_bernoulli_likelihood_is_unchanged_by_chunking(monkeypatch):
    """Coverage is NaN without a CDF, in every chunk."""
    torch.manual_seed(0)
    model = build_model("np", x_dim=2, y_dim=2, hidden_dim=HIDDEN, r_dim=HIDDEN, z_dim=4, likelihood="bernoulli")
    batch = image_like()
    batch = Batch(batch.xc, (batch.yc > 0.5).float(), batch.xt, (batch.yt > 0.5).float())
    torch.manual_seed(5)
    whole = evaluate(model, [batch], num_samples=6)
    monkeypatch.setattr(evaluation, "EVAL_CHUNK_ELEMENTS", 40)
    torch.manual_seed(5)
    chunked = evaluate(model, [batch], num_samples=6)
    assert math.isnan(chunked["coverage95"])
    _same_metrics(whole, chunked)


# --- training: recomputed (checkpointed) chunks give the same loss and gradients


@pytest.mark.parametrize("name", ALL)
def test_recomputed_training_chunks_give_the_same_loss_and_gradients(name, monkeypatch):
    """Large tasks train with decoder chunks and attention blocks recomputed in the backward
    pass: the loss and every gradient equal one plain pass."""
    import npkit.nn.attention as attention
    from npkit.objectives import get_objective

    batch = image_like(masked=True, x_dim=X_DIM.get(name, 2)).to("cpu", torch.float64)
    latent = MODELS[family_of(name)].is_latent
    objective = get_objective("iwae" if latent else "nll", **({"num_samples": 3} if latent else {}))

    def loss_and_grads():
        model = make(name).double().train()
        torch.manual_seed(5)
        loss = objective(model, batch).loss
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]

    plain_loss, plain_grads = loss_and_grads()
    monkeypatch.setattr(chunking, "PREDICT_CHUNK_ELEMENTS", 3 * 3 * HIDDEN * 4)  # 4 targets per chunk
    monkeypatch.setattr(attention, "RECOMPUTE_ELEMENTS", 1)  # every attention block recomputed
    chunked_loss, chunked_grads = loss_and_grads()
    assert torch.allclose(chunked_loss, plain_loss, rtol=1e-12, atol=1e-12)
    assert len(chunked_grads) == len(plain_grads)
    for a, b in zip(chunked_grads, plain_grads):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)
