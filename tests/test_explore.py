"""npkit explore: the API through Starlette's ASGI test client (every endpoint, bad requests,
concurrency) on tiny trained runs."""

from __future__ import annotations

import json
import math
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from npkit.cli import main

pytest.importorskip("starlette")
pytest.importorskip("httpx2")
from starlette.testclient import TestClient

from npkit.explore.app import create_app

TINY = ["model.hidden_dim=16", "model.r_dim=16", "train.steps=3", "train.progress=false", "train.eval_every=null"]
LATENT = [*TINY, "model.z_dim=8", "model.attention_layers=0"]


def train(run_dir, preset, sets):
    assert main(["train", preset, "--run-dir", str(run_dir), *(f"--set={s}" for s in sets)]) == 0


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A latent ANP and a mixture-head TNP-D on gp1d, a CNP on the 8x8 digits."""
    root = tmp_path_factory.mktemp("explore")
    torch.manual_seed(0)
    train(root / "anp", "gp1d-anp", LATENT)
    train(root / "tnpd", "gp1d-tnpd-mixture", [*TINY, "model.transformer_layers=1", "model.num_heads=2"])
    train(root / "digits", "digits-cnp", TINY)
    return [root / "anp", root / "tnpd", root / "digits"]


@pytest.fixture(scope="module")
def client(runs):
    with TestClient(create_app(runs, max_points=50)) as client:
        yield client


def predict_body(**changes):
    body = {
        "run": 0,
        "seed": 3,
        "context": {"x": [-1.0, 0.0, 1.0], "y": [0.5, -0.2, 0.1]},
        "grid": 50,
        "num_samples": 4,
    }
    return {**body, **changes}


def test_the_page_and_its_assets_are_served_from_the_package(client):
    page = client.get("/")
    assert page.status_code == 200 and '<svg id="plot"' in page.text
    assert "/static/explore.js" in page.text and "http" not in page.text.replace("http://www.w3.org", "")  # no CDN
    assert client.get("/static/explore.js").status_code == 200
    assert client.get("/static/explore.css").status_code == 200
    assert client.get("/static/../served.py").status_code == 404  # nothing outside static/


def test_runs_describe_every_run_with_its_kind(client):
    runs = client.get("/api/runs").json()
    assert runs["max_points"] == 50
    kinds = [(r["family"], r["kind"], r["latent"]) for r in runs["runs"]]
    assert kinds == [("anp", "function", True), ("tnpd", "function", False), ("cnp", "image", False)]
    assert runs["runs"][0]["oracle"] and runs["runs"][1]["likelihood"] == "mixture"
    assert runs["runs"][2]["height"] == runs["runs"][2]["width"] == 8
    assert all("/" not in r["name"] for r in runs["runs"])  # names, never paths


def test_a_task_is_reproducible_from_its_seed(client):
    a = client.post("/api/task", json={"run": 0, "seed": 11, "grid": 30}).json()
    b = client.post("/api/task", json={"run": 0, "seed": 11, "grid": 30}).json()
    c = client.post("/api/task", json={"run": 0, "seed": 12, "grid": 30}).json()
    assert a == b and a["truth"] != c["truth"]
    assert len(a["truth"]["x"]) == 30 and a["truth"]["x"] == sorted(a["truth"]["x"]) and len(a["context"]["x"]) == 5
    assert a["gp"]["kernel"] == "rbf"


@pytest.mark.parametrize("run", [0, 1])
def test_predict_returns_the_band_samples_oracle_and_the_hidden_curves_likelihood(client, run):
    out = client.post("/api/predict", json=predict_body(run=run)).json()
    assert len(out["x"]) == len(out["mean"]) == len(out["std"]) == 50 and min(out["std"]) > 0
    assert len(out["samples"]["y"]) == 4 and math.isfinite(out["truth_ll"])
    oracle = out["oracle"]
    assert len(oracle["mean"]) == 50 and oracle["truth_ll"] > out["truth_ll"] - 50
    # the oracle's std shrinks to the noise at a context point (x = 0) and grows far from it
    near = min(range(50), key=lambda i: abs(out["x"][i]))
    assert oracle["std"][near] < oracle["std"][0]
    if run == 0:  # latent: the collapse view
        assert out["collapse"]["posterior_std"] > 0 and out["collapse"]["kl"] >= -1e-6
    else:
        assert out["collapse"] is None and len(out["samples"]["x"]) == 40  # autoregressive draws
    empty = client.post("/api/predict", json=predict_body(run=run, context={"x": [], "y": []}, num_samples=0)).json()
    assert empty["samples"] == {"x": [], "y": []} and len(empty["mean"]) == 50


def test_an_image_is_completed_from_its_revealed_pixels(client):
    image = client.post("/api/image", json={"run": 2, "index": 4}).json()
    assert len(image["pixels"]) == 64 and len(image["pixels"][0]) == 1
    out = client.post("/api/complete", json={"run": 2, "index": 4, "revealed": [0, 9, 27, 63], "num_samples": 2})
    out = out.json()
    assert len(out["mean"]) == len(out["std"]) == 64 and len(out["samples"]) == 2
    assert all(0 <= v[0] <= 1 for v in out["mean"])
    none = client.post("/api/complete", json={"run": 2, "index": 4, "revealed": [], "num_samples": 0}).json()
    assert none["mean"] != out["mean"] and none["samples"] == []


@pytest.mark.parametrize(
    ("path", "body", "field", "message"),
    [
        ("/api/predict", "{not json", "body", "not valid JSON"),
        ("/api/predict", "[1, 2]", "body", "must be a JSON object"),
        ("/api/predict", predict_body(run=7), "run", r"run must be an integer in \[0, 2\], got 7"),
        ("/api/predict", predict_body(run=2), "run", "is a image run, not a function run"),
        ("/api/predict", predict_body(seed="x"), "seed", "seed must be an integer"),
        ("/api/predict", predict_body(context={"x": [0.0]}), "context", "context must be an object"),
        ("/api/predict", predict_body(context={"x": [0.0], "y": [1.0, 2.0]}), "context", "has 1 points but"),
        ("/api/predict", '{"run": 0, "seed": 1, "context": {"x": [NaN], "y": [0]}}', "context.x", "finite number"),
        ("/api/predict", predict_body(context={"x": [[0.0, 1.0]], "y": [0.0]}), "context.x", "x_dim = y_dim = 1"),
        ("/api/predict", predict_body(context={"x": ["a"], "y": [0.0]}), "context.x", "finite number"),
        ("/api/predict", predict_body(context={"x": [0.0] * 51, "y": [0.0] * 51}), "context", "at most 50"),
        ("/api/predict", predict_body(grid=0), "grid", "grid must be an integer in"),
        ("/api/predict", predict_body(num_samples=500), "num_samples", "num_samples must be an integer in"),
        ("/api/task", {"run": 0}, "seed", "seed is required"),
        ("/api/complete", {"run": 2, "index": 99999, "revealed": []}, "index", "index must be an integer"),
        ("/api/complete", {"run": 2, "index": 0, "revealed": [64]}, "revealed", r"in \[0, 64\)"),
        ("/api/complete", {"run": 2, "index": 0, "revealed": "all"}, "revealed", "list of pixel indices"),
        ("/api/complete", {"run": 2, "index": 0, "revealed": list(range(51))}, "revealed", "at most 50"),
    ],
)
def test_bad_requests_get_a_400_naming_the_field(client, path, body, field, message):
    content = body if isinstance(body, str) else json.dumps(body)
    response = client.post(path, content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["field"] == field
    assert re.search(message, response.json()["error"])


def test_unknown_paths_and_methods_are_json_errors(client):
    assert client.get("/api/nothing").status_code == 404
    assert client.get("/api/predict").status_code == 405
    assert client.get("/api/nothing").json()["field"] is None


def test_twenty_parallel_requests_are_all_answered_as_sequential_ones(client):
    bodies = [predict_body(run=i % 2, seed=i, num_samples=3) for i in range(20)]
    sequential = [client.post("/api/predict", json=b).json() for b in bodies]
    with ThreadPoolExecutor(20) as pool:
        parallel = list(pool.map(lambda b: client.post("/api/predict", json=b), bodies))
    assert all(r.status_code == 200 for r in parallel)
    assert [r.json() for r in parallel] == sequential


def test_a_run_still_training_is_read_at_its_latest_checkpoint_and_never_written(runs, tmp_path):
    import shutil

    from npkit.runs import model_dir

    training = tmp_path / "training"
    shutil.copytree(runs[0], training)
    shutil.rmtree(model_dir(training))  # as if training were still on: checkpoints only
    before = sorted((p.relative_to(training), p.stat().st_mtime_ns) for p in training.rglob("*"))
    with TestClient(create_app([training])) as client:
        assert client.get("/api/runs").json()["runs"][0]["checkpoint"].startswith("step-")
        assert client.post("/api/predict", json=predict_body()).status_code == 200
    assert sorted((p.relative_to(training), p.stat().st_mtime_ns) for p in training.rglob("*")) == before


def test_a_folder_that_is_not_a_run_is_refused_naming_it(tmp_path, capsys):
    with pytest.raises(ValueError, match="is not an npkit run folder"):
        create_app([tmp_path])
    assert main(["explore", str(tmp_path), "--port", "1"]) == 2
    assert "is not an npkit run folder" in capsys.readouterr().err
