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


def test_oracle_points_score_the_targets_under_the_true_gp(ood):
    from npkit.data import make_sampler
    from npkit.evaluation.metrics import evaluate_gp, make_eval_set

    evalset = make_eval_set(make_sampler("gp1d", kernel="rbf"), 3, 8, seed=0)
    pooled = ood.oracle_points(evalset)
    assert ood.summary(pooled, None)["tar_ll"] == pytest.approx(evaluate_gp(evalset, "oracle")["tar_ll"], abs=1e-9)
