"""The ``npkit explore`` web app (Starlette): a page and a small JSON API over the served runs.

    GET  /                the page (HTML, JS and CSS ship in npkit/explore/static: no CDN)
    GET  /api/runs        the runs: id, family, kind (function | image), dimensions, ranges
    POST /api/task        {"run", "seed"}: a fresh task and its hidden true curve (1D runs)
    POST /api/predict     {"run", "seed", "context": {"x", "y"}, "grid", "num_samples"} (1D runs)
    POST /api/image       {"run", "index"}: a test image (image runs)
    POST /api/complete    {"run", "index", "revealed", "num_samples", "seed"} (image runs)

Runs are named by their index in the list the server started with; no part of a request reaches
the file system. A bad request is answered 400 with ``{"error": ..., "field": ...}``.
"""

from __future__ import annotations

import json
import math
from importlib.resources import files
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from npkit.explore.served import ServedRun

STATIC = Path(str(files("npkit.explore") / "static"))
MAX_GRID = 2000
MAX_SAMPLES = 50
MAX_BODY = 1_000_000  # bytes of one request


class BadRequest(ValueError):
    """A request field that is missing or wrong: answered 400 naming it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def integer(payload: dict, name: str, low: int, high: int, default: int | None = None) -> int:
    """``payload[name]``: an integer in [low, high] (``default`` when absent, if given)."""
    if name not in payload:
        if default is None:
            raise BadRequest(name, f"{name} is required")
        return default
    value = payload[name]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadRequest(name, f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return value


def numbers(values, name: str, width: int) -> list[float]:
    """A list of finite numbers, each given as a number or (for ``width`` 1) a list of one."""
    if not isinstance(values, list):
        raise BadRequest(name, f"{name} must be a list of numbers, got {type(values).__name__}")
    out = []
    for i, value in enumerate(values):
        if isinstance(value, list):
            if len(value) != width:
                raise BadRequest(
                    name, f"{name}[{i}] has {len(value)} numbers, but the model has x_dim = y_dim = {width}"
                )
            value = value[0]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise BadRequest(name, f"{name}[{i}] must be a finite number, got {value!r}")
        out.append(float(value))
    return out


class Explorer:
    """The served runs and the request handlers."""

    def __init__(self, runs: list[ServedRun], max_points: int) -> None:
        self.runs = runs
        self.max_points = max_points

    async def payload(self, request: Request) -> dict:
        body = await request.body()
        if len(body) > MAX_BODY:
            raise BadRequest("body", f"the request body has {len(body)} bytes; the limit is {MAX_BODY}")
        try:
            payload = json.loads(body)  # NaN and Infinity parse; the field checks refuse them
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise BadRequest("body", f"the request body is not valid JSON ({err})") from None
        if not isinstance(payload, dict):
            raise BadRequest("body", "the request body must be a JSON object")
        return payload

    def run(self, payload: dict, kind: str) -> ServedRun:
        run = self.runs[integer(payload, "run", 0, len(self.runs) - 1)]
        if run.kind != kind:
            raise BadRequest("run", f"run {run.index} ({run.run_dir.name}) is a {run.kind} run, not a {kind} run")
        return run

    def context(self, payload: dict) -> tuple[list[float], list[float]]:
        context = payload.get("context")
        if not isinstance(context, dict) or "x" not in context or "y" not in context:
            raise BadRequest("context", 'context must be an object {"x": [...], "y": [...]}')
        x, y = numbers(context["x"], "context.x", 1), numbers(context["y"], "context.y", 1)
        if len(x) != len(y):
            raise BadRequest("context", f"context.x has {len(x)} points but context.y has {len(y)}")
        if len(x) > self.max_points:
            raise BadRequest("context", f"context has {len(x)} points; this server takes at most {self.max_points}")
        return x, y

    async def runs_endpoint(self, request: Request) -> JSONResponse:
        return JSONResponse({"runs": [run.describe() for run in self.runs], "max_points": self.max_points})

    async def task_endpoint(self, request: Request) -> JSONResponse:
        payload = await self.payload(request)
        run = self.run(payload, "function")
        seed = integer(payload, "seed", 0, 2**31 - 1)
        return JSONResponse(run.task(seed, integer(payload, "grid", 2, MAX_GRID, 200)))

    async def predict_endpoint(self, request: Request) -> JSONResponse:
        payload = await self.payload(request)
        run = self.run(payload, "function")
        seed = integer(payload, "seed", 0, 2**31 - 1)
        xc, yc = self.context(payload)
        grid = integer(payload, "grid", 2, MAX_GRID, 200)
        samples = integer(payload, "num_samples", 0, MAX_SAMPLES, 10)
        return JSONResponse(await run_in_threadpool(run.predict, seed, xc, yc, grid, samples))

    async def image_endpoint(self, request: Request) -> JSONResponse:
        payload = await self.payload(request)
        run = self.run(payload, "image")
        return JSONResponse(run.image(integer(payload, "index", 0, len(run.sampler.images) - 1)))

    async def complete_endpoint(self, request: Request) -> JSONResponse:
        payload = await self.payload(request)
        run = self.run(payload, "image")
        index = integer(payload, "index", 0, len(run.sampler.images) - 1)
        height, width = run.sampler.shape
        revealed = payload.get("revealed")
        if not isinstance(revealed, list):
            raise BadRequest("revealed", "revealed must be a list of pixel indices")
        for i, pixel in enumerate(revealed):
            if isinstance(pixel, bool) or not isinstance(pixel, int) or not 0 <= pixel < height * width:
                raise BadRequest(
                    "revealed", f"revealed[{i}] must be a pixel index in [0, {height * width}), got {pixel!r}"
                )
        if len(set(revealed)) > self.max_points:
            raise BadRequest(
                "revealed", f"{len(set(revealed))} revealed pixels; this server takes at most {self.max_points}"
            )
        samples = integer(payload, "num_samples", 0, MAX_SAMPLES, 3)
        seed = integer(payload, "seed", 0, 2**31 - 1, 0)
        result = await run_in_threadpool(run.complete, index, sorted(set(revealed)), samples, seed)
        return JSONResponse(result)


async def bad_request(request: Request, err: BadRequest) -> JSONResponse:
    return JSONResponse({"error": str(err), "field": err.field}, status_code=400)


async def http_error(request: Request, err: HTTPException) -> JSONResponse:
    return JSONResponse({"error": err.detail, "field": None}, status_code=err.status_code)


def create_app(run_dirs: list[str | Path], max_points: int = 1000) -> Starlette:
    """The app serving ``run_dirs`` (read once here; every one must be an npkit run folder)."""
    if not run_dirs:
        raise ValueError("npkit explore needs at least one run folder")
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1, got {max_points}")
    explorer = Explorer([ServedRun(path, i) for i, path in enumerate(run_dirs)], max_points)
    index = lambda request: FileResponse(STATIC / "index.html")
    routes = [
        Route("/", index),
        Route("/api/runs", explorer.runs_endpoint),
        Route("/api/task", explorer.task_endpoint, methods=["POST"]),
        Route("/api/predict", explorer.predict_endpoint, methods=["POST"]),
        Route("/api/image", explorer.image_endpoint, methods=["POST"]),
        Route("/api/complete", explorer.complete_endpoint, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={BadRequest: bad_request, HTTPException: http_error})
    app.state.explorer = explorer
    return app
