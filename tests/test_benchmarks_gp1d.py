"""benchmarks/gp1d.py: run folders per training seed and the mean over seeds (no training here)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import benchmark_script


@pytest.fixture(scope="module")
def gp1d():
    with benchmark_script("gp1d") as module:
        yield module


def test_seed_zero_keeps_the_plain_run_folder(gp1d):
    assert gp1d.run_folder("runs/gp1d", "cnp", 0) == Path("runs/gp1d/cnp")
    assert gp1d.run_folder("runs/gp1d", "cnp", 2) == Path("runs/gp1d/cnp-seed2")


def test_seed_mean_is_the_mean_with_the_standard_error_across_seeds(gp1d):
    def result(tar, joint, key):
        return {"scores": {k: {"tar_ll": tar, "tar_ll_se": 0.5, key: joint} for k in gp1d.KERNELS}}

    deterministic = gp1d.seed_mean([result(1.0, 2.0, "tar_ll_ar"), result(3.0, 4.0, "tar_ll_ar")])
    for scores in deterministic.values():
        # two seeds: std = |a - b| / sqrt(2), s.e. = std / sqrt(2) = |a - b| / 2 (not the batches' 0.5)
        assert scores == pytest.approx({"tar_ll": 2.0, "tar_ll_se": 1.0, "tar_ll_ar": 3.0})
    latent = gp1d.seed_mean([result(1.0, 2.0, "tar_ll_joint")] * 3)
    assert latent["rbf"] == pytest.approx({"tar_ll": 1.0, "tar_ll_se": 0.0, "tar_ll_joint": 2.0})
    assert "(AR)" not in gp1d.cells_of(latent) and "(AR)" in gp1d.cells_of(deterministic)


def test_calibration_cells_give_every_kernel_in_order_and_dashes_where_missing(gp1d):
    metrics = {"ctx_ll": 2.5, "mse": 0.0478, "coverage95": 0.9482}
    cells = gp1d.calibration_cells({"rbf": metrics, "matern52": {**metrics, "mse": 0.1}})
    assert cells == " 2.50 | 0.0478 | 0.948 | 2.50 | 0.1000 | 0.948 | - | - | - |"
