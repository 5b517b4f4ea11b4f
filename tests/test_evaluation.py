"""Evaluation sets (make / save / load / cache), metrics of models and GPs, the table."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from torch.distributions import Normal

from npkit.data import GPSampler, TrueGP, make_sampler
from npkit.evaluation.metrics import (
    METRICS,
    EvalSet,
    _joint_importance_weighted,
    cached_eval_set,
    evaluate,
    evaluate_gp,
    format_table,
    load_eval_set,
    make_eval_set,
    save_eval_set,
)
from npkit.models import build_model
from npkit.predictive import marginal
from npkit.tasks import Batch


@pytest.fixture(scope="module")
def batches():
    return make_eval_set(make_sampler("gp1d", kernel="rbf"), 4, 8, seed=3)


def _tiny(name: str):
    torch.manual_seed(0)
    latent = {"z_dim": 8} if name != "cnp" else {}
    return build_model(name, hidden_dim=16, r_dim=16, encoder_layers=2, decoder_layers=2, **latent)


def _part(evalset: EvalSet, indices) -> EvalSet:
    """The batches ``indices`` of an evaluation set, with their GPs."""
    return EvalSet([evalset.batches[i] for i in indices], [evalset.gps[i] for i in indices])


def _assert_batches_equal(a: EvalSet, b: EvalSet):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for name in ("xc", "yc", "xt", "yt", "mask_c", "mask_t"):
            u, v = getattr(x, name), getattr(y, name)
            assert (u is None) == (v is None)
            if u is not None:
                assert u.dtype == v.dtype and torch.equal(u, v)
    assert (a.gps is None) == (b.gps is None)
    for x, y in zip(a.gps or [], b.gps or []):
        if x is not None:
            assert x.kernel == y.kernel
            for name in ("scale", "length", "period", "noise_std"):
                u, v = getattr(x, name), getattr(y, name)
                if isinstance(u, torch.Tensor):
                    assert torch.equal(u, v)
                else:
                    assert u == v


def test_make_eval_set_is_deterministic():
    sampler = make_sampler("gp1d", kernel="periodic")
    a, b = make_eval_set(sampler, 3, 4, seed=7), make_eval_set(sampler, 3, 4, seed=7)
    _assert_batches_equal(a, b)
    c = make_eval_set(sampler, 3, 4, seed=8)
    assert not torch.equal(a.gps[0].scale, c.gps[0].scale)


def test_save_load_round_trip(tmp_path, batches):
    periodic = make_eval_set(make_sampler("gp1d", kernel="periodic"), 2, 3, seed=0)
    empty = make_eval_set(GPSampler(num_context=(0, 0)), 1, 3, seed=0)
    masked = replace(batches[0], mask_t=torch.rand(batches[0].xt.shape[:2]) > 0.3)
    tensor_noise = replace(batches.gps[0], noise_std=torch.full((8,), 0.05, dtype=torch.float64))
    everything = EvalSet([*batches, *periodic, *empty, masked], [*batches.gps, *periodic.gps, *empty.gps, tensor_noise])
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
    assert noisy.gps[0].noise_std == 0.5 and default.gps[0].noise_std == 0.02


def test_cached_eval_set_defaults_to_npkit_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NPKIT_CACHE", str(tmp_path / "env-cache"))
    cached_eval_set(make_sampler("gp1d"), 1, 2, seed=0)
    assert len(list((tmp_path / "env-cache").iterdir())) == 2


@pytest.mark.parametrize("name", ["cnp", "np"])
def test_evaluate_tiny_models(name, batches):
    model = _tiny(name)
    result = evaluate(model, batches, num_samples=5)
    assert set(result) == set(METRICS) - {"tar_ll_ar"} - (set() if model.is_latent else {"tar_ll_joint_iw"})
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
        ll = marginal(model, pred).log_prob(batch.y)  # [B, Nc + Nt]
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
    gp = batches.gps[1]
    for evaluated in (lambda b: evaluate(model, [b]), lambda b: evaluate_gp(EvalSet([b], [gp]))):
        a, b = evaluated(masked), evaluated(dropped)
        for key in ("ctx_ll", "tar_ll", "tar_ll_joint", "mse", "coverage95"):
            assert a[key] == pytest.approx(b[key], abs=1e-5), key


def test_empty_context_batches_are_skipped_for_ctx_ll(batches):
    empty = make_eval_set(GPSampler(num_context=(0, 0)), 1, 8, seed=0)
    first = _part(batches, [0])
    both = evaluate_gp(EvalSet(empty.batches + first.batches, empty.gps + first.gps), progress=True)
    alone = evaluate_gp(first)
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
    assert lines[0].split() == ["model", *(m for m in METRICS if m not in ("tar_ll_joint_iw", "tar_ll_ar"))]
    assert lines[2].startswith("oracle") and lines[3].startswith("cnp")
    assert lines[2].split()[-1] == "32"


def test_evaluate_gp_bad_input(batches):
    with pytest.raises(ValueError, match="kind"):
        evaluate_gp(batches, kind="exact")
    with pytest.raises(ValueError, match="no generating GPs"):
        evaluate_gp(EvalSet(batches.batches))
    with pytest.raises(TypeError, match="needs an EvalSet"):
        evaluate_gp(list(batches))
    with pytest.raises(ValueError, match="at least one batch"):
        EvalSet([])
    assert all(isinstance(gp, TrueGP) for gp in batches.gps)


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


# ----------------------------------------------------------------------------- metric definitions
# Targets placed where the model's own predictive puts them (its mean, or given quantiles of it):
# the predictive at the targets depends on the context only, so coverage and MSE have closed forms.


def _tiny_cnp():
    torch.manual_seed(0)
    return build_model("cnp", hidden_dim=16, r_dim=16)


def _toy_batch(num_tasks: int, num_target: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """float64 context (5 points of a sine per task) and target inputs, no target outputs yet."""
    generator = torch.Generator().manual_seed(0)
    xc = 4 * torch.rand(num_tasks, 5, 1, generator=generator, dtype=torch.float64) - 2
    xt = torch.linspace(-2, 2, num_target, dtype=torch.float64).expand(num_tasks, num_target).unsqueeze(-1)
    return xc, torch.sin(2 * xc), xt.contiguous()


def test_coverage95_counts_targets_inside_the_central_95_percent_interval():
    """Catches a 90% (or any other) interval used for coverage95 instead of [0.025, 0.975]."""
    quantiles = [0.001, 0.01, 0.02, 0.03, 0.04, 0.2, 0.5, 0.8, 0.96, 0.97, 0.98, 0.99]
    quantiles = torch.tensor(quantiles, dtype=torch.float64)
    inside_95 = ((quantiles >= 0.025) & (quantiles <= 0.975)).double().mean().item()  # 7 / 12
    inside_90 = ((quantiles >= 0.05) & (quantiles <= 0.95)).double().mean().item()  # 3 / 12
    model = _tiny_cnp().double()
    xc, yc, xt = _toy_batch(3, len(quantiles))
    with torch.no_grad():
        pred = model(xc, yc, xt)
        yt = pred.mean + pred.stddev * Normal(0.0, 1.0).icdf(quantiles)[:, None]  # target i at quantile i
    result = evaluate(model, [Batch(xc=xc, yc=yc, xt=xt, yt=yt)])
    assert result["coverage95"] == pytest.approx(inside_95, abs=1e-9)
    assert abs(inside_95 - inside_90) > 0.3


def test_latent_mse_is_the_squared_error_of_the_mixture_mean():
    """Catches MSE computed as the mean over z samples of the squared error (adds Var_z of the mean)."""
    torch.manual_seed(0)
    model = build_model("np", hidden_dim=16, r_dim=16, z_dim=3, init="normal", init_std=1.0).double()
    xc, yc, xt = _toy_batch(4, 10)
    samples = 2000
    with torch.no_grad():
        torch.manual_seed(1)
        means = model(xc, yc, xt, num_samples=samples).mean  # [S, B, Nt, 1]
    spread = means.var(0).mean().item()  # what the mean over samples of the squared error adds
    assert spread > 1e-2  # the latent samples move the predictive mean materially
    # Targets at the mixture mean: its squared error is only Monte Carlo noise, ~ 2 * spread / S.
    batch = Batch(xc=xc, yc=yc, xt=xt, yt=means.mean(0))
    torch.manual_seed(2)
    result = evaluate(model, [batch], num_samples=samples)
    assert result["mse"] < 0.02 * spread


def test_tar_ll_se_is_the_standard_error_over_batches(batches):
    """Catches tar_ll_se computed without the square root of the number of batches."""
    model = _tiny_cnp()
    per_batch = torch.tensor([evaluate(model, [b])["tar_ll"] for b in batches], dtype=torch.float64)
    assert len(batches) == 4 and per_batch.std() > 0
    expected = (per_batch.std() / math.sqrt(len(batches))).item()  # sample std (n - 1) / sqrt(n)
    result = evaluate(model, batches)
    assert result["tar_ll_se"] == pytest.approx(expected, rel=1e-6)
    assert result["tar_ll"] == pytest.approx(per_batch.mean().item(), rel=1e-6)


def test_a_corrupt_cache_is_rebuilt_with_a_warning(tmp_path):
    sampler = make_sampler("gp1d")
    first = cached_eval_set(sampler, 2, 4, seed=0, cache_dir=tmp_path)
    (cache,) = tmp_path.glob("*.safetensors")
    cache.write_bytes(cache.read_bytes()[:100])  # truncated by a crash or a full disk
    with pytest.warns(UserWarning, match=r"rebuilding the evaluation cache: corrupt safetensors file"):
        again = cached_eval_set(sampler, 2, 4, seed=0, cache_dir=tmp_path)
    _assert_batches_equal(first, again)
    _assert_batches_equal(first, cached_eval_set(sampler, 2, 4, seed=0, cache_dir=tmp_path))  # healed


def test_a_batch_without_targets_is_one_clear_error(batches):
    empty = Batch(batches[0].xc, batches[0].yc, batches[0].xt[:, :0], batches[0].yt[:, :0])
    with pytest.raises(ValueError, match=r"a batch has no target points to evaluate \(n_target = 0\)"):
        evaluate(_tiny("np"), [empty], num_samples=2)


def test_an_unwritable_cache_folder_is_skipped_with_a_warning(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")  # the cache folder cannot be created: as a read-only folder would fail
    with pytest.warns(UserWarning, match="not caching the evaluation set: cannot write"):
        evalset = cached_eval_set(make_sampler("gp1d"), 1, 2, seed=0, cache_dir=blocker / "cache")
    _assert_batches_equal(evalset, make_eval_set(make_sampler("gp1d"), 1, 2, 0))
