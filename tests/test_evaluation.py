"""Evaluation sets (make / save / load / cache), metrics of models and GPs, the table."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from torch.distributions import Normal

from npkit.data import GPSampler, TrueGP, make_sampler
from npkit.evaluation import (
    METRICS,
    _joint_importance_weighted,
    cached_eval_set,
    evaluate,
    evaluate_gp,
    format_table,
    load_eval_set,
    make_eval_set,
    save_eval_set,
)
from npkit.models import build_model, mixture_over_samples


@pytest.fixture(scope="module")
def batches():
    return make_eval_set(make_sampler("gp1d", kernel="rbf"), 4, 8, seed=3)


def _tiny(name: str):
    torch.manual_seed(0)
    return build_model(name, hidden_dim=16, r_dim=16, z_dim=8, encoder_layers=2, decoder_layers=2)


def _assert_batches_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for name in ("xc", "yc", "xt", "yt", "mask_c", "mask_t"):
            u, v = getattr(x, name), getattr(y, name)
            assert (u is None) == (v is None)
            if u is not None:
                assert u.dtype == v.dtype and torch.equal(u, v)
        assert (x.gp is None) == (y.gp is None)
        if x.gp is not None:
            assert x.gp.kernel == y.gp.kernel
            for name in ("scale", "length", "period", "noise_std"):
                u, v = getattr(x.gp, name), getattr(y.gp, name)
                if isinstance(u, torch.Tensor):
                    assert torch.equal(u, v)
                else:
                    assert u == v


def test_make_eval_set_is_deterministic():
    sampler = make_sampler("gp1d", kernel="periodic")
    a, b = make_eval_set(sampler, 3, 4, seed=7), make_eval_set(sampler, 3, 4, seed=7)
    _assert_batches_equal(a, b)
    c = make_eval_set(sampler, 3, 4, seed=8)
    assert not torch.equal(a[0].gp.scale, c[0].gp.scale)


def test_save_load_round_trip(tmp_path, batches):
    periodic = make_eval_set(make_sampler("gp1d", kernel="periodic"), 2, 3, seed=0)
    empty = make_eval_set(GPSampler(num_context=(0, 0)), 1, 3, seed=0)
    masked = replace(
        batches[0],
        mask_t=torch.rand(batches[0].xt.shape[:2]) > 0.3,
        gp=replace(batches[0].gp, noise_std=torch.full((8,), 0.05, dtype=torch.float64)),
    )
    everything = [*batches, *periodic, *empty, masked]
    save_eval_set(everything, tmp_path / "set.safetensors")
    assert (tmp_path / "set.json").exists()
    _assert_batches_equal(load_eval_set(tmp_path / "set.safetensors"), everything)


def test_cached_eval_set_writes_then_reads(tmp_path):
    sampler = make_sampler("gp1d", kernel="matern52")
    first = cached_eval_set(sampler, 2, 4, seed=5, cache_dir=tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and all("GPSampler-matern52_2x4_seed5" in f for f in files)
    second = cached_eval_set(sampler, 2, 4, seed=5, cache_dir=tmp_path)
    _assert_batches_equal(first, second)
    _assert_batches_equal(first, make_eval_set(sampler, 2, 4, 5))
    cached_eval_set(sampler, 2, 4, seed=6, cache_dir=tmp_path)
    assert len(list(tmp_path.iterdir())) == 4


def test_cached_eval_set_keeps_samplers_with_other_settings_apart(tmp_path):
    default = cached_eval_set(make_sampler("gp1d"), 1, 4, seed=0, cache_dir=tmp_path)
    noisy = cached_eval_set(make_sampler("gp1d", noise_std=0.5), 1, 4, seed=0, cache_dir=tmp_path)
    assert len(list(tmp_path.iterdir())) == 4
    assert noisy[0].gp.noise_std == 0.5 and default[0].gp.noise_std == 0.02


def test_cached_eval_set_defaults_to_npkit_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NPKIT_CACHE", str(tmp_path / "env-cache"))
    cached_eval_set(make_sampler("gp1d"), 1, 2, seed=0)
    assert len(list((tmp_path / "env-cache").iterdir())) == 2


@pytest.mark.parametrize("name", ["cnp", "np"])
def test_evaluate_tiny_models(name, batches):
    model = _tiny(name)
    result = evaluate(model, batches, num_samples=5)
    assert set(result) == set(METRICS) - (set() if model.is_latent else {"tar_ll_joint_iw"})
    assert all(math.isfinite(v) for v in result.values())
    assert 0.0 <= result["coverage95"] <= 1.0
    assert result["mse"] >= 0 and result["num_tasks"] == 32
    assert model.training  # evaluate restores the mode
    if not model.is_latent:
        assert result["tar_ll_joint"] == pytest.approx(result["tar_ll"], abs=1e-5)


def test_latent_tar_ll_is_the_mixture_log_likelihood(batches):
    model, batch = _tiny("np"), batches[0]
    torch.manual_seed(1)
    result = evaluate(model, [batch], num_samples=7)
    torch.manual_seed(1)
    model.eval()
    with torch.no_grad():
        pred = model(batch.xc, batch.yc, batch.x, num_samples=7)
        ll = mixture_over_samples(pred).log_prob(batch.y)  # [B, Nc + Nt]
        ll_s = pred.log_prob(batch.y)[:, :, batch.num_context :].sum(-1)  # [S, B]
    nc, nt = batch.num_context, batch.num_target
    assert result["ctx_ll"] == pytest.approx(ll[:, :nc].mean().item(), abs=1e-5)
    assert result["tar_ll"] == pytest.approx(ll[:, nc:].mean().item(), abs=1e-5)
    joint = (torch.logsumexp(ll_s, 0) - math.log(7)) / nt
    assert result["tar_ll_joint"] == pytest.approx(joint.mean().item(), abs=1e-5)
    # Jensen: joint per point >= mean of per-sample log-likelihoods per point.
    assert result["tar_ll_joint"] >= (ll_s / nt).mean().item() - 1e-6


def test_target_mask_equals_dropping_the_points(batches):
    batch = batches[1]
    keep = batch.num_target - 2
    mask_t = torch.ones(batch.xt.shape[:2], dtype=torch.bool)
    mask_t[:, keep:] = False
    masked = replace(batch, mask_t=mask_t)
    dropped = replace(batch, xt=batch.xt[:, :keep], yt=batch.yt[:, :keep])
    model = _tiny("cnp")
    for evaluated in (lambda b: evaluate(model, [b]), lambda b: evaluate_gp([b])):
        a, b = evaluated(masked), evaluated(dropped)
        for key in ("ctx_ll", "tar_ll", "tar_ll_joint", "mse", "coverage95"):
            assert a[key] == pytest.approx(b[key], abs=1e-5), key


def test_empty_context_batches_are_skipped_for_ctx_ll(batches):
    empty = make_eval_set(GPSampler(num_context=(0, 0)), 1, 8, seed=0)
    both, alone = evaluate_gp(empty + batches[:1], progress=True), evaluate_gp(batches[:1])
    assert both["ctx_ll"] == pytest.approx(alone["ctx_ll"])
    assert math.isnan(evaluate_gp(empty)["ctx_ll"])
    assert math.isfinite(evaluate(_tiny("np"), empty, num_samples=3)["tar_ll"])


def test_oracle_beats_an_untrained_model_and_table(batches):
    results = {"oracle": evaluate_gp(batches), "cnp": evaluate(_tiny("cnp"), batches)}
    assert results["oracle"]["tar_ll"] > results["cnp"]["tar_ll"]
    assert results["oracle"]["mse"] < results["cnp"]["mse"]
    table = format_table(results)
    lines = table.splitlines()
    assert len(lines) == 4
    assert lines[0].split() == ["model", *(m for m in METRICS if m != "tar_ll_joint_iw")]
    assert lines[2].startswith("oracle") and lines[3].startswith("cnp")
    assert lines[2].split()[-1] == "32"


def test_evaluate_gp_bad_input(batches):
    with pytest.raises(ValueError, match="kind"):
        evaluate_gp(batches, kind="exact")
    bare = replace(batches[0], gp=None)
    with pytest.raises(ValueError, match="no generating GP"):
        evaluate_gp([bare])
    with pytest.raises(ValueError, match="no batches"):
        evaluate_gp([])
    assert isinstance(batches[0].gp, TrueGP)


def test_importance_weighted_joint_agrees_with_prior_sampling_for_many_samples(batches):
    """Both estimate log p(y_T | C) / Nt; with many samples they agree (here q(z | C ∪ T) is a
    reasonable proposal: small init, so it stays close to p(z | C))."""
    torch.manual_seed(0)
    model = build_model("np", hidden_dim=16, r_dim=16, z_dim=2, init="normal", init_std=0.5).double()
    data = [b.to("cpu", torch.float64) for b in batches[:1]]
    torch.manual_seed(1)
    many = evaluate(model, data, num_samples=4000)
    torch.manual_seed(2)
    few = evaluate(model, data, num_samples=20)
    assert many["tar_ll_joint_iw"] == pytest.approx(many["tar_ll_joint"], abs=0.02)
    assert few["tar_ll_joint_iw"] == pytest.approx(many["tar_ll_joint"], abs=0.02)


def test_importance_weighted_joint_with_one_sample_matches_the_formula(batches):
    """log w = sum_t log p(y_t | z, C) + log p(z | C) - log q(z | C ∪ T), z ~ q(z | C ∪ T), / Nt."""
    torch.manual_seed(0)
    model = build_model("np", hidden_dim=16, r_dim=16, z_dim=3, init="normal", init_std=1.0).double()
    batch = batches[0].to("cpu", torch.float64)
    with torch.no_grad():
        torch.manual_seed(5)
        estimate = _joint_importance_weighted(model, batch, 1)
        torch.manual_seed(5)
        q = model.posterior(batch.x, batch.y).base_dist
        z = q.sample((1,))
        p = model.posterior(batch.xc, batch.yc).base_dist
        pred = model(batch.xc, batch.yc, batch.xt, z=z).base_dist
        log_lik = Normal(pred.loc, pred.scale).log_prob(batch.yt).sum((-1, -2))  # [1, B]
        log_w = log_lik + Normal(p.loc, p.scale).log_prob(z).sum(-1) - Normal(q.loc, q.scale).log_prob(z).sum(-1)
    assert estimate == pytest.approx((log_w[0] / batch.num_target).mean().item(), rel=1e-12)
