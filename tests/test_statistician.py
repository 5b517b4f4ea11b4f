"""Specification of the Neural Statistician (npkit.models.statistician), its ELBO
(npkit.objectives.statistician_elbo) and the set samplers (npkit.data.sets)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor
from torch.distributions import Independent, Normal, kl_divergence

from npkit.data.sets import (
    FAMILIES,
    ClassSets,
    DistributionSets,
    PointSets,
    SetBatch,
    digit_sets,
    spatial_digits,
)
from npkit.models import MODELS, NeuralStatistician, StatisticianConfig, build_model
from npkit.models.statistician import MaskedBatchNorm
from npkit.nn import mlp
from npkit.objectives import statistician_elbo, statistician_elbo_terms
from npkit.runs import load_model, save_model
from npkit.train import fit

SMALL = dict(hidden_dim=16, c_dim=3, z_dim=4, num_stochastic_layers=2, encoder_layers=2, decoder_layers=2)


def make(double: bool = False, **options) -> NeuralStatistician:
    torch.manual_seed(0)
    model = build_model("statistician", **{**SMALL, **options})
    return model.double() if double else model


def sets(batch_size: int = 3, num_items: int = 20, seed: int = 0) -> SetBatch:
    return DistributionSets(num_items=num_items).sample(batch_size, torch.Generator().manual_seed(seed))


def seeded(fn, *args, seed: int = 7):
    """``fn(*args)`` after seeding torch, so two calls draw the same c and z."""
    torch.manual_seed(seed)
    return fn(*args)


# --------------------------------------------------------------------------- the model


def test_every_distribution_has_the_documented_shape():
    model, batch = make(), sets(batch_size=3, num_items=20)
    out = model(batch.x)
    assert (out.q_c.batch_shape, out.q_c.event_shape, out.c.shape) == ((3,), (3,), (3, 3))
    assert len(out.q_z) == len(out.p_z) == len(out.z) == 2
    for q, p, z in zip(out.q_z, out.p_z, out.z):
        assert q.batch_shape == p.batch_shape == (3, 20) and q.event_shape == p.event_shape == (4,)
        assert z.shape == (3, 20, 4)
    assert (out.p_x.batch_shape, out.p_x.event_shape) == ((3, 20), (1,))
    assert model.statistic(batch.x).batch_shape == (3,)


def test_generation_gives_means_and_samples_per_dataset():
    model = make()
    given = sets(batch_size=2, num_items=30).x
    generated, unconditional = model.generate(given, num_items=5), model.sample_prior(4, num_items=6)
    assert generated.mean.shape == generated.sample.shape == (2, 5, 1)
    assert unconditional.mean.shape == unconditional.sample.shape == (4, 6, 1)
    assert torch.isfinite(generated.sample).all() and not torch.equal(generated.mean, generated.sample)


def test_generation_is_conditioned_on_the_posterior_mean_of_the_context():
    model = make()
    given = sets(batch_size=2, num_items=30).x
    context = model.statistic(given).mean
    torch.manual_seed(3)
    expected = model.generate_from(context, 5)
    torch.manual_seed(3)
    assert torch.equal(model.generate(given, 5).mean, expected.mean)


@pytest.mark.parametrize("normalization", ["none", "batch"])
@pytest.mark.parametrize("pooling", ["mean", "sum", "max"])
def test_statistic_is_invariant_to_the_order_of_the_items(pooling, normalization):
    model, x = make(double=True, pooling=pooling, normalization=normalization), sets(num_items=25).x.double()
    shuffled = x[:, torch.randperm(25, generator=torch.Generator().manual_seed(1))]
    q, q_shuffled = model.statistic(x), model.statistic(shuffled)
    assert torch.allclose(q.mean, q_shuffled.mean, rtol=0, atol=1e-12)
    assert torch.allclose(q.stddev, q_shuffled.stddev, rtol=0, atol=1e-12)


@pytest.mark.parametrize("normalization", ["none", "batch"])
@pytest.mark.parametrize("pooling", ["mean", "sum", "max"])
def test_masked_items_are_dropped_from_the_statistic(pooling, normalization):
    model, x = make(double=True, pooling=pooling, normalization=normalization), sets(num_items=12).x.double()
    mask = torch.zeros(3, 12, dtype=torch.bool)
    mask[:, :7] = True
    garbage = x.clone()
    garbage[:, 7:] = 1e3
    kept = model.statistic(x[:, :7]).mean
    assert torch.allclose(model.statistic(x, mask).mean, kept, rtol=0, atol=1e-12)
    assert torch.allclose(model.statistic(garbage, mask).mean, kept, rtol=0, atol=1e-12)


def test_built_by_name_from_a_config_or_options_and_registered():
    assert MODELS["statistician"] is NeuralStatistician
    config = StatisticianConfig(**SMALL)
    assert NeuralStatistician(config).config == make().config == config
    with pytest.raises(ValueError, match="either a StatisticianConfig or keyword options"):
        NeuralStatistician(config, c_dim=2)


@pytest.mark.parametrize("normalization", ["none", "batch"])
def test_save_and_load_give_identical_outputs(tmp_path, normalization):
    model, x = make(likelihood="bernoulli", pooling="max", normalization=normalization), sets().x
    loaded = load_model(save_model(model, tmp_path / "statistician"))
    assert type(loaded) is NeuralStatistician and loaded.config == model.config
    a, b = seeded(model, x), seeded(loaded, x)
    assert torch.equal(a.q_c.mean, b.q_c.mean) and torch.equal(a.p_x.mean, b.p_x.mean)


@pytest.mark.parametrize(
    "option, value",
    [
        ("pooling", "median"),
        ("likelihood", "poisson"),
        ("activation", "swish"),
        ("c_dim", 0),
        ("num_stochastic_layers", 0),
        ("min_sigma", 1.5),
        ("latent_min_sigma", -0.1),
        ("normalization", "layer"),
    ],
)
def test_invalid_config_value_is_rejected_naming_it(option, value):
    with pytest.raises(ValueError, match=rf"^{option} must"):
        StatisticianConfig(**{option: value})


# --------------------------------------------------------------------------- the ELBO


def test_elbo_terms_add_up_to_the_loss():
    model, batch = make(), sets()
    with torch.no_grad():
        terms = seeded(statistician_elbo_terms, model, batch)
        out = seeded(statistician_elbo, model, batch)
    assert terms["kl_z"].shape == (2,)
    elbo = terms["log_lik"] - terms["kl_c"] - terms["kl_z"].sum()
    assert abs(float(-out.loss - elbo)) < 1e-6
    assert abs(float(out.kl - terms["kl_c"] - terms["kl_z"].sum())) < 1e-6
    assert abs(float(out.log_lik - terms["log_lik"])) < 1e-6


def test_every_elbo_term_is_normalised_per_item_of_its_dataset():
    model, batch = make(), sets(batch_size=3, num_items=20)
    terms = seeded(statistician_elbo_terms, model, batch)
    out = seeded(model, batch.x)
    prior_c = Independent(Normal(torch.zeros(3, 3), torch.ones(3, 3)), 1)
    assert torch.allclose(terms["kl_c"], kl_divergence(out.q_c, prior_c).mean() / 20)
    assert torch.allclose(terms["log_lik"], out.p_x.log_prob(batch.x).sum(-1).mean() / 20)
    top = kl_divergence(out.q_z[0], out.p_z[0]).sum(-1).mean() / 20
    assert torch.allclose(terms["kl_z"][0], top) and (terms["kl_z"] > 0).all()


@pytest.mark.parametrize("normalization", ["none", "batch"])
def test_masked_items_do_not_change_the_elbo(normalization):
    model, batch = make(normalization=normalization), sets(num_items=10)
    mask = torch.ones(3, 10, dtype=torch.bool)
    mask[0, 6:] = False
    garbage = batch.x.clone()
    garbage[0, 6:] = 50.0
    masked = seeded(statistician_elbo, model, SetBatch(batch.x, mask=mask)).loss
    assert torch.equal(masked, seeded(statistician_elbo, model, SetBatch(garbage, mask=mask)).loss)
    assert not torch.equal(masked, seeded(statistician_elbo, model, batch).loss)


def test_elbo_refuses_other_models():
    with pytest.raises(TypeError, match="needs a NeuralStatistician"):
        statistician_elbo(build_model("np", hidden_dim=8, r_dim=8, z_dim=4), sets())


def test_training_raises_the_elbo_of_held_out_datasets():
    model, data = make(), DistributionSets(num_items=50)
    held_out = data.sample(32, torch.Generator().manual_seed(123))
    before = -seeded(statistician_elbo, model, held_out).loss.detach()
    fit(model, data, statistician_elbo, steps=150, batch_size=16, lr=3e-3, progress=False, accelerator="cpu")
    after = -seeded(statistician_elbo, model, held_out).loss.detach()
    assert after > before + 0.5, (before, after)


# --------------------------------------------------------------------------- batch normalisation


def batch_norms(model) -> list[MaskedBatchNorm]:
    return [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def warmed_up(model: NeuralStatistician, steps: int = 5) -> NeuralStatistician:
    """A few training-mode passes, so the running statistics are no longer their initial 0 / 1."""
    with torch.no_grad():
        for seed in range(steps):
            model(sets(batch_size=8, seed=100 + seed).x.to(next(model.parameters()).dtype))
    return model


def test_default_builds_the_plain_networks_of_before():
    """normalization="none" is the model as it was: the same modules, keys and initial weights."""
    cfg = StatisticianConfig(**SMALL)
    torch.manual_seed(0)
    hidden, z, c, act = cfg.hidden_dim, cfg.z_dim, cfg.c_dim, cfg.activation
    before = torch.nn.ModuleDict(
        {
            "instance_encoder": mlp(cfg.x_dim, hidden, hidden, cfg.encoder_layers, act),
            "post_pooling": mlp(hidden, hidden, 2 * c, cfg.encoder_layers, act),
            "priors": torch.nn.ModuleList(mlp(a + c, hidden, 2 * z, cfg.decoder_layers, act) for a in (0, z)),
            "inference": torch.nn.ModuleList(
                mlp(hidden + a + c, hidden, 2 * z, cfg.decoder_layers, act) for a in (0, z)
            ),
            "observation": mlp(2 * z + c, hidden, 2, cfg.decoder_layers, act),
        }
    ).state_dict()
    now = make().state_dict()
    assert list(now) == list(before)
    assert all(torch.equal(now[k], before[k]) for k in before)
    assert make().config.normalization == "none" and not batch_norms(make())


def test_batch_option_adds_batch_norms_and_keeps_the_linear_initialisation():
    plain, normed = make(), make(normalization="batch")
    norms = batch_norms(normed)
    # encoder 2 (hidden + output), post-pooling 1 + 1 parameter norm, 2 priors and 2 inference nets
    # 1 + 1 each, observation 1
    assert len(norms) == 2 + 2 + 4 * 2 + 1
    heads = [m for m in norms if m.num_features == 1]
    assert len(heads) == 5 and all(m.eps == 1e-3 and m.momentum == 0.01 for m in heads)
    linear = {k: v for k, v in normed.named_parameters() if v.dim() == 2}
    assert len(linear) == len(dict(plain.named_parameters())) // 2
    assert all(torch.equal(v, p) for v, p in zip(linear.values(), (p for p in plain.parameters() if p.dim() == 2)))


def test_batch_normalised_statistic_uses_the_other_sets_only_in_training():
    model, x = warmed_up(make(double=True, normalization="batch")), sets(batch_size=4, seed=1).x.double()
    others = x.clone()
    others[1:] = sets(batch_size=4, seed=2).x.double()[1:]
    model.eval()
    alone = model.statistic(x[:1]).mean
    assert torch.allclose(model.statistic(x).mean[:1], alone, rtol=0, atol=1e-12)
    assert torch.allclose(model.statistic(others).mean[:1], alone, rtol=0, atol=1e-12)
    a, b = seeded(model, x), seeded(model, others)
    assert torch.allclose(a.p_x.mean[0], b.p_x.mean[0], rtol=0, atol=1e-12)
    model.train()
    assert not torch.allclose(model.statistic(x).mean[:1], model.statistic(others).mean[:1], rtol=0, atol=1e-6)


def test_running_statistics_move_only_in_training_and_evaluation_uses_eval_mode():
    from npkit.evaluation.statistician import elbo_on, statistic_means

    model = warmed_up(make(normalization="batch"))
    frozen = {k: v.clone() for k, v in model.state_dict().items()}
    x = sets(batch_size=4, seed=3).x
    statistic_means(model, x)
    elbo_on(model, DistributionSets(num_items=20), num_datasets=8)
    assert model.training  # restored
    assert all(torch.equal(v, frozen[k]) for k, v in model.state_dict().items())
    model.eval()
    expected = model.statistic(x[:1]).mean.double()
    assert torch.allclose(statistic_means(model.train(), x)[:1], expected, rtol=0, atol=1e-6)
    model(x)
    key = "instance_encoder.1.running_mean"
    assert not torch.equal(model.state_dict()[key], frozen[key])


def test_batch_normalised_masked_items_match_the_unpadded_sets_in_both_modes():
    model, x = warmed_up(make(double=True, normalization="batch")), sets(batch_size=3, num_items=12).x.double()
    mask = torch.ones(3, 12, dtype=torch.bool)
    mask[:, 7:] = False
    garbage = x.clone()
    garbage[:, 7:] = 1e3
    for mode in (True, False):
        model.train(mode)
        a, b, c = seeded(model, x[:, :7]), seeded(model, garbage, mask), seeded(model, x, mask)
        assert torch.allclose(a.q_c.mean, b.q_c.mean, rtol=0, atol=1e-10)
        for name in ("mean", "stddev"):  # the top layer: the same c, so the same distributions
            for q_a, q_b in ((a.q_z[0], b.q_z[0]), (a.p_z[0], b.p_z[0])):
                assert torch.allclose(getattr(q_a, name), getattr(q_b, name)[:, :7], rtol=0, atol=1e-10)
        assert torch.allclose(b.p_x.mean[:, :7], c.p_x.mean[:, :7], rtol=0, atol=1e-10)  # the same noise


def test_training_with_batch_norm_lowers_the_loss_on_spatial_digits():
    """Scored in training mode, with the batch's statistics, as optimised: in eval mode the untrained
    model's running statistics (0 and 1) make the normalisation an identity, not comparable."""
    model = make(x_dim=2, normalization="batch")
    train, test = spatial_digits("train", classes=[0, 1, 2], num_points=20), spatial_digits("test", num_points=20)
    held_out = test.sample(32, torch.Generator().manual_seed(123))

    def loss(training: bool) -> float:
        state = {k: v.clone() for k, v in model.state_dict().items()}  # scoring moves no statistics
        model.train(training)
        with torch.no_grad():
            value = seeded(statistician_elbo, model, held_out).loss.item()
        model.load_state_dict(state)
        return value

    before = loss(True)
    fit(model, train, statistician_elbo, steps=150, batch_size=16, lr=3e-3, progress=False, accelerator="cpu")
    after = loss(True)
    assert after < before / 5, (before, after)
    assert math.isfinite(loss(False))


def test_checkpoints_keep_the_running_statistics(tmp_path):
    from npkit.runs import latest_checkpoint, load_trained

    model = make(x_dim=2, normalization="batch")
    fit(
        model,
        spatial_digits("train", num_points=20),
        statistician_elbo,
        steps=6,
        batch_size=8,
        checkpoint_every=3,
        run_dir=tmp_path,
        progress=False,
        accelerator="cpu",
    )
    assert latest_checkpoint(tmp_path).name == "step-00000006"
    loaded, state = load_trained(tmp_path), model.state_dict()
    buffers = [k for k in state if "running" in k or "num_batches_tracked" in k]
    assert len(buffers) == 3 * len(batch_norms(model)) and int(state["post_pooling.1.num_batches_tracked"]) == 6
    assert all(torch.equal(loaded.state_dict()[k], state[k]) for k in state)
    x = spatial_digits("test", num_points=20).sample(4, torch.Generator().manual_seed(0)).x
    model.eval(), loaded.eval()
    assert torch.equal(seeded(model, x).p_x.mean, seeded(loaded, x).p_x.mean)


# --------------------------------------------------------------------------- the samplers


def test_set_batch_checks_shapes_and_moves_to_a_dtype():
    x = torch.zeros(2, 5, 1)
    with pytest.raises(ValueError, match="x must be a float"):
        SetBatch(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="labels must have shape"):
        SetBatch(x, labels=torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="mask must be bool"):
        SetBatch(x, mask=torch.ones(2, 5))
    moved = SetBatch(x, torch.tensor([1, 2]), torch.ones(2, 5, dtype=torch.bool)).to("cpu", torch.float64)
    assert (moved.x.dtype, moved.labels.dtype, moved.mask.dtype) == (torch.float64, torch.long, torch.bool)
    assert (moved.batch_size, moved.num_items) == (2, 5)


@pytest.mark.parametrize("sampler", [DistributionSets(num_items=30), spatial_digits("test", num_points=30)])
def test_samplers_are_deterministic_given_the_generator(sampler):
    a, b, c = (sampler.sample(4, torch.Generator().manual_seed(seed)) for seed in (5, 5, 6))
    assert torch.equal(a.x, b.x) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.x, c.x)
    assert a.x.dtype == torch.float32 and a.labels.dtype == torch.long and a.x.shape == (4, 30, a.x.shape[-1])


def test_distribution_labels_name_the_family_the_items_come_from():
    batch = DistributionSets(num_items=20000).sample(24, torch.Generator().manual_seed(0))
    x = batch.x.squeeze(-1).double()
    z = (x - x.mean(1, keepdim=True)) / x.std(1, keepdim=True)
    skew, excess_kurtosis = (z**3).mean(1), (z**4).mean(1) - 3
    expected = {"gaussian": (0.0, 0.0), "exponential": (2.0, 6.0), "uniform": (0.0, -1.2), "laplace": (0.0, 3.0)}
    nearest = [
        min(FAMILIES, key=lambda f: (s - expected[f][0]) ** 2 + (k - expected[f][1]) ** 2)
        for s, k in zip(skew.tolist(), excess_kurtosis.tolist())
    ]
    assert nearest == [FAMILIES[label] for label in batch.labels]
    assert len(set(nearest)) == 4
    assert (x.mean(1).abs() < 1.05).all() and ((x.std(1) > 0.45) & (x.std(1) < 2.1)).all()


def test_point_sets_are_drawn_where_each_labelled_image_has_ink():
    images = torch.zeros(3, 1, 4, 4)
    for k in range(3):
        images[k, 0, k, 3 - k] = 1.0  # image k: one bright pixel at row k, column 3 - k
    batch = PointSets(images, torch.tensor([0, 1, 2]), num_points=40).sample(6, torch.Generator().manual_seed(0))
    pixels = (batch.x * 4).floor().long()  # [B, P, 2]
    assert ((batch.x >= 0) & (batch.x < 1)).all()
    assert (pixels[..., 0] == batch.labels[:, None]).all() and (pixels[..., 1] == 3 - batch.labels[:, None]).all()


def test_spatial_digits_keep_the_split_and_the_classes():
    assert len(spatial_digits("test").images) == 360 and len(spatial_digits("train").images) == 1437
    sampler = spatial_digits("test", classes=[3, 7])
    batch = sampler.sample(8, torch.Generator().manual_seed(0))
    assert set(batch.labels.tolist()) == {3, 7} and set(sampler.labels.tolist()) == {3, 7}
    assert batch.x.shape == (8, 50, 2) and ((batch.x >= 0) & (batch.x <= 1)).all()
    assert repr(sampler) == "PointSets(num_points=50, classes=(3, 7), source='digits:test')"


def test_points_of_a_digit_concentrate_on_its_bright_pixels():
    digits = spatial_digits("test")
    image = digits.images[:1]
    batch = PointSets(image, digits.labels[:1], num_points=200).sample(4, torch.Generator().manual_seed(0))
    rows, cols = (batch.x * 8).floor().long().unbind(-1)
    ink = image[0, 0, rows, cols]  # [B, P]: the intensity of each point's pixel
    assert (ink > 0).all() and ink.mean() > 1.5 * image.mean()


@pytest.mark.parametrize(
    "build, option",
    [
        (lambda: DistributionSets(num_items=0), "num_items"),
        (lambda: DistributionSets(std_range=(-1.0, 1.0)), "std_range"),
        (lambda: DistributionSets(families=("cauchy",)), "families"),
        (lambda: spatial_digits(num_points=0), "num_points"),
        (lambda: spatial_digits(classes=[11]), "classes"),
        (lambda: digit_sets(set_size=0), "set_size"),
        (lambda: digit_sets(classes=[11]), "classes"),
        (lambda: digit_sets(split="valid"), "split"),
        (lambda: digit_sets(binarize="yes"), "binarize"),
        (lambda: ClassSets(torch.zeros(4, 8, 8), torch.zeros(4, dtype=torch.long)), "images"),
        (lambda: ClassSets(torch.zeros(4, 1, 2, 2), torch.zeros(3, dtype=torch.long)), "labels"),
        (lambda: ClassSets(torch.full((4, 1, 2, 2), 2.0), torch.zeros(4, dtype=torch.long)), "images"),
        (lambda: ClassSets(*numbered_images([0, 0, 0, 1, 1]), set_size=3), "set_size=3 exceeds the 2 image"),
    ],
)
def test_bad_sampler_options_are_rejected_naming_them(build, option):
    with pytest.raises(ValueError, match=rf"{option}"):
        build()


def numbered_images(labels: list[int]) -> tuple[Tensor, Tensor]:
    """Images [n, 1, 2, 2] whose first pixel is (index + 1) / 100 (which image it is) and whose
    second pixel is label / 10 (its class), with those labels [n]."""
    images = torch.zeros(len(labels), 1, 2, 2)
    images[:, 0, 0, 0] = (torch.arange(len(labels)) + 1) / 100
    images[:, 0, 0, 1] = torch.tensor(labels, dtype=torch.float32) / 10
    return images, torch.tensor(labels)


def test_class_sets_are_distinct_images_of_the_one_class_they_are_labelled_with():
    images, labels = numbered_images([0] * 6 + [1] * 5 + [2] * 7 + [3] * 5)
    sampler = ClassSets(images, labels, set_size=5, classes=[1, 2, 3, 2])
    assert sampler.classes == (1, 2, 3) and set(sampler.labels.tolist()) == {1, 2, 3}
    batch = sampler.sample(300, torch.Generator().manual_seed(0))
    assert batch.x.shape == (300, 5, 4) and batch.labels.shape == (300,) and batch.mask is None
    index, label = (batch.x[..., 0] * 100).round().long() - 1, (batch.x[..., 1] * 10).round().long()
    assert (label == batch.labels[:, None]).all()  # every item of a set is of the set's class
    assert all(len(set(row.tolist())) == 5 for row in index)  # distinct images
    assert (labels[index] == batch.labels[:, None]).all()
    counts = torch.bincount(batch.labels, minlength=4)[1:]  # class uniform over the kept ones
    assert counts.min() > 70 and counts.sum() == 300
    assert (
        sampler.x_dim == 4
        and repr(sampler) == "ClassSets(set_size=5, classes=(1, 2, 3), binarize=False, source='images')"
    )


def test_class_sets_give_one_dataset_per_class_as_support_and_one_item_per_query():
    sampler = ClassSets(*numbered_images([0] * 4 + [1] * 4), set_size=2)
    support = sampler.support_sets(torch.tensor([[0, 1, 2], [4, 5, 6]]))
    assert support.x.shape == (2, 3, 4) and support.labels.tolist() == [0, 1]
    assert ((support.x[..., 0] * 100).round() - 1).long().tolist() == [[0, 1, 2], [4, 5, 6]]
    query = sampler.query_sets(torch.tensor([3, 7, 2]))
    assert query.x.shape == (3, 1, 4) and query.labels.tolist() == [0, 1, 0]
    points = PointSets(sampler.images + 0.01, sampler.labels, num_points=6)  # each image its own point set
    assert points.support_sets(torch.tensor([[0, 1, 2], [4, 5, 6]])).x.shape == (6, 6, 2)


def test_digit_sets_keep_the_split_and_binarise_afresh_from_the_intensities():
    assert len(digit_sets("test").images) == 360 and len(digit_sets("train").images) == 1437
    sampler = digit_sets("test", classes=[3, 7], set_size=4)
    batch = sampler.sample(6, torch.Generator().manual_seed(0))
    assert batch.x.shape == (6, 4, 64) and set(batch.labels.tolist()) <= {3, 7}
    assert ((batch.x >= 0) & (batch.x <= 1)).all() and not ((batch.x == 0) | (batch.x == 1)).all()
    binary = digit_sets("test", binarize=True)
    draws = torch.stack([binary.sets_of(torch.tensor([[0]]), torch.Generator().manual_seed(s)).x for s in range(400)])
    assert ((draws == 0) | (draws == 1)).all()
    assert torch.allclose(draws.mean(0).flatten(), binary.images[0].flatten(), atol=0.1)


@pytest.mark.parametrize("binarize", [False, True])
def test_class_sets_are_seeded_by_the_generator_alone(binarize):
    sampler = digit_sets("test", set_size=4, binarize=binarize)
    torch.manual_seed(0)
    a = sampler.sample(8, torch.Generator().manual_seed(5))
    torch.manual_seed(1)  # the global seed plays no part
    b, c = (sampler.sample(8, torch.Generator().manual_seed(seed)) for seed in (5, 6))
    assert torch.equal(a.x, b.x) and torch.equal(a.labels, b.labels) and not torch.equal(a.x, c.x)
    assert a.x.dtype == torch.float32 and a.labels.dtype == torch.long
