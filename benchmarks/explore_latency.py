"""Request latency of ``npkit explore``: what a click costs, per model family and context size.

    python benchmarks/explore_latency.py [--models cnp canp np anp tnpd convcnp] [--contexts 10 100 1000]
                                         [--requests 200] [--grid 200] [--samples 5]

Each model is its gp1d preset (``gp1d-<model>``: the reference sizes; latency does not depend on
the weights, so one training step is enough) served by the real app on uvicorn on a loopback
port, one torch thread, and queried over HTTP by ``httpx`` as the page does: ``POST /api/predict``
with the given number of context points on a GP task and ``--grid`` plotted inputs. ``band``:
the request the page sends first on every click (mean and 2-std band, the GP oracle and the
hidden curve's log-likelihood, no samples); ``+ samples``: the second one, with ``--samples``
function draws (latent z; autoregressive draws at 30 inputs for deterministic models).
Median and 95th percentile over ``--requests`` requests (a tenth as many with samples) after 5
warm-up requests. Goal (issue 27): band median under 50 ms for TNP-D and the ANP at 100 points.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
from common import cpu_name  # sibling scripts: benchmarks/ is on sys.path

from npkit.cli import main as npkit_main

WARMUP = 5


def trained_once(preset: str, root: Path) -> Path:
    """``npkit train <preset>`` for one step into a fresh run folder."""
    run = root / preset
    sets = ["train.steps=1", "train.progress=false", "train.eval_every=null"]
    with contextlib.redirect_stdout(io.StringIO()):  # the table is the output
        code = npkit_main(["train", preset, "--run-dir", str(run), *(f"--set={s}" for s in sets)])
    if code != 0:
        raise SystemExit(f"could not train {preset}")
    return run


def serve(runs: list[Path], max_points: int):
    """The app on a free loopback port in a thread: (url, server)."""
    import uvicorn

    from npkit.explore import free_port
    from npkit.explore.app import create_app

    port = free_port("127.0.0.1")
    server = uvicorn.Server(
        uvicorn.Config(create_app(runs, max_points), host="127.0.0.1", port=port, log_level="error")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server


def latencies(client, url: str, body: dict, requests: int) -> list[float]:
    """Milliseconds of each of ``requests`` POSTs of ``body`` to /api/predict (after warm-up)."""
    times = []
    for i in range(WARMUP + requests):
        start = time.perf_counter()
        response = client.post(f"{url}/api/predict", json={**body, "seed": i})
        response.raise_for_status()
        times.append(1000 * (time.perf_counter() - start))
    return times[WARMUP:]


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["cnp", "canp", "np", "anp", "tnpd", "convcnp"])
    parser.add_argument("--contexts", nargs="+", type=int, default=[10, 100, 1000])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--grid", type=int, default=200, help="plotted inputs per request")
    parser.add_argument("--samples", type=int, default=5, help="function draws of the second request")
    args = parser.parse_args()
    import httpx

    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        runs = [trained_once(f"gp1d-{name}", Path(tmp)) for name in args.models]
        url, server = serve(runs, max(args.contexts))
        print(f"command: python benchmarks/explore_latency.py {' '.join(sys.argv[1:])}")
        print(f"machine: {cpu_name()}, 1 torch thread; HTTP on loopback (uvicorn + httpx), {args.grid} plotted x")
        print("\n| model | context points | band median ms | band p95 ms | + samples median ms | + samples p95 ms |")
        print("|---|---|---|---|---|---|")
        with httpx.Client(timeout=120) as client:
            for run_id, name in enumerate(args.models):
                for n in args.contexts:
                    x = (torch.rand(n, generator=generator) * 4 - 2).tolist()
                    y = torch.sin(3 * torch.tensor(x)).tolist()
                    body = {"run": run_id, "context": {"x": x, "y": y}, "grid": args.grid}
                    band = latencies(client, url, {**body, "num_samples": 0}, args.requests)
                    draws = latencies(client, url, {**body, "num_samples": args.samples}, max(4, args.requests // 10))
                    print(
                        f"| {name} | {n:,} | {statistics.median(band):.1f} | {p95(band):.1f} "
                        f"| {statistics.median(draws):.1f} | {p95(draws):.1f} |",
                        flush=True,
                    )
        server.should_exit = True


if __name__ == "__main__":
    main()
