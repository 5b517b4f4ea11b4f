"""``npkit explore``: condition trained models by clicking, in the browser (the ``explore`` extra).

    npkit explore runs/gp1d/tnpd runs/gp1d/anp        # prints http://127.0.0.1:<free port>/

A local web server (Starlette on uvicorn) serves a page whose JavaScript and CSS ship in this
package, so it works offline. See ``npkit.explore.app`` for the API.
"""

from __future__ import annotations

import socket


def free_port(host: str) -> int:
    """A port on ``host`` that nothing listens on now."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def serve(run_dirs: list[str], host: str = "127.0.0.1", port: int | None = None, max_points: int = 1000) -> None:
    """Serve ``run_dirs`` on ``host``:``port`` (a free one by default) until Ctrl-C."""
    try:
        import uvicorn

        from npkit.explore.app import create_app
    except ImportError as err:
        raise ValueError(
            f"npkit explore needs the explore extra ({err.name} is missing): pip install 'npkit[explore]'"
        ) from None
    app = create_app(run_dirs, max_points=max_points)
    port = free_port(host) if port is None else port
    shown = f"[{host}]" if ":" in host else host
    print(f"npkit explore: serving {len(run_dirs)} run(s) on http://{shown}:{port}/ (Ctrl-C stops)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
