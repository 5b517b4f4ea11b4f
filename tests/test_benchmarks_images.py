"""benchmarks/images.py: every model is scored in its own run's data conventions (no training here)."""

from __future__ import annotations

import argparse

import pytest
import torch
from conftest import benchmark_script

import npkit
from npkit.evaluation.completion import evaluate_fractions, fraction_tasks


@pytest.fixture(scope="module")
def images():
    with benchmark_script("images") as module:
        yield module


def run_with(tmp_path, data: str):
    run = tmp_path / data
    run.mkdir()
    model = "model: {name: cnp, x_dim: 2, y_dim: 1}"
    config = f"{model}\ndata: {{name: {data}, split: train}}\nobjective: {{name: nll}}\n"
    (run / "config.yaml").write_text(config)
    return run


def test_a_run_is_evaluated_in_its_own_conventions_on_the_same_images(images, tmp_path):
    plain, plain_sampler = images.eval_split(run_with(tmp_path, "digits"), None)
    bnp, bnp_sampler = images.eval_split(run_with(tmp_path, "digits-bnp"), None)
    assert (plain, bnp) == ("digits", "digits-bnp")
    assert (plain_sampler.coords, plain_sampler.values) == ("unit", "unit")
    assert (bnp_sampler.coords, bnp_sampler.values) == ("centered", "centered")
    assert torch.equal(plain_sampler.images, bnp_sampler.images)  # a test split, not a training one


def test_fraction_results_score_each_model_on_its_conventions_and_baselines_on_theirs(images, tmp_path):
    _, plain = images.eval_split(run_with(tmp_path, "digits"), None)
    _, bnp = images.eval_split(run_with(tmp_path, "digits-bnp"), None)
    torch.manual_seed(0)
    model = npkit.build_model("cnp", x_dim=2, y_dim=1, hidden_dim=16, r_dim=16)  # untrained: not shift-invariant
    args = argparse.Namespace(num_images=16, samples=2, gp_restarts=1)
    results = images.fraction_results({"cnp": model}, {"cnp": bnp}, plain, args)

    def scored(sampler, **options):
        tasks = fraction_tasks(sampler, num_images=16, batch_size=16, seed=0)
        return evaluate_fractions({"cnp": model}, tasks, num_samples=2, fit_restarts=1, **options)

    def metrics(by_fraction):  # the table's numbers (a single batch's standard error is nan, never equal)
        return {f: (m["tar_ll"], m["mse"]) for f, m in by_fraction.items()}

    own, wrong = metrics(scored(bnp, gp=False)["cnp"]), metrics(scored(plain, gp=False)["cnp"])
    assert metrics(results["cnp"]) == own
    assert all(own[f][0] != pytest.approx(wrong[f][0]) for f in own)  # the bug this guards against
    baselines = scored(plain)
    assert list(results) == ["cnp", "kNN (k=5)", "GP (RBF, fitted)"]
    assert metrics(results["kNN (k=5)"]) == metrics(baselines["kNN (k=5)"])
    assert metrics(results["GP (RBF, fitted)"]) == metrics(baselines["GP (RBF, fitted)"])


def test_diversity_context_sizes_default_to_those_the_image_holds_and_reject_others(images):
    assert images.diversity_sizes(None, 784) == [10, 100, None]
    assert images.diversity_sizes(None, 64) == [10, None]  # 8x8 digits: no 100-pixel row
    assert images.diversity_sizes(["10", "196", "all"], 784) == [10, 196, None]
    for bad in ("0", "784", "ten", "-5"):
        with pytest.raises(SystemExit, match=f"--diversity-context {bad}: expected a pixel count in \\[1, 783\\]"):
            images.diversity_sizes([bad], 784)
