"""Specification of the Neural Process family (npkit.models): shapes, invariances, empty and
masked contexts, output and latent standard deviations, initialisation and input checks."""

import math

import pytest
import torch
from conftest import FAMILIES, MODEL_WIDE, build_variant
from torch import nn
from torch.distributions import Normal

from npkit.models import MODELS, ModelConfig, build_model
from npkit.nn import init_weights
from npkit.predictive import marginal

ALL = MODEL_WIDE  # every family, and TNP-D with a mixture head
GAUSSIAN = FAMILIES  # the tests of the Gaussian head's std parameterisation
LATENT = ["lnp", "np", "anp", "deep_prior"]
SMALL = {
    "hidden_dim": 16,
    "r_dim": 16,
    "z_dim": 8,
    "encoder_layers": 2,
    "decoder_layers": 2,
    "attention_layers": 1,
    "num_heads": 4,
}


def make(name: str, double: bool = False, **options):
    """A small model with the options (SMALL, then ``options``) that its config class has."""
    torch.manual_seed(0)
    model = build_variant(name, **{**SMALL, **options})
    return model.double() if double else model


def data(b=3, nc=7, nt=5, dx=1, dy=1, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    xc = torch.randn(b, nc, dx, generator=g, dtype=dtype)
    yc = torch.randn(b, nc, dy, generator=g, dtype=dtype)
    xt = torch.randn(b, nt, dx, generator=g, dtype=dtype)
    yt = torch.randn(b, nt, dy, generator=g, dtype=dtype)
    return xc, yc, xt, yt


def fixed_z(model, b: int, seed: int = 1, dtype=torch.float64):
    """One explicit z per task, [1, b, z_dim], so latent models become deterministic."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, b, model.config.z_dim, generator=g, dtype=dtype)


def predict(model, xc, yc, xt, z=None, mask_c=None):
    """Predictive (mean, stddev) with the latent z fixed to ``z`` for latent models."""
    if model.is_latent:
        pred = model(xc, yc, xt, z=z, mask_c=mask_c)
        return pred.mean[0], pred.stddev[0]
    pred = model(xc, yc, xt, mask_c=mask_c)
    return pred.mean, pred.stddev


def close(a, b, atol=1e-10):
    return torch.allclose(a, b, rtol=0.0, atol=atol)


# --------------------------------------------------------------------------- building


def test_registry_holds_the_neural_processes_the_statistician_and_the_vae():
    assert sorted(MODELS) == ["anp", "canp", "cnp", "convcnp", "deep_prior", "lnp", "np", "statistician", "tnpd", "vae"]
    assert [n for n in FAMILIES if MODELS[n].is_latent] == LATENT


def test_build_model_with_unknown_name_lists_the_choices():
    with pytest.raises(
        ValueError,
        match=r"unknown model 'transformer'; expected one of "
        r"\['anp', 'canp', 'cnp', 'convcnp', 'deep_prior', 'lnp', 'np', 'statistician', 'tnpd', 'vae'\]",
    ):
        build_model("transformer")


def test_unknown_model_option_is_rejected_naming_it():
    with pytest.raises(ValueError, match=r"unknown model option\(s\) \['width'\]"):
        build_model("cnp", width=3)


def test_config_and_options_together_are_rejected():
    with pytest.raises(ValueError, match="either a ModelConfig or keyword options"):
        MODELS["cnp"](ModelConfig(), hidden_dim=8)


@pytest.mark.parametrize(
    "option, value",
    [
        ("hidden_dim", 0),
        ("z_dim", -1),
        ("min_sigma", 1.0),
        ("latent_min_sigma", -0.1),
        ("fixed_sigma", 0.0),
        ("latent_sigma", "exp"),
        ("latent_head_layers", 0),
        ("decoder_activation", "swish"),
    ],
)
def test_invalid_config_value_is_rejected_naming_it(option, value):
    with pytest.raises(ValueError, match=rf"^{option} must"):
        build_model("np", **{option: value})


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("dx, dy", [(1, 1), (2, 3)])
def test_cnp_predicts_batch_targets_ydim(dx, dy):
    model = make("cnp", x_dim=dx, y_dim=dy)
    xc, yc, xt, yt = data(b=3, nc=7, nt=5, dx=dx, dy=dy, dtype=torch.float32)
    pred = model(xc, yc, xt)
    assert pred.mean.shape == (3, 5, dy)
    assert pred.stddev.shape == (3, 5, dy)
    assert pred.log_prob(yt).shape == (3, 5)


@pytest.mark.parametrize("dx, dy", [(1, 1), (2, 3)])
@pytest.mark.parametrize("name", LATENT)
def test_latent_models_predict_samples_batch_targets_ydim(name, dx, dy):
    model = make(name, x_dim=dx, y_dim=dy)
    xc, yc, xt, yt = data(b=3, nc=7, nt=5, dx=dx, dy=dy, dtype=torch.float32)
    pred = model(xc, yc, xt, num_samples=4)
    assert pred.mean.shape == (4, 3, 5, dy)
    assert pred.stddev.shape == (4, 3, 5, dy)
    assert pred.log_prob(yt).shape == (4, 3, 5)


@pytest.mark.parametrize("name", LATENT)
def test_latent_models_default_to_the_configured_number_of_samples(name):
    model = make(name, num_samples=3)
    xc, yc, xt, _ = data(dtype=torch.float32)
    assert model(xc, yc, xt).mean.shape == (3, 3, 5, 1)


@pytest.mark.parametrize("dx, dy", [(1, 1), (2, 3)])
@pytest.mark.parametrize("name", LATENT)
def test_posterior_has_batch_tasks_and_event_z_dim(name, dx, dy):
    model = make(name, x_dim=dx, y_dim=dy)
    xc, yc, _, _ = data(dx=dx, dy=dy, dtype=torch.float32)
    q = model.posterior(xc, yc)
    assert q.batch_shape == (3,) and q.event_shape == (8,)


def test_cnp_has_no_posterior():
    xc, yc, _, _ = data(dtype=torch.float32)
    with pytest.raises(TypeError, match="CNP has no latent variable"):
        make("cnp").posterior(xc, yc)


@pytest.mark.parametrize("name", GAUSSIAN)
def test_log_prob_sums_independent_normals_over_y_dim(name):
    model = make(name, double=True, y_dim=3)
    xc, yc, xt, yt = data(dy=3)
    pred = model(xc, yc, xt, num_samples=2) if model.is_latent else model(xc, yc, xt)
    expected = Normal(pred.mean, pred.stddev).log_prob(yt).sum(-1)
    assert close(pred.log_prob(yt), expected, atol=1e-12)


@pytest.mark.parametrize("name", LATENT)
def test_latent_samples_give_different_predictions(name):
    model = make(name)
    xc, yc, xt, _ = data(dtype=torch.float32)
    mean = model(xc, yc, xt, num_samples=2).mean
    assert (mean[0] - mean[1]).abs().max() > 1e-4


# --------------------------------------------------------------------------- invariances


@pytest.mark.parametrize("name", ALL)
def test_permuting_the_context_leaves_the_prediction_unchanged(name):
    model = make(name, double=True)
    xc, yc, xt, _ = data(nc=9)
    z = fixed_z(model, 3) if model.is_latent else None
    perm = torch.randperm(9, generator=torch.Generator().manual_seed(3))
    mean, std = predict(model, xc, yc, xt, z)
    mean_p, std_p = predict(model, xc[:, perm], yc[:, perm], xt, z)
    assert close(mean, mean_p) and close(std, std_p)


@pytest.mark.parametrize("name", LATENT)
def test_permuting_the_context_leaves_the_latent_posterior_unchanged(name):
    model = make(name, double=True)
    xc, yc, _, _ = data(nc=9)
    perm = torch.randperm(9, generator=torch.Generator().manual_seed(3))
    q, q_p = model.posterior(xc, yc), model.posterior(xc[:, perm], yc[:, perm])
    assert close(q.mean, q_p.mean) and close(q.stddev, q_p.stddev)


@pytest.mark.parametrize("name", LATENT)
def test_permuting_the_context_leaves_sampled_predictions_unchanged_for_the_same_seed(name):
    model = make(name, double=True)
    xc, yc, xt, _ = data(nc=9)
    perm = torch.randperm(9, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(5)
    a = model(xc, yc, xt, num_samples=3)
    torch.manual_seed(5)
    b = model(xc[:, perm], yc[:, perm], xt, num_samples=3)
    assert close(a.mean, b.mean) and close(a.stddev, b.stddev)


@pytest.mark.parametrize("name", ALL)
def test_permuting_the_targets_permutes_the_prediction(name):
    model = make(name, double=True)
    xc, yc, xt, _ = data(nt=8)
    z = fixed_z(model, 3) if model.is_latent else None
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(4))
    mean, std = predict(model, xc, yc, xt, z)
    mean_p, std_p = predict(model, xc, yc, xt[:, perm], z)
    assert close(mean[:, perm], mean_p) and close(std[:, perm], std_p)


@pytest.mark.parametrize("name", ALL)
def test_each_target_is_predicted_independently_of_the_other_targets(name):
    model = make(name, double=True)
    xc, yc, xt, _ = data(nt=8)
    z = fixed_z(model, 3) if model.is_latent else None
    mean, std = predict(model, xc, yc, xt, z)
    mean_3, std_3 = predict(model, xc, yc, xt[:, 2:5], z)
    assert close(mean[:, 2:5], mean_3) and close(std[:, 2:5], std_3)


@pytest.mark.parametrize("name", ALL)
def test_the_context_changes_the_prediction(name):
    model = make(name, double=True)
    xc, yc, xt, _ = data()
    z = fixed_z(model, 3) if model.is_latent else None
    mean, _ = predict(model, xc, yc, xt, z)
    mean_other, _ = predict(model, xc, yc + 1.0, xt, z)
    if model.deterministic is None:  # latent CNP, Deep Prior: the context acts only through z, fixed here
        assert close(mean, mean_other)
    else:
        assert (mean - mean_other).abs().max() > 1e-4


# --------------------------------------------------------------------------- empty context


@pytest.mark.parametrize("name", ALL)
def test_empty_context_predicts_the_same_finite_prior_for_every_task(name):
    model = make(name, double=True)
    _, _, xt, _ = data(b=4, nt=6)
    xt = xt[:1].expand(4, -1, -1)  # the same inputs for every task
    xc, yc = torch.zeros(4, 0, 1, dtype=torch.float64), torch.zeros(4, 0, 1, dtype=torch.float64)
    z = fixed_z(model, 1).expand(1, 4, -1) if model.is_latent else None
    mean, std = predict(model, xc, yc, xt, z)
    assert torch.isfinite(mean).all() and torch.isfinite(std).all()
    assert close(mean, mean[:1].expand_as(mean)) and close(std, std[:1].expand_as(std))


@pytest.mark.parametrize("name", LATENT)
def test_empty_context_gives_the_same_finite_latent_prior_for_every_task(name):
    model = make(name, double=True)
    xc, yc = torch.zeros(4, 0, 1, dtype=torch.float64), torch.zeros(4, 0, 1, dtype=torch.float64)
    q = model.posterior(xc, yc)
    assert torch.isfinite(q.mean).all() and torch.isfinite(q.stddev).all()
    assert close(q.mean, q.mean[:1].expand_as(q.mean)) and close(q.stddev, q.stddev[:1].expand_as(q.stddev))


@pytest.mark.parametrize("name", LATENT)
def test_empty_context_can_be_sampled_from(name):
    model = make(name)
    xc, yc = torch.zeros(2, 0, 1), torch.zeros(2, 0, 1)
    pred = model(xc, yc, torch.linspace(-2, 2, 10).view(1, 10, 1).expand(2, -1, -1), num_samples=3)
    assert pred.mean.shape == (3, 2, 10, 1)
    assert torch.isfinite(pred.mean).all() and torch.isfinite(pred.stddev).all()


# --------------------------------------------------------------------------- masks

MASK = torch.tensor(
    [
        [True, True, True, True, True, True],
        [True, False, True, False, False, True],
        [False, False, True, False, False, False],
    ]
)


def masked_data():
    """Context of 6 points whose masked-out entries hold large garbage values."""
    xc, yc, xt, _ = data(b=3, nc=6, nt=5)
    xc = torch.where(MASK[..., None], xc, torch.full_like(xc, 50.0))
    yc = torch.where(MASK[..., None], yc, torch.full_like(yc, -70.0))
    return xc, yc, xt


@pytest.mark.parametrize("name", ALL)
def test_masked_context_points_are_ignored_like_removed_ones(name):
    model = make(name, double=True)
    xc, yc, xt = masked_data()
    z = fixed_z(model, 3) if model.is_latent else None
    mean, std = predict(model, xc, yc, xt, z, mask_c=MASK)
    for b in range(3):
        keep = MASK[b]
        zb = z[:, b : b + 1] if z is not None else None
        mean_b, std_b = predict(model, xc[b : b + 1, keep], yc[b : b + 1, keep], xt[b : b + 1], zb)
        assert close(mean[b : b + 1], mean_b) and close(std[b : b + 1], std_b), f"task {b}"


@pytest.mark.parametrize("name", LATENT)
def test_masked_context_points_are_ignored_by_the_posterior(name):
    model = make(name, double=True)
    xc, yc, _ = masked_data()
    q = model.posterior(xc, yc, MASK)
    for b in range(3):
        keep = MASK[b]
        q_b = model.posterior(xc[b : b + 1, keep], yc[b : b + 1, keep])
        assert close(q.mean[b : b + 1], q_b.mean) and close(q.stddev[b : b + 1], q_b.stddev), f"task {b}"


@pytest.mark.parametrize("name", ALL)
def test_fully_masked_context_predicts_like_an_empty_context(name):
    model = make(name, double=True)
    xc, yc, xt = masked_data()
    mask = MASK.clone()
    mask[1] = False
    z = fixed_z(model, 3) if model.is_latent else None
    mean, std = predict(model, xc, yc, xt, z, mask_c=mask)
    empty = torch.zeros(1, 0, 1, dtype=torch.float64)
    mean_e, std_e = predict(model, empty, empty, xt[1:2], None if z is None else z[:, 1:2])
    assert torch.isfinite(mean).all() and torch.isfinite(std).all()
    assert close(mean[1:2], mean_e) and close(std[1:2], std_e)


@pytest.mark.parametrize("name", ALL)
def test_all_true_mask_is_the_same_as_no_mask(name):
    model = make(name, double=True)
    xc, yc, xt, _ = data()
    z = fixed_z(model, 3) if model.is_latent else None
    mean, std = predict(model, xc, yc, xt, z)
    mean_m, std_m = predict(model, xc, yc, xt, z, mask_c=torch.ones(3, 7, dtype=torch.bool))
    assert close(mean, mean_m) and close(std, std_m)


# --------------------------------------------------------------------------- sigmas


def last_linear(module: nn.Module) -> nn.Linear:
    return [m for m in module.modules() if isinstance(m, nn.Linear)][-1]


def set_raw_sigma(layer: nn.Linear, out_dim: int, value: float) -> None:
    """Make the second half of ``layer``'s outputs (the raw sigma) the constant ``value``."""
    with torch.no_grad():
        layer.weight[out_dim:] = 0.0
        layer.bias[out_dim:] = value


@pytest.mark.parametrize("name", ALL)
def test_predictive_stddev_is_never_below_min_sigma(name):
    model = make(name, min_sigma=0.25, init="normal", init_std=1.0)
    xc, yc, xt, _ = data(b=8, nc=10, nt=50, dtype=torch.float32)
    pred = model(xc, yc, xt * 5, num_samples=4) if model.is_latent else model(xc, yc, xt * 5)
    assert pred.stddev.min() >= 0.25


@pytest.mark.parametrize("name", GAUSSIAN)
def test_predictive_stddev_floors_at_min_sigma(name):
    model = make(name, min_sigma=0.25)
    set_raw_sigma(last_linear(model.decoder), 1, -100.0)
    xc, yc, xt, _ = data(dtype=torch.float32)
    pred = model(xc, yc, xt)
    assert torch.allclose(pred.stddev, torch.full_like(pred.stddev, 0.25), rtol=0, atol=1e-7)


@pytest.mark.parametrize("name", GAUSSIAN)
def test_predictive_stddev_is_min_sigma_plus_scaled_softplus_of_raw(name):
    model = make(name, min_sigma=0.25)
    set_raw_sigma(last_linear(model.decoder), 1, 0.5)
    xc, yc, xt, _ = data(dtype=torch.float32)
    pred = model(xc, yc, xt)
    expected = 0.25 + 0.75 * math.log1p(math.exp(0.5))
    assert torch.allclose(pred.stddev, torch.full_like(pred.stddev, expected), rtol=1e-6, atol=0)


@pytest.mark.parametrize("name", GAUSSIAN)
def test_fixed_sigma_gives_constant_stddev(name):
    model = make(name, fixed_sigma=0.3)
    xc, yc, xt, _ = data(dtype=torch.float32)
    pred = model(xc, yc, xt, num_samples=2) if model.is_latent else model(xc, yc, xt)
    assert torch.equal(pred.stddev, torch.full_like(pred.stddev, 0.3))
    assert pred.mean.shape == pred.stddev.shape


@pytest.mark.parametrize("name", LATENT)
def test_latent_stddev_lies_between_latent_min_sigma_and_one(name):
    model = make(name, latent_min_sigma=0.25, latent_sigma="sigmoid", init="normal", init_std=1.0)
    xc, yc, _, _ = data(b=8, nc=10, dtype=torch.float32)
    std = model.posterior(xc * 5, yc * 5).stddev
    assert std.min() >= 0.25 and std.max() <= 1.0


@pytest.mark.parametrize("name", LATENT)
def test_latent_stddev_floors_at_latent_min_sigma(name):
    model = make(name, latent_min_sigma=0.25)
    set_raw_sigma(last_linear(model.latent), model.config.z_dim, -100.0)
    xc, yc, _, _ = data(dtype=torch.float32)
    std = model.posterior(xc, yc).stddev
    assert torch.allclose(std, torch.full_like(std, 0.25), rtol=0, atol=1e-7)


@pytest.mark.parametrize("name", LATENT)
@pytest.mark.parametrize("raw, floor", [(-3.0, 0.0), (2.0, 0.0), (0.5, 0.2)])
def test_softplus_latent_stddev_is_the_floor_plus_softplus_of_raw(name, raw, floor):
    model = make(name, latent_sigma="softplus", latent_min_sigma=floor)
    set_raw_sigma(last_linear(model.latent), model.config.z_dim, raw)
    xc, yc, _, _ = data(dtype=torch.float32)
    std = model.posterior(xc, yc).stddev
    expected = floor + math.log1p(math.exp(raw))
    assert torch.allclose(std, torch.full_like(std, expected), rtol=1e-6, atol=0)


def test_the_critique_architecture_has_its_layers_and_95_parameters():
    """The NP critique's model: encoder (x, y) 2->8->2 ReLU, linear heads for the mean and the
    softplus std of z, decoder (x, z) 3->8->1 with a sigmoid hidden activation."""
    model = build_model(
        "lnp", hidden_dim=8, r_dim=2, z_dim=2, encoder_layers=2, decoder_layers=2, latent_head_layers=1,
        latent_sigma="softplus", latent_min_sigma=0.0, decoder_activation="sigmoid", fixed_sigma=0.005,
    )  # fmt: skip
    shapes = [tuple(m.weight.shape) for m in linears(model)]
    assert shapes == [(8, 2), (2, 8), (4, 2), (8, 3), (1, 8)]
    assert [type(m).__name__ for m in model.decoder.net] == ["Linear", "Sigmoid", "Linear"]
    assert [type(m).__name__ for m in model.latent.encoder.net] == ["Linear", "ReLU", "Linear"]
    assert sum(p.numel() for p in model.parameters()) == 95


# --------------------------------------------------------------------------- initialisation


def linears(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


@pytest.mark.parametrize("name", ALL)
def test_normal_init_draws_weights_with_init_std_and_zero_biases(name):
    model = make(name, hidden_dim=32, r_dim=32, z_dim=16, init="normal", init_std=0.05)
    weights = torch.cat([m.weight.detach().flatten() for m in linears(model)])
    biases = [m.bias for m in linears(model) if m.bias is not None]
    n = weights.numel()
    # the sample std of n normals has relative standard error 1 / sqrt(2 n); allow 5 of them
    assert abs(weights.std().item() / 0.05 - 1) < 5 / math.sqrt(2 * n)
    assert abs(weights.mean().item()) < 5 * 0.05 / math.sqrt(n)
    assert biases and all(torch.all(b == 0) for b in biases)


@pytest.mark.parametrize("name", ALL)
def test_xavier_normal_init_uses_glorot_scale_and_zero_biases(name):
    model = make(name, hidden_dim=32, r_dim=32, z_dim=16, init="xavier_normal")
    standardised = torch.cat(
        [m.weight.detach().flatten() / math.sqrt(2.0 / (m.in_features + m.out_features)) for m in linears(model)]
    )
    n = standardised.numel()
    assert abs(standardised.std().item() - 1) < 5 / math.sqrt(2 * n)
    assert all(torch.all(m.bias == 0) for m in linears(model) if m.bias is not None)


def test_normal_weights_init_draws_weights_and_keeps_the_default_biases():
    torch.manual_seed(0)
    default = make("np", hidden_dim=32, r_dim=32, z_dim=16)
    torch.manual_seed(0)
    model = make("np", hidden_dim=32, r_dim=32, z_dim=16, init="normal_weights", init_std=0.05)
    # init_weights draws the normal weights after the constructor: the biases are the default's
    for a, b in zip(linears(default), linears(model)):
        assert torch.equal(a.bias, b.bias) and not torch.equal(a.weight, b.weight)
    weights = torch.cat([m.weight.detach().flatten() for m in linears(model)])
    assert abs(weights.std().item() / 0.05 - 1) < 5 / math.sqrt(2 * weights.numel())


@pytest.mark.parametrize("name", ALL)
def test_default_init_keeps_pytorch_biases(name):
    model = make(name)
    assert any(m.bias is not None and m.bias.abs().sum() > 0 for m in linears(model))


def test_unknown_init_scheme_is_rejected_naming_it():
    with pytest.raises(ValueError, match=r"unknown init scheme 'kaiming'"):
        build_model("np", init="kaiming")
    with pytest.raises(ValueError, match=r"unknown init scheme 'kaiming'"):
        init_weights(nn.Linear(2, 2), "kaiming")


# --------------------------------------------------------------------------- input checks


@pytest.mark.parametrize("name", ALL)
def test_xc_with_the_wrong_x_dim_is_rejected_naming_xc(name):
    model = make(name)
    xc, yc, xt, _ = data(dx=2, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"xc has last dimension 2, but the model has x_dim=1"):
        model(xc, yc, xt)


@pytest.mark.parametrize("name", ALL)
def test_yc_with_the_wrong_y_dim_is_rejected_naming_yc(name):
    model = make(name)
    xc, yc, xt, _ = data(dy=2, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"yc has last dimension 2, but the model has y_dim=1"):
        model(xc, yc, xt)


@pytest.mark.parametrize("name", LATENT)
def test_posterior_rejects_the_wrong_y_dim_naming_yc(name):
    model = make(name)
    xc, yc, _, _ = data(dy=3, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"yc has last dimension 3, but the model has y_dim=1"):
        model.posterior(xc, yc)


@pytest.mark.parametrize("name", ALL)
def test_xt_with_a_different_x_dim_from_xc_is_rejected(name):
    model = make(name)
    xc, yc, _, _ = data(dtype=torch.float32)
    with pytest.raises(ValueError, match=r"x_dim differs: xc has 1, xt has 2"):
        model(xc, yc, torch.zeros(3, 5, 2))


@pytest.mark.parametrize("name", ALL)
def test_model_rejects_non_finite_context(name):
    model = make(name)
    xc, yc, xt, _ = data(dtype=torch.float32)
    yc[0, 0, 0] = math.nan
    with pytest.raises(ValueError, match=r"yc contains NaN or inf"):
        model(xc, yc, xt)


@pytest.mark.parametrize("shape", [(3, 8), (1, 4, 8), (1, 3, 9), (1, 1, 3, 8)], ids=["2d", "batch", "z_dim", "4d"])
@pytest.mark.parametrize("name", LATENT)
def test_z_of_the_wrong_shape_is_rejected(name, shape):
    model = make(name)
    xc, yc, xt, _ = data(dtype=torch.float32)
    with pytest.raises(ValueError, match=r"z must have shape \[num_samples, 3, 8\]"):
        model(xc, yc, xt, z=torch.zeros(shape))


@pytest.mark.parametrize("name", LATENT)
def test_explicit_z_sets_the_number_of_samples(name):
    model = make(name)
    xc, yc, xt, _ = data(dtype=torch.float32)
    pred = model(xc, yc, xt, z=torch.zeros(6, 3, 8))
    assert pred.mean.shape == (6, 3, 5, 1)


# --------------------------------------------------------------------------- mixture


@pytest.mark.parametrize("name", LATENT)
def test_marginal_log_prob_is_logmeanexp_of_sample_log_probs(name):
    model = make(name, double=True, y_dim=2)
    xc, yc, xt, yt = data(dy=2)
    torch.manual_seed(2)
    pred = model(xc, yc, xt, num_samples=7)
    mixture = marginal(model, pred)
    expected = torch.logsumexp(pred.log_prob(yt), dim=0) - math.log(7)
    assert mixture.batch_shape == (3, 5) and mixture.event_shape == (2,)
    assert close(mixture.log_prob(yt), expected, atol=1e-12)


@pytest.mark.parametrize("name", LATENT)
def test_marginal_mean_is_the_mean_of_sample_means(name):
    model = make(name, double=True)
    xc, yc, xt, _ = data()
    torch.manual_seed(2)
    pred = model(xc, yc, xt, num_samples=7)
    assert close(marginal(model, pred).mean, pred.mean.mean(0), atol=1e-12)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_num_samples_is_reported(bad):
    model = build_model("np", hidden_dim=8, r_dim=8, z_dim=4)
    x = torch.zeros(2, 3, 1)
    with pytest.raises(ValueError, match="num_samples must be a positive integer"):
        model(x, x, x, num_samples=bad)


# --------------------------------------------------------------------------- seams


@pytest.mark.parametrize("name", ["lnp", "np", "anp"])
def test_r_dim_sizes_the_latent_path(name):
    count = lambda r: sum(p.numel() for p in build_model(name, hidden_dim=16, r_dim=r, z_dim=4).latent.parameters())
    assert count(8) != count(16)
    assert build_model(name, hidden_dim=16, r_dim=8, z_dim=4).latent.encoder.net[-1].out_features == 8


def test_each_family_accepts_only_its_own_options():
    with pytest.raises(ValueError, match=r"unknown model option\(s\) \['z_dim'\]"):
        build_model("cnp", z_dim=4)
    with pytest.raises(ValueError, match=r"unknown model option\(s\) \['num_heads'\]"):
        build_model("np", num_heads=4)
    assert MODELS["anp"].config_class(num_heads=4, r_dim=16).num_heads == 4
    with pytest.raises(ValueError, match="divisible by num_heads"):
        build_model("anp", r_dim=10, num_heads=4)


@pytest.mark.parametrize("name", ["anp", "statistician", "vae"])
def test_model_takes_only_its_own_config_class_or_options(name):
    family = MODELS[name]
    with pytest.raises(TypeError, match=f"{family.__name__} takes a {family.config_class.__name__}"):
        family(ModelConfig())
    with pytest.raises(ValueError, match="not both"):
        family(family.config_class(), hidden_dim=8)
    assert family(hidden_dim=8).config == family.config_class(hidden_dim=8)


def test_chunked_decoding_without_gradients_equals_one_pass(monkeypatch):
    """Prediction without gradients decodes targets in chunks: same numbers, bounded memory."""
    import npkit.models.chunking as chunking

    for name in ALL:
        model = make(name, double=True)
        xc, yc, xt, _ = data(nt=37)
        z = fixed_z(model, 3) if model.is_latent else None
        whole = model(xc, yc, xt, z=z)
        monkeypatch.setattr(chunking, "PREDICT_CHUNK_ELEMENTS", 16 * 5)  # 5 targets per chunk
        with torch.no_grad():
            chunked = model(xc, yc, xt, z=z)
        monkeypatch.undo()
        assert close(chunked.mean, whole.mean.detach(), atol=1e-12), name
        assert close(chunked.stddev, whole.stddev.detach(), atol=1e-12), name


# --------------------------------------------------------------------------- reference sizes


TNP_SIZES = {"hidden_dim": 128, "r_dim": 128, "encoder_layers": 4, "decoder_layers": 3, "post_layers": 2}


@pytest.mark.parametrize(("name", "options", "params"), [("cnp", {"global_paths": 1}, 215_682), ("np", {}, 232_194)])
def test_tnp_reference_sizes_have_the_reference_parameter_counts(name, options, params):
    """tung-nd/TNP-pytorch's gp configs (dim_hid 128, enc_pre_depth 4, enc_post_depth 2, dec_depth 3):
    its CNP (two pooled encoders) has 215,682 parameters and its NP 232,194 (counted from that code)."""
    model = build_model(name, **TNP_SIZES, **options)
    assert sum(p.numel() for p in model.parameters()) == params


def test_global_paths_concatenate_pooled_representations_and_post_layers_follow_the_pooling():
    xc, yc, xt, _ = data()
    one = make("cnp", double=True)
    two = make("cnp", double=True, global_paths=1, post_layers=2)
    assert two.decoder.in_dim == one.decoder.in_dim + SMALL["r_dim"]
    encoded = two.encode(xc, yc, None)
    assert len(encoded) == 2 and all(e.shape == (3, SMALL["r_dim"]) for e in encoded)
    # each path is its own set encoder with a post-pooling MLP: r = post(mean_i h_i)
    path = two.deterministic.paths[1].encoder
    h = path.net(torch.cat([xc, yc], -1))
    assert torch.allclose(encoded[1], path.post(h.mean(1)))
    assert two(xc, yc, xt).mean.shape == (3, 5, 1)
    with pytest.raises(ValueError, match="global_paths must be an integer >= 0"):
        build_model("cnp", global_paths=-1)


def test_the_decoder_reads_broadcast_parts_as_one_linear_on_their_concatenation():
    """Per-task parts [B, 1, D] and z enter the first layer once per task; the result must equal
    the MLP on the explicit concatenation [x_t, r_1 (per point), r_2 (per task), z]."""
    from npkit.models.base import Decoder

    torch.manual_seed(0)
    decoder = Decoder(in_dim=1 + 5 + 3, z_dim=2, hidden_dim=8, out_dim=2, num_layers=3).double()
    xt, r1, r2 = torch.randn(4, 6, 1), torch.randn(4, 6, 5), torch.randn(4, 1, 3)
    z = torch.randn(7, 4, 2)
    xt, r1, r2, z = (t.double() for t in (xt, r1, r2, z))
    dense = torch.cat([xt, r1, r2.expand(-1, 6, -1)], -1)
    explicit = decoder.net(torch.cat([dense.expand(7, -1, -1, -1), z[:, :, None].expand(-1, -1, 6, -1)], -1))
    torch.testing.assert_close(decoder((xt, r1, r2), z), explicit)
    no_z = Decoder(in_dim=9, z_dim=0, hidden_dim=8, out_dim=2, num_layers=3).double()
    torch.testing.assert_close(no_z((xt, r1, r2)), no_z.net(dense))


def test_cpu_attention_of_half_precision_inputs_runs_in_float32():
    """bf16-mixed training on the CPU: q, k, v in bfloat16 are attended in float32 (torch's CPU
    bfloat16 kernel is several times slower) and the result cast back, masks included."""
    from npkit.nn.attention import _attention

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, n, 8, generator=g).bfloat16() for n in (5, 7, 7))
    mask = torch.rand(2, 7, generator=g) > 0.3
    bias = torch.zeros(2, 7).masked_fill(~mask, torch.finfo(torch.float32).min)[:, None, None, :]
    want = torch.nn.functional.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=bias)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = _attention(q, k, v, mask)
    assert got.dtype == torch.bfloat16
    assert torch.equal(got, want.bfloat16())
