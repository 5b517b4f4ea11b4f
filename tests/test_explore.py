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
# a TNP-D that learns in 1,500 steps (~15 s) to narrow its band where a point is added (the browser test)
LEARNT = [*TINY, "model.hidden_dim=32", "model.r_dim=32", "model.transformer_layers=2", "model.num_heads=2"]
LEARNT += ["train.steps=1500", "train.lr=0.002"]


def train(run_dir, preset, sets):
    assert main(["train", preset, "--run-dir", str(run_dir), *(f"--set={s}" for s in sets)]) == 0


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A mixture-head TNP-D and a latent ANP on gp1d, a CNP on the 8x8 digits."""
    root = tmp_path_factory.mktemp("explore")
    torch.manual_seed(0)
    train(root / "tnpd", "gp1d-tnpd-mixture", LEARNT)
    train(root / "anp", "gp1d-anp", LATENT)
    train(root / "digits", "digits-cnp", [*TINY, "train.steps=500", "train.lr=0.002"])  # sees its context
    return [root / "tnpd", root / "anp", root / "digits"]


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
    assert kinds == [("tnpd", "function", False), ("anp", "function", True), ("cnp", "image", False)]
    assert runs["runs"][1]["oracle"] and runs["runs"][0]["likelihood"] == "mixture"
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
    if run == 1:  # latent: the collapse view
        assert out["collapse"]["posterior_std"] > 0 and out["collapse"]["kl"] >= -1e-6
    else:
        assert out["collapse"] is None and len(out["samples"]["x"]) == 30  # autoregressive draws
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


# --------------------------------------------------------------------------- a real browser

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium driven by Selenium (Debian's chromium and chromium-driver; .ci/run installs
    them). Skipped where they are missing, unless NPKIT_REQUIRE_BROWSER=1 (CI)."""
    import os
    from pathlib import Path

    if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
        if os.environ.get("NPKIT_REQUIRE_BROWSER") == "1":
            pytest.fail(f"NPKIT_REQUIRE_BROWSER=1 but {CHROMIUM} or {CHROMEDRIVER} is missing")
        pytest.skip("headless Chromium is not installed (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    flags = "--headless=new --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-dev-shm-usage"
    flags += " --disable-background-networking --disable-component-update --disable-sync --window-size=1280,1000"
    for flag in flags.split():
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium')}")
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def server(runs):
    """The app on a free loopback port, served by uvicorn in a thread (as ``npkit explore`` does);
    NPKIT_EXPLORE_RUNS (run folders, ':'-separated) serves those instead, e.g. for screenshots."""
    import os
    import threading
    import time

    import uvicorn

    from npkit.explore import free_port

    served = os.environ.get("NPKIT_EXPLORE_RUNS")
    port = free_port("127.0.0.1")
    app = create_app(served.split(":") if served else runs)
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    for _ in range(200):
        if uv.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/"
    uv.should_exit = True
    thread.join(10)


def settled(driver, condition: str, timeout: float = 90.0):
    """Wait until the page's JS ``condition`` holds and no prediction is in flight."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    idle = "const s = window.npkitExplore; return s && !s.pending && !s.image.pending && (" + condition + ");"
    try:
        WebDriverWait(driver, timeout).until(lambda d: d.execute_script(idle))
    except TimeoutException:
        seen = "const s = window.npkitExplore; return s && JSON.stringify({points: s.points.length, "
        seen += "pending: s.pending, again: s.again, image_pending: s.image.pending, "
        seen += "status: document.getElementById('status').textContent});"
        pytest.fail(f"the page never reached {condition}; it shows {driver.execute_script(seen)}")


def band_height_at(driver, run: int, px: float) -> float:
    """Height in pixels of run ``run``'s drawn 2-std band at horizontal pixel ``px`` (the polygon
    holds the upper edge left to right, then the lower edge right to left)."""
    points = driver.find_element("css selector", f'polygon.band[data-run="{run}"]').get_attribute("points")
    xy = [tuple(map(float, p.split(","))) for p in points.split()]
    upper, lower = xy[: len(xy) // 2], xy[len(xy) // 2 :][::-1]
    i = min(range(len(upper)), key=lambda k: abs(upper[k][0] - px))
    return lower[i][1] - upper[i][1]


def screenshot(driver, name: str) -> None:
    """Save a screenshot into $NPKIT_SCREENSHOTS (the README's figures come from here)."""
    import os
    from pathlib import Path

    folder = os.environ.get("NPKIT_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / name))


def test_clicking_on_the_plot_adds_a_point_and_the_band_narrows_there(browser, server):
    from selenium.webdriver.common.action_chains import ActionChains

    browser.get(server + "?seed=0")
    settled(browser, "document.body.dataset.ready === 'true' && Object.keys(s.predictions).length > 0")
    browser.find_elements("css selector", "#function-runs input")[1].click()  # a second model, overlaid
    settled(browser, "Object.keys(s.predictions).length === 2 && !s.again")
    assert len(browser.find_elements("css selector", "polygon.band")) == 2
    assert browser.current_url.endswith("?seed=0")  # the address names the task
    state = "const s = window.npkitExplore; return [s.predictions[0], s.points, s.truth, s.seed];"
    prediction, points, truth, seed = browser.execute_script(state)
    assert seed == 0
    to_px = "return arguments[0].map(sx);"
    grid_px = browser.execute_script(to_px, prediction["x"])
    points_px = browser.execute_script(to_px, [p["x"] for p in points])
    # the widest band in a gap between context points (a click on a point would drag it instead)
    inside = [i for i in range(10, len(grid_px) - 10) if min(abs(grid_px[i] - p) for p in points_px) > 20]
    widest = max(inside, key=lambda i: prediction["std"][i])
    px = grid_px[widest]
    assert truth["x"][widest] == pytest.approx(prediction["x"][widest])  # the same grid
    py = browser.execute_script(f"return sy({truth['y'][widest]});")  # a point on the hidden curve
    before = band_height_at(browser, 0, px)
    plot = browser.find_element("id", "plot")
    size = plot.size
    offset = (px - size["width"] / 2, py - size["height"] / 2)  # Selenium's offsets are from the centre
    ActionChains(browser).move_to_element_with_offset(plot, *offset).click().perform()
    settled(browser, f"s.points.length === {len(points) + 1} && !s.again")
    after = band_height_at(browser, 0, px)
    assert after < 0.7 * before, f"the band at the clicked x went from {before:.1f} to {after:.1f} px"
    screenshot(browser, "explore-1d.png")


def test_image_mode_reveals_pixels_and_updates_the_completion(browser, server):
    from selenium.webdriver.common.action_chains import ActionChains

    browser.get(server + "?seed=0")
    settled(browser, "document.body.dataset.ready === 'true' && s.image.last !== undefined")
    browser.find_element("css selector", '#modes button[data-mode="image"]').click()
    mean = lambda: browser.execute_script("return document.getElementById('mean').toDataURL();")
    blank = mean()
    browser.find_element("id", "reveal-count").clear()
    browser.find_element("id", "reveal-count").send_keys("20")
    browser.find_element("id", "reveal").click()
    settled(browser, "s.image.revealed.size === 20 && s.image.last && !s.image.again")
    revealed = mean()
    assert revealed != blank  # the completion changed with the revealed pixels
    first_mean = browser.execute_script("return JSON.stringify(window.npkitExplore.image.last.mean);")
    observed = browser.find_element("id", "observed")
    ActionChains(browser).move_to_element(observed).click_and_hold().move_by_offset(30, 0).release().perform()
    settled(browser, "s.image.revealed.size > 20 && !s.image.again")
    # The mean the server returned (not its 8-bit drawing, which a small change can leave as it was)
    # follows the painted pixels; the status line says what the page saw when it does not.
    state = "const i = window.npkitExplore.image; return [i.revealed.size, JSON.stringify(i.last.mean),"
    state += " document.getElementById('status').textContent];"
    size, painted, status = browser.execute_script(state)
    assert painted != first_mean, f"the mean did not change after painting ({size} pixels revealed; {status})"
    screenshot(browser, "explore-image.png")


def test_dragging_moves_a_point_and_a_right_click_removes_it(browser, server):
    from selenium.webdriver.common.action_chains import ActionChains

    browser.get(server + "?seed=0")
    settled(browser, "document.body.dataset.ready === 'true' && Object.keys(s.predictions).length > 0")
    before = browser.execute_script("return window.npkitExplore.points.map((p) => [p.x, p.y]);")
    point = browser.find_element("css selector", 'circle.point[data-index="0"]')
    ActionChains(browser).click_and_hold(point).move_by_offset(0, -40).release().perform()
    settled(browser, "!s.again")
    moved = browser.execute_script("return window.npkitExplore.points.map((p) => [p.x, p.y]);")
    assert len(moved) == len(before) and moved[0][1] > before[0][1] + 0.05  # dragged up: a larger y
    assert moved[1:] == before[1:]
    point = browser.find_element("css selector", 'circle.point[data-index="1"]')
    ActionChains(browser).context_click(point).perform()
    settled(browser, f"s.points.length === {len(before) - 1} && !s.again")
    left = browser.execute_script("return window.npkitExplore.points.map((p) => [p.x, p.y]);")
    assert left == [moved[0], *moved[2:]]
    assert len(browser.find_elements("css selector", "circle.point")) == len(before) - 1


def test_the_command_prints_its_url_serves_and_stops_cleanly_on_ctrl_c(runs):
    import signal
    import subprocess
    import sys

    import httpx2

    command = [sys.executable, "-m", "npkit", "explore", str(runs[0]), str(runs[2]), "--max-points", "7"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        try:
            line = process.stdout.readline()
            match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
            assert match, line
            info = httpx2.get(f"{match.group(0)}api/runs", timeout=30).json()
            assert info["max_points"] == 7 and [r["kind"] for r in info["runs"]] == ["function", "image"]
        finally:
            process.send_signal(signal.SIGINT)
            code = process.wait(timeout=30)
        errors = process.stderr.read()
    assert code == 0, errors


def test_a_saved_npregressor_is_served_in_its_own_units(tmp_path):
    """Your own data: a folder of NPRegressor.save, served in the data's units (no hidden curve,
    no oracle); the band is the estimator's own predictive."""
    import numpy as np

    from npkit import NPRegressor

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 100, (12, 10))  # minutes
    y = 300 + 40 * np.sin(x / 15 + rng.uniform(0, 3, (12, 1)))  # kelvin
    options = {"hidden_dim": 16, "r_dim": 16}
    est = NPRegressor("cnp", steps=20, batch_size=4, model_options=options, progress=False)
    est.fit(x.reshape(-1, 1), y.reshape(-1), groups=np.repeat(np.arange(12), 10))
    est.save(tmp_path / "stations")
    with TestClient(create_app([tmp_path / "stations"])) as client:
        run = client.get("/api/runs").json()["runs"][0]
        assert run["kind"] == "function" and not run["oracle"] and run["x_range"][0] < 10 < 90 < run["x_range"][1]
        task = client.post("/api/task", json={"run": 0, "seed": 1}).json()
        assert task["truth"] == {"x": [], "y": []} and task["gp"] is None
        body = {"run": 0, "seed": 1, "context": {"x": [20.0, 50.0], "y": [310.0, 280.0]}, "grid": 5, "num_samples": 2}
        out = client.post("/api/predict", json=body).json()
    assert out["truth_ll"] is None and out["oracle"] is None and len(out["samples"]["y"]) == 2
    expected = est.predict(
        np.array(out["x"]).reshape(-1, 1), context=(np.array([[20.0], [50.0]]), np.array([310.0, 280.0]))
    )
    assert np.allclose(out["mean"], expected.mean.numpy(), rtol=1e-5) and np.allclose(
        out["std"], expected.stddev.numpy(), rtol=1e-4
    )
