"""benchmarks/ood.py: the summary of per-point log-likelihoods (no training here)."""

from __future__ import annotations

import pytest
import torch
from conftest import benchmark_script


@pytest.fixture(scope="module")
def ood():
    with benchmark_script("ood") as module:
        yield module


def points(ll, n=200):
    ll = torch.as_tensor(ll, dtype=torch.float64)
    return {
        "ll": ll,
        "std": torch.ones(n, dtype=torch.float64),
        "z": torch.zeros(n, dtype=torch.float64),
        "err": torch.linspace(0, 2, n, dtype=torch.float64),
        "dist": torch.linspace(0, 1, n, dtype=torch.float64),
        "batch": torch.arange(n) // 50,  # 4 batches of 50 points
    }


def test_worst_share_tells_a_few_catastrophic_points_from_a_spread_deficit(ood):
    oracle = points(torch.ones(200))
    few = torch.ones(200)
    few[:2] = -99.0  # the worst 1% (2 of 200 points) carry the whole deficit
    spread = torch.zeros(200)  # every point 1 nat below the oracle
    assert ood.summary(points(few), oracle)["worst1_share"] == pytest.approx(1.0)
    assert ood.summary(points(spread), oracle)["worst1_share"] == pytest.approx(0.01)
    summary = ood.summary(points(spread), oracle)
    assert summary["tar_ll"] == 0.0 and summary["std_ratio"] == 1.0 and summary["z4"] == 0.0
    assert summary["ll_0.0-0.1"] == 0.0  # by distance to the nearest context point
    near = torch.linspace(0, 2, 200, dtype=torch.float64)[torch.linspace(0, 1, 200) < 0.1]
    assert summary["near_error"] == pytest.approx(near.median().item())  # |error|, not z * std


def test_the_prior_row_ignores_the_context_and_scores_below_the_oracle(ood):
    from npkit.data import make_sampler
    from npkit.evaluation.metrics import make_eval_set

    evalset = make_eval_set(make_sampler("gp1d", kernel="rbf"), 4, 8, seed=0)
    prior = ood.prior_points(evalset)
    batch, gp = evalset[0], evalset.gps[0]
    std = (gp.scale.double() ** 2 + gp.noise_std**2).sqrt()  # [8]: each task's marginal std
    first = torch.distributions.Normal(0.0, std[:, None]).log_prob(batch.yt[..., 0].double()).flatten()
    assert torch.allclose(prior["ll"][: first.numel()], first)
    assert ood.summary(prior, None)["tar_ll"] < ood.summary(ood.oracle_points(evalset), None)["tar_ll"] - 0.5


def test_oracle_points_score_the_targets_under_the_true_gp(ood):
    from npkit.data import make_sampler
    from npkit.evaluation.metrics import evaluate_gp, make_eval_set

    evalset = make_eval_set(make_sampler("gp1d", kernel="rbf"), 3, 8, seed=0)
    pooled = ood.oracle_points(evalset)
    assert ood.summary(pooled, None)["tar_ll"] == pytest.approx(evaluate_gp(evalset, "oracle")["tar_ll"], abs=1e-9)
