"""Specification of npkit.objectives: nll, elbo, iwae/ml, get_objective, and that the
losses actually train a model."""

import math
from dataclasses import fields

import pytest
import torch
from torch.distributions import Independent, Normal, TransformedDistribution, kl_divergence

from npkit.data import SineSampler, make_sampler
from npkit.models import MODELS, build_model
from npkit.objectives import KLAnnealing, as_step_objective, elbo, get_objective, iwae, kl_per_dim, ml, nll
from npkit.tasks import Batch

LATENT = ["lnp", "np", "anp"]
SMALL = {
    "hidden_dim": 16,
    "r_dim": 16,
    "z_dim": 4,
    "encoder_layers": 2,
    "decoder_layers": 2,
    "attention_layers": 1,
    "num_heads": 4,
}
NC, NT = 5, 20


def make(name: str, **options):
    """A small float64 model; normal(0.5) weights make posteriors of different sets differ."""
    torch.manual_seed(0)
    known = {f.name for f in fields(MODELS[name].config_class)}
    merged = {**SMALL, "init": "normal", "init_std": 0.5, **options}
    return build_model(name, **{k: v for k, v in merged.items() if k in known}).double()


def gp_batch(batch_size: int = 8, seed: int = 0) -> Batch:
    sampler = make_sampler("gp1d", num_context=(NC, NC), num_target=(NT, NT))
    return sampler.sample(batch_size, torch.Generator().manual_seed(seed)).to("cpu", torch.float64)


def normal_log_prob_by_hand(y, mean, std):
    """log N(y; mean, std^2) summed over y_dim, written out."""
    return (-0.5 * math.log(2 * math.pi) - std.log() - 0.5 * ((y - mean) / std) ** 2).sum(-1)


def conditional_log_lik_by_hand(model, batch: Batch, z, x, y):
    """mean over tasks of (1/N) sum_n log p(y_n | x_n, z, C) for one z per task [1, B, z_dim]."""
    pred = model(batch.xc, batch.yc, x, z=z)
    return (normal_log_prob_by_hand(y, pred.mean[0], pred.stddev[0]).sum(-1) / y.shape[1]).mean()


# --------------------------------------------------------------------------- nll


def test_nll_is_minus_mean_per_point_gaussian_log_likelihood_of_context_and_targets():
    model, batch = make("cnp"), gp_batch()
    pred = model(batch.xc, batch.yc, batch.x)
    per_task = normal_log_prob_by_hand(batch.y, pred.mean, pred.stddev).sum(-1) / (NC + NT)
    out = nll(model, batch)
    assert out.loss.item() == pytest.approx(-per_task.mean().item(), rel=1e-12)
    assert out.log_lik.item() == pytest.approx(per_task.mean().item(), rel=1e-12)
    assert out.kl is None


def test_nll_without_context_scores_only_the_targets():
    model, batch = make("cnp"), gp_batch()
    pred = model(batch.xc, batch.yc, batch.xt)
    per_task = normal_log_prob_by_hand(batch.yt, pred.mean, pred.stddev).sum(-1) / NT
    out = nll(model, batch, include_context=False)
    assert out.loss.item() == pytest.approx(-per_task.mean().item(), rel=1e-12)
    assert out.loss.item() != pytest.approx(nll(model, batch).loss.item(), rel=1e-3)


def test_nll_ignores_masked_target_points():
    model, batch = make("cnp"), gp_batch(batch_size=3)
    mask_t = torch.ones(3, NT, dtype=torch.bool)
    mask_t[1, ::2] = False
    mask_t[2, 3:] = False
    yt = torch.where(mask_t[..., None], batch.yt, torch.full_like(batch.yt, 1e3))
    masked = Batch(batch.xc, batch.yc, batch.xt, yt, mask_t=mask_t)
    expected = torch.stack(
        [
            nll(
                model,
                Batch(
                    batch.xc[b : b + 1],
                    batch.yc[b : b + 1],
                    batch.xt[b : b + 1, mask_t[b]],
                    batch.yt[b : b + 1, mask_t[b]],
                ),
                include_context=False,
            ).loss
            for b in range(3)
        ]
    ).mean()
    assert nll(model, masked, include_context=False).loss.item() == pytest.approx(expected.item(), rel=1e-12)


# --------------------------------------------------------------------------- elbo


@pytest.mark.parametrize("name", LATENT)
def test_elbo_kl_is_the_kl_between_the_full_and_context_posteriors(name):
    model, batch = make(name), gp_batch()
    q = model.posterior(batch.x, batch.y)
    p = model.posterior(batch.xc, batch.yc)
    out = elbo(model, batch)
    exact = kl_divergence(q, p)  # [B]
    assert (out.kl * (NC + NT)).item() == pytest.approx(exact.mean().item(), rel=1e-12)
    assert exact.mean() > 0.1  # the two posteriors really differ


@pytest.mark.parametrize("name", LATENT)
def test_elbo_kl_matches_a_monte_carlo_estimate(name):
    model, batch = make(name), gp_batch(batch_size=4)
    with torch.no_grad():
        q = model.posterior(batch.x, batch.y)
        p = model.posterior(batch.xc, batch.yc)
        kl_per_point = elbo(model, batch).kl
        torch.manual_seed(0)
        z = q.sample((100_000,))
        log_ratio = q.log_prob(z) - p.log_prob(z)  # [S, B]
    estimate = log_ratio.mean()  # over samples and tasks
    se = log_ratio.mean(1).std() / math.sqrt(z.shape[0])
    assert abs(kl_per_point.item() * (NC + NT) - estimate.item()) < 5 * se.item()


@pytest.mark.parametrize("name", LATENT)
def test_elbo_with_fixed_prior_uses_the_standard_normal_kl(name):
    model, batch = make(name), gp_batch()
    q = model.posterior(batch.x, batch.y)
    mu, s = q.mean, q.stddev
    closed_form = 0.5 * (mu**2 + s**2 - 1 - 2 * s.log()).sum(-1)  # [B]
    out = elbo(model, batch, prior="fixed")
    assert (out.kl * (NC + NT)).item() == pytest.approx(closed_form.mean().item(), rel=1e-12)


@pytest.mark.parametrize("name", LATENT)
def test_elbo_with_both_priors_adds_the_conditional_and_the_fixed_kl(name):
    model, batch = make(name), gp_batch()
    parts = [elbo(model, batch, prior=prior).kl for prior in ("conditional", "fixed")]
    assert elbo(model, batch, prior="both").kl.item() == pytest.approx(sum(parts).item(), rel=1e-12)


@pytest.mark.parametrize("name", LATENT)
def test_elbo_log_lik_is_the_conditional_log_likelihood_of_a_posterior_sample(name):
    model, batch = make(name), gp_batch()
    torch.manual_seed(3)
    out = elbo(model, batch, num_samples=1)
    torch.manual_seed(3)
    z = model.posterior(batch.x, batch.y).rsample((1,))
    expected = conditional_log_lik_by_hand(model, batch, z, batch.x, batch.y)
    assert out.log_lik.item() == pytest.approx(expected.item(), rel=1e-12)


@pytest.mark.parametrize("name", LATENT)
def test_elbo_loss_is_minus_log_lik_plus_kl(name):
    model, batch = make(name), gp_batch()
    out = elbo(model, batch)
    assert out.loss.item() == pytest.approx(-(out.log_lik - out.kl).item(), rel=1e-12)


def test_elbo_beta_scales_the_kl_term():
    model, batch = make("np"), gp_batch()
    torch.manual_seed(1)
    out = elbo(model, batch, beta=2.5)
    assert out.loss.item() == pytest.approx(-(out.log_lik - 2.5 * out.kl).item(), rel=1e-12)


def test_elbo_beta_zero_removes_the_kl_term():
    model, batch = make("np"), gp_batch()
    torch.manual_seed(1)
    out = elbo(model, batch, beta=0.0)
    torch.manual_seed(1)
    with_kl = elbo(model, batch, beta=1.0)
    assert out.loss.item() == pytest.approx(-out.log_lik.item(), rel=1e-12)
    assert out.log_lik.item() == pytest.approx(with_kl.log_lik.item(), rel=1e-12)
    assert out.kl.item() > 0


def test_elbo_free_bits_floors_each_dimensions_batch_averaged_kl():
    model, batch = make("np"), gp_batch()
    q = model.posterior(batch.x, batch.y)
    p = model.posterior(batch.xc, batch.yc)
    kl_dims = kl_divergence(q.base_dist, p.base_dist).mean(0)  # [z_dim]
    floor = kl_dims.median().item()  # some dimensions below the floor, some above
    assert (kl_dims < floor).any() and (kl_dims > floor).any()
    torch.manual_seed(1)
    out = elbo(model, batch, free_bits=floor)
    floored_kl = kl_dims.clamp_min(floor).sum() / (NC + NT)
    assert out.loss.item() == pytest.approx(-(out.log_lik - floored_kl).item(), rel=1e-12)
    assert (out.kl * (NC + NT)).item() == pytest.approx(kl_dims.sum().item(), rel=1e-12)  # reported unfloored


def test_elbo_free_bits_above_every_dimension_charges_the_floor():
    model, batch = make("np"), gp_batch()
    out = elbo(model, batch, free_bits=100.0)
    assert out.loss.item() == pytest.approx(-out.log_lik.item() + 4 * 100.0 / (NC + NT), rel=1e-12)


def test_elbo_free_bits_tends_to_the_plain_elbo_as_the_floor_vanishes_on_ragged_batches():
    model, batch = make("np"), gp_batch(batch_size=2)
    mask_t = torch.ones(2, NT, dtype=torch.bool)
    mask_t[1, 2:] = False
    ragged = Batch(batch.xc, batch.yc, batch.xt, batch.yt, mask_t=mask_t)
    torch.manual_seed(0)
    plain = elbo(model, ragged, free_bits=0.0)
    torch.manual_seed(0)
    tiny_floor = elbo(model, ragged, free_bits=1e-12)
    assert tiny_floor.loss.item() == pytest.approx(plain.loss.item(), rel=1e-9)


def test_elbo_without_context_scores_only_the_targets():
    model, batch = make("np"), gp_batch()
    torch.manual_seed(2)
    out = elbo(model, batch, include_context=False)
    torch.manual_seed(2)
    q = model.posterior(batch.x, batch.y)
    z = q.rsample((1,))
    expected = conditional_log_lik_by_hand(model, batch, z, batch.xt, batch.yt)
    assert out.log_lik.item() == pytest.approx(expected.item(), rel=1e-12)
    kl = kl_divergence(q, model.posterior(batch.xc, batch.yc)).mean()
    assert (out.kl * NT).item() == pytest.approx(kl.item(), rel=1e-12)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"prior": "flat"}, r"prior must be one of \['conditional', 'fixed', 'both'\], got 'flat'"),
        ({"beta": -1.0}, r"beta and free_bits must be >= 0"),
        ({"free_bits": -0.5}, r"beta and free_bits must be >= 0"),
    ],
)
def test_elbo_rejects_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        elbo(make("np"), gp_batch(), **kwargs)


# --------------------------------------------------------------------------- iwae / ml


@pytest.mark.parametrize("name", LATENT)
def test_iwae_with_one_context_sample_is_the_conditional_log_likelihood(name):
    model, batch = make(name), gp_batch()
    torch.manual_seed(4)
    out = iwae(model, batch, num_samples=1, proposal="context")
    torch.manual_seed(4)
    z = model.posterior(batch.xc, batch.yc).rsample((1,))
    expected = conditional_log_lik_by_hand(model, batch, z, batch.x, batch.y)
    assert out.log_lik.item() == pytest.approx(expected.item(), rel=1e-12)
    assert out.loss.item() == pytest.approx(-expected.item(), rel=1e-12)


def test_ml_is_iwae_with_the_context_proposal():
    model, batch = make("np"), gp_batch()
    torch.manual_seed(5)
    a = ml(model, batch, num_samples=6)
    torch.manual_seed(5)
    b = iwae(model, batch, num_samples=6, proposal="context")
    assert a.loss.item() == b.loss.item()


def test_iwae_with_posterior_proposal_is_the_importance_weighted_bound():
    model, batch = make("np"), gp_batch()
    torch.manual_seed(6)
    out = iwae(model, batch, num_samples=5)
    torch.manual_seed(6)
    q = model.posterior(batch.x, batch.y)
    p = model.posterior(batch.xc, batch.yc)
    z = q.rsample((5,))
    pred = model(batch.xc, batch.yc, batch.x, z=z)
    log_w = normal_log_prob_by_hand(batch.y, pred.mean, pred.stddev).sum(-1) + p.log_prob(z) - q.log_prob(z)
    expected = ((torch.logsumexp(log_w, 0) - math.log(5)) / (NC + NT)).mean()
    assert out.log_lik.item() == pytest.approx(expected.item(), rel=1e-12)


@pytest.mark.parametrize("proposal", ["posterior", "context"])
def test_iwae_bound_grows_with_the_number_of_samples(proposal):
    model = make("np")
    batch = gp_batch(batch_size=64)
    means = {}
    for s in (1, 64):
        values = []
        for seed in range(5):
            torch.manual_seed(seed)
            with torch.no_grad():
                values.append(iwae(model, batch, num_samples=s, proposal=proposal).log_lik)
        means[s] = torch.stack(values).mean().item()
    assert means[64] >= means[1]


def test_iwae_rejects_an_unknown_proposal():
    with pytest.raises(ValueError, match=r"proposal must be 'posterior' or 'context', got 'prior'"):
        iwae(make("np"), gp_batch(), proposal="prior")


# --------------------------------------------------------------------------- model/objective checks


@pytest.mark.parametrize("name", LATENT)
def test_nll_on_a_latent_model_raises_type_error(name):
    with pytest.raises(TypeError, match=r"nll is for deterministic models"):
        nll(make(name), gp_batch())


@pytest.mark.parametrize("objective", [elbo, iwae, ml])
def test_latent_objectives_on_a_cnp_raise_type_error(objective):
    with pytest.raises(TypeError, match=r"needs a latent model; CNP has no z"):
        objective(make("cnp"), gp_batch())


@pytest.mark.parametrize("name, objective", [("cnp", nll), ("np", elbo), ("np", iwae), ("np", ml)])
def test_objectives_need_target_outputs(name, objective):
    batch = gp_batch()
    no_targets = Batch(batch.xc, batch.yc, batch.xt)
    with pytest.raises(ValueError, match=r"batch.yt is None"):
        objective(make(name), no_targets)


def test_get_objective_auto_picks_nll_for_a_cnp():
    assert get_objective("auto", make("cnp")).func is nll


@pytest.mark.parametrize("name", LATENT)
def test_get_objective_auto_picks_elbo_for_latent_models(name):
    assert get_objective("auto", make(name)).func is elbo


def test_get_objective_auto_needs_the_model():
    with pytest.raises(ValueError, match=r"'auto' needs the model"):
        get_objective("auto")


def test_get_objective_binds_options():
    model, batch = make("np"), gp_batch()
    objective = get_objective("elbo", model, beta=0.0, num_samples=2)
    torch.manual_seed(0)
    out = objective(model, batch)
    torch.manual_seed(0)
    direct = elbo(model, batch, beta=0.0, num_samples=2)
    assert out.loss.item() == direct.loss.item()


def test_get_objective_rejects_an_unknown_name():
    with pytest.raises(
        ValueError,
        match=r"unknown objective 'vae'; expected one of "
        r"\['elbo', 'iwae', 'ml', 'nll', 'statistician_elbo', 'vae_elbo'\]",
    ):
        get_objective("vae")


def test_get_objective_rejects_an_unknown_option_naming_it():
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['temperature'\] for objective 'elbo'"):
        get_objective("elbo", temperature=1.0)


def test_get_objective_rejects_a_mismatched_model():
    with pytest.raises(TypeError, match=r"nll is for deterministic models"):
        get_objective("nll", make("np"))
    with pytest.raises(TypeError, match=r"elbo needs a latent model"):
        get_objective("elbo", make("cnp"))


# --------------------------------------------------------------------------- training


def train_losses(name: str, objective, steps: int = 300) -> torch.Tensor:
    """Per-step losses of plain Adam (lr 1e-3) on batches of 16 sine tasks."""
    torch.manual_seed(0)
    latent = {"z_dim": 32} if MODELS[name].is_latent else {}
    model = build_model(name, hidden_dim=32, r_dim=32, encoder_layers=3, decoder_layers=3, **latent)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    sampler, g = SineSampler(), torch.Generator().manual_seed(0)
    losses = []
    for _ in range(steps):
        loss = objective(model, sampler.sample(16, g)).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    return torch.tensor(losses)


def test_training_a_cnp_with_nll_on_sines_lowers_the_loss():
    losses = train_losses("cnp", nll)
    assert losses[-50:].mean() < losses[:50].mean() - 0.3, (losses[:50].mean(), losses[-50:].mean())


def test_training_an_np_with_elbo_on_sines_lowers_the_loss():
    losses = train_losses("np", elbo)
    assert losses[-50:].mean() < losses[:50].mean() - 0.3, (losses[:50].mean(), losses[-50:].mean())


def test_elbo_free_bits_floor_is_per_task_on_ragged_batches():
    """With a floor above every dimension, the KL term is free_bits * z_dim / n_b averaged over tasks."""
    model, batch = make("np"), gp_batch(batch_size=2)
    mask_t = torch.ones(2, NT, dtype=torch.bool)
    mask_t[1, 2:] = False
    out = elbo(model, Batch(batch.xc, batch.yc, batch.xt, batch.yt, mask_t=mask_t), free_bits=100.0)
    n = torch.tensor([NC + NT, NC + 2], dtype=torch.float64)
    assert out.loss.item() == pytest.approx(-out.log_lik.item() + 4 * 100.0 * n.reciprocal().mean().item(), rel=1e-12)


@pytest.mark.parametrize("objective", ["elbo", "iwae", "ml"])
def test_objectives_reject_zero_samples(objective):
    model, batch = make("np"), gp_batch()
    with pytest.raises(ValueError, match="num_samples must be a positive integer"):
        get_objective(objective, model, num_samples=0)(model, batch)


# --------------------------------------------------------------------------- any posterior


class FlowNP(MODELS["np"]):
    """An NP whose posterior is its Gaussian followed by a planar flow (Pyro), for the KL tests."""

    name = "np-planar-test"

    def __init__(self, **options) -> None:
        from pyro.distributions.transforms import Planar

        super().__init__(**options)
        self.flow = Planar(self.config.z_dim)
        torch.nn.init.normal_(self.flow.u, std=1.0)
        torch.nn.init.normal_(self.flow.w, std=1.0)

    def posterior(self, xc, yc, mask=None):
        return TransformedDistribution(super().posterior(xc, yc, mask), [self.flow])


def test_elbo_kl_of_a_flow_posterior_matches_a_monte_carlo_reference():
    """The KL of a flow-wrapped posterior to N(0, I) is estimated from the ELBO's samples, not taken
    from the pre-flow Normal (which would be wrong) nor broadcast to [B, B]."""
    torch.manual_seed(0)
    model = FlowNP(**{k: v for k, v in SMALL.items() if k not in ("attention_layers", "num_heads")})
    model = model.double()
    batch = gp_batch(batch_size=4)
    with torch.no_grad():
        torch.manual_seed(1)
        out = elbo(model, batch, num_samples=4000, prior="fixed")
        q = model.posterior(batch.x, batch.y)
        z = q.sample((200_000,))
        p = Independent(Normal(torch.zeros_like(z[0]), torch.ones_like(z[0])), 1)
        per_task = (q.log_prob(z) - p.log_prob(z)).mean(0)  # [B]
        reference = (per_task / (NC + NT)).mean()
        pre_flow = kl_divergence(q.base_dist, p).mean() / (NC + NT)
    assert out.kl.shape == ()
    assert out.kl.item() == pytest.approx(reference.item(), rel=0.05)
    assert abs(pre_flow.item() - reference.item()) > 0.2 * reference.item()  # the old answer differs


def test_kl_per_dim_is_analytic_per_dimension_for_factorised_gaussians():
    q = Independent(Normal(torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 2.0]])), 1)
    p = Independent(Normal(torch.zeros(1, 2), torch.ones(1, 2)), 1)
    expected = torch.tensor([[0.0, 0.5 * (4 + 1 - 1) - math.log(2)]])
    torch.testing.assert_close(kl_per_dim(q, p, torch.zeros(3, 1, 2)), expected)


# --------------------------------------------------------------------------- step objectives


def test_kl_annealing_weights_the_kl_linearly_in_the_step():
    model, batch = make("np"), gp_batch()
    annealed = KLAnnealing(warmup_steps=10, num_samples=2)
    for step, beta in ((0, 0.0), (5, 0.5), (10, 1.0), (50, 1.0)):
        torch.manual_seed(3)
        got = annealed(model, batch, step)
        torch.manual_seed(3)
        want = elbo(model, batch, num_samples=2, beta=beta)
        assert got.loss.item() == pytest.approx(want.loss.item(), rel=1e-12), step


def test_named_elbo_with_warmup_steps_is_kl_annealing():
    model, batch = make("np"), gp_batch()
    named = as_step_objective("elbo", model, warmup_steps=10, num_samples=2, prior="both")
    torch.manual_seed(3)
    got = named(model, batch, 5)
    torch.manual_seed(3)
    assert got.loss.item() == pytest.approx(elbo(model, batch, num_samples=2, prior="both", beta=0.5).loss.item())
    with pytest.raises(ValueError, match="applies to the elbo objective, not 'iwae'"):
        as_step_objective("iwae", model, warmup_steps=10)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['samples'\] for objective 'elbo'"):
        as_step_objective("elbo", model, warmup_steps=10, samples=2)


def test_as_step_objective_passes_the_step_only_to_callables_that_take_it():
    model, batch = make("cnp"), gp_batch()
    seen = []
    with_step = as_step_objective(lambda m, b, step: seen.append(step) or nll(m, b), model)
    without = as_step_objective(lambda m, b: nll(m, b).loss, model)
    assert with_step(model, batch, 7).loss.item() == pytest.approx(nll(model, batch).loss.item())
    assert seen == [7]
    assert without(model, batch, 7).log_lik is None  # a bare tensor becomes a LossOutput
    with pytest.raises(TypeError, match="LossOutput or a scalar tensor"):
        as_step_objective(lambda m, b: 1.0, model)(model, batch, 0)
    with pytest.raises(ValueError, match="objective_options apply to named objectives"):
        as_step_objective(lambda m, b: 0, model, num_samples=3)
