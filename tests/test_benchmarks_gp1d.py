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


def test_per_kernel_runs_have_their_own_folders_and_score_their_own_kernel(gp1d):
    assert gp1d.run_folder("runs/gp1d", "tnpd", 0, "rbf") == Path("runs/gp1d/tnpd")
    assert gp1d.run_folder("runs/gp1d", "tnpd", 0, "periodic") == Path("runs/gp1d/tnpd-on-periodic")
    assert gp1d.run_folder("runs/gp1d", "tnpd", 1, "periodic") == Path("runs/gp1d/tnpd-on-periodic-seed1")
    assert gp1d.scored_kernels("rbf") == gp1d.KERNELS  # the published protocol: every kernel
    assert gp1d.scored_kernels("periodic") == ("periodic",)


def test_per_kernel_table_takes_each_column_from_the_model_trained_on_it(gp1d):
    metrics = lambda ll: {"tar_ll": ll, "tar_ll_se": 0.01, "tar_ll_ar": ll + 1, "ctx_ll": 2.0, "coverage95": 0.9}
    on_rbf = {"scores": {k: metrics(v) for k, v in zip(gp1d.KERNELS, (1.4, 0.9, -3.0))}}  # OOD: matern, periodic
    on_periodic = {"scores": {"periodic": metrics(0.8)}}
    own = gp1d.own_kernel_scores({"rbf": on_rbf, "periodic": on_periodic})
    assert gp1d.cells_of(own) == " 1.400 ± 0.010 | 2.400 (AR) | - | - | 0.800 ± 0.010 | 1.800 (AR) |"
    assert gp1d.kernel_headers("rbf", ("tar_ll",)) == " rbf tar_ll | matern52 (OOD) tar_ll | periodic (OOD) tar_ll |"


def test_a_deterministic_model_without_its_autoregressive_joint_shows_a_dash(gp1d):
    marginal_only = {k: {"tar_ll": 1.3, "tar_ll_se": 0.01} for k in gp1d.KERNELS}  # --ar-kernels without values
    assert gp1d.cells_of(marginal_only) == " 1.300 ± 0.010 | - |" * 3
    mean = gp1d.seed_mean([{"scores": marginal_only}] * 2)
    assert gp1d.cells_of(mean) == " 1.300 ± 0.000 | - |" * 3
