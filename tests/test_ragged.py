"""Ragged batches end to end: tasks of different context and target sizes, padded and masked in
one batch, give exactly what each task gives alone, for predictions and for the objectives."""

import pytest
import torch
from conftest import MODEL_WIDE, build_variant, family_of
from torch.distributions import Normal

from npkit.models import MODELS
from npkit.objectives import elbo, iwae, log_marginal_estimate, ml, nll
from npkit.tasks import Batch

ALL = MODEL_WIDE  # every family, and TNP-D with a mixture head
LATENT = ["lnp", "np", "anp"]
# global_paths and post_layers: the extra pooled paths and post-pooling MLPs of the TNP reference sizes
SMALL = {"hidden_dim": 16, "r_dim": 16, "z_dim": 8, "encoder_layers": 2, "decoder_layers": 2, "num_heads": 4}
SMALL |= {"global_paths": 1, "post_layers": 2}
# (context size, target size) of each task; 0 context points is the prior predictive.
SIZES = [(5, 2), (0, 4), (2, 6), (7, 1)]
GARBAGE = 1e3  # what the padding holds: any finite value must be ignored


def make(name: str):
    torch.manual_seed(0)
    return build_variant(name, **SMALL).double()


def tasks(seed: int = 0) -> list[Batch]:
    """One Batch of batch size 1 per entry of SIZES."""
    g = torch.Generator().manual_seed(seed)
    draw = lambda n: torch.randn(1, n, 1, generator=g, dtype=torch.float64)
    return [Batch(draw(nc), draw(nc), draw(nt), draw(nt)) for nc, nt in SIZES]


def pad(parts: list[torch.Tensor], extra: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """[1, n_b, D] tensors -> [B, max n_b + extra, D] padded with GARBAGE, and the mask."""
    longest = max(p.shape[1] for p in parts) + extra
    out = torch.full((len(parts), longest, parts[0].shape[-1]), GARBAGE, dtype=parts[0].dtype)
    mask = torch.zeros(len(parts), longest, dtype=torch.bool)
    for b, p in enumerate(parts):
        out[b, : p.shape[1]] = p[0]
        mask[b, : p.shape[1]] = True
    return out, mask


def ragged(alone: list[Batch], extra: int = 0) -> Batch:
    """The tasks in one batch, each part padded to the longest (plus ``extra``) and masked."""
    xc, mask_c = pad([t.xc for t in alone], extra)
    yc, _ = pad([t.yc for t in alone], extra)
    xt, mask_t = pad([t.xt for t in alone], extra)
    yt, _ = pad([t.yt for t in alone], extra)
    return Batch(xc, yc, xt, yt, mask_c=mask_c, mask_t=mask_t)


@pytest.fixture
def fixed_noise(monkeypatch):
    """Every Normal.rsample returns loc + scale * eps with one fixed eps [z_dim] shared by all
    tasks, so latent samples of a task do not depend on its place in the batch."""
    eps = torch.linspace(-1.5, 1.5, SMALL["z_dim"], dtype=torch.float64)

    def rsample(self, sample_shape=()):
        return (self.loc + self.scale * eps).expand(torch.Size(sample_shape) + self.loc.shape)

    monkeypatch.setattr(Normal, "rsample", rsample)


def close(a, b):
    return torch.allclose(a, b, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name", ALL)
def test_ragged_batch_predicts_like_each_task_alone(name, fixed_noise):
    model, alone = make(name), tasks()
    batch = ragged(alone)
    with torch.no_grad():
        pred = model(batch.xc, batch.yc, batch.xt, mask_c=batch.mask_c)
        for b, task in enumerate(alone):
            own = model(task.xc, task.yc, task.xt)
            n = task.num_target
            got_mean, got_std = pred.mean[..., b : b + 1, :n, :], pred.stddev[..., b : b + 1, :n, :]
            assert close(got_mean, own.mean) and close(got_std, own.stddev), f"task {b} {SIZES[b]}"
            assert close(pred.log_prob(batch.yt)[..., b : b + 1, :n], own.log_prob(task.yt)), f"task {b}"


@pytest.mark.parametrize("name", LATENT)
def test_ragged_batch_posterior_matches_each_task_alone(name):
    model, alone = make(name), tasks()
    batch = ragged(alone)
    with torch.no_grad():
        q = model.posterior(batch.x, batch.y, batch.mask)
        for b, task in enumerate(alone):
            own = model.posterior(task.x, task.y)
            assert close(q.mean[b : b + 1], own.mean) and close(q.stddev[b : b + 1], own.stddev), f"task {b}"


def objectives(name: str):
    if not MODELS[family_of(name)].is_latent:
        return {"nll": nll, "nll-targets": lambda m, b: nll(m, b, include_context=False)}
    return {
        "elbo": lambda m, b: elbo(m, b, num_samples=2),
        "elbo-fixed-targets": lambda m, b: elbo(m, b, prior="fixed", include_context=False),
        "iwae": lambda m, b: iwae(m, b, num_samples=3),
        "ml": lambda m, b: ml(m, b, num_samples=3),
    }


@pytest.mark.parametrize("name", ALL)
def test_ragged_batch_objectives_average_each_task_alone(name, fixed_noise):
    """Each objective is a mean over tasks of per-task values normalised per point; padded in a
    ragged batch (alone or together) a task must keep its own value."""
    model, alone = make(name), tasks()
    batch = ragged(alone)
    for label, objective in objectives(name).items():
        own = [objective(model, task) for task in alone]
        for b in range(len(alone)):
            padded = objective(model, ragged(alone[b : b + 1], extra=2))
            assert close(padded.loss, own[b].loss), f"{label}: task {b} {SIZES[b]} padded alone"
        together = objective(model, batch)
        for term in ("loss", "log_lik", "kl"):
            if getattr(together, term) is not None:
                mean = torch.stack([getattr(o, term) for o in own]).mean()
                assert close(getattr(together, term), mean), f"{label}: {term} of the ragged batch"


@pytest.mark.parametrize("name", LATENT)
@pytest.mark.parametrize("proposal", ["posterior", "context"])
def test_ragged_batch_per_task_log_marginal_matches_each_task_alone(name, proposal, fixed_noise):
    model, alone = make(name), tasks()
    estimate, counts = log_marginal_estimate(model, ragged(alone), num_samples=3, proposal=proposal)
    for b, task in enumerate(alone):
        own, n = log_marginal_estimate(model, task, num_samples=3, proposal=proposal)
        assert close(estimate[b : b + 1], own) and counts[b] == n[0] == sum(SIZES[b]), f"task {b}"


@pytest.mark.parametrize("name", ALL)
def test_empty_context_batch_is_the_prior_predictive_of_every_task(name, fixed_noise):
    model, alone = make(name), tasks()
    batch = ragged(alone)
    empty = torch.zeros(len(alone), 0, 1, dtype=torch.float64)
    with torch.no_grad():
        pred = model(empty, empty, batch.xt)
        masked = model(batch.xc, batch.yc, batch.xt, mask_c=torch.zeros_like(batch.mask_c))
    assert close(pred.mean, masked.mean) and close(pred.stddev, masked.stddev)
    assert torch.isfinite(pred.mean).all()
