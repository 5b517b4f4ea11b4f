"""The tutorials of docs/tutorials run at a tiny budget: each script writes every figure its page
shows and returns sensible numbers, and each page embeds its own script (so the page shows the
code that runs)."""

from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
TUTORIALS = DOCS / "tutorials"
NAMES = sorted(p.stem for p in TUTORIALS.glob("*.py"))  # every tutorial script has its page
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
PNG = b"\x89PNG\r\n\x1a\n"


def tutorial(name: str):
    """The script docs/tutorials/<name>.py as a module."""
    spec = importlib.util.spec_from_file_location(f"tutorial_{name.replace('-', '_')}", TUTORIALS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def page(name: str) -> str:
    return (TUTORIALS / f"{name}.md").read_text()


def shown_figures(name: str) -> list[str]:
    """The file names of the figures docs/tutorials/<name>.md shows (all under figures/tutorials/)."""
    links = IMAGE.findall(page(name))
    assert links, f"{name}.md shows no figure"
    prefix = "../figures/tutorials/"
    assert all(link.startswith(prefix) for link in links), links
    return [link.removeprefix(prefix) for link in links]


def run(name: str, steps: int, out: Path) -> dict:
    """main(steps, out) of the tutorial, after checking it wrote every figure its page shows."""
    result = tutorial(name).main(steps=steps, out=out)
    for figure in shown_figures(name):
        path = out / figure
        assert path.is_file(), f"{name}.py did not write {figure}, which {name}.md shows"
        assert path.read_bytes()[:8] == PNG and path.stat().st_size > 5000, figure
    assert result["steps"] == steps
    return result


def finite(*values: float) -> bool:
    return all(isinstance(v, float) and math.isfinite(v) for v in values)


@pytest.mark.parametrize("name", NAMES)
def test_page_embeds_its_script_and_links_resolve(name):
    text = page(name)
    assert f'```python\n--8<-- "docs/tutorials/{name}.py"\n```' in text
    for figure in shown_figures(name):  # the figures of the default run are in the repository
        assert (DOCS / "figures" / "tutorials" / figure).is_file(), figure
    for link in LINK.findall(text):
        if not link.startswith(("https://", "#")):
            target = link.split("#")[0]
            assert target.endswith(".md") and (TUTORIALS / target).resolve().is_file(), link


def test_functions_oracle_beats_a_barely_trained_model(tmp_path):
    result = run("functions", 30, tmp_path)
    assert finite(result["model_tar_ll"], result["model_ctx_ll"], result["oracle_tar_ll"], result["oracle_ctx_ll"])
    assert result["oracle_tar_ll"] > result["model_tar_ll"] + 0.5
    assert result["oracle_ctx_ll"] > result["model_ctx_ll"]
    assert 0 <= result["model_coverage95"] <= 1
    assert (tmp_path / "functions-training.png").stat().st_size > 5000  # the curves were logged and read


def test_images_scores_every_fraction_for_the_cnp_and_both_baselines(tmp_path):
    result = run("images", 30, tmp_path)
    methods = {"cnp", "canp", "kNN (k=5)", "GP (RBF, fitted)"}
    assert set(result["tar_ll"]) == set(result["mse"]) == methods
    for metric in ("tar_ll", "mse"):
        for per in result[metric].values():
            assert set(per) == {0.05, 0.1, 0.2, 0.5, 1.0}
            assert finite(*per.values())
    gp_mse = result["mse"]["GP (RBF, fitted)"]
    assert gp_mse[1.0] < gp_mse[0.5] < gp_mse[0.05]  # seeing more pixels helps the fitted GP


def test_own_data_reloaded_estimator_predicts_identically(tmp_path):
    result = run("own-data", 30, tmp_path)
    assert result["reload_diff"] == 0.0
    assert finite(result["np_log_lik"], result["np_mse"], result["gp_log_lik"], result["gp_mse"])
    assert result["np_mse"] > 0 and result["gp_mse"] > 0


def test_autoregressive_joint_is_finite_and_ar_samples_are_drawn(tmp_path):
    result = run("autoregressive", 30, tmp_path)
    assert finite(result["independent_joint"], result["ar_joint"], result["ar_joint_reversed"])
    assert finite(result["model_tar_ll"], result["model_tar_ll_ar"])
    assert result["oracle_tar_ll_joint"] > result["model_tar_ll_ar"]
    correlation = result["neighbour_correlation"]  # of the samples at neighbouring grid points
    assert len(correlation) == 3 and finite(*correlation.values())
    assert abs(correlation["independent per-point samples"]) < 0.3  # independent draws: no correlation
    assert correlation["GP oracle samples"] > 0.5  # smooth functions
