"""The worked examples run end to end (with a small budget) and write what they promise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_stations_example_prints_both_models_and_writes_its_figure(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "stations.py"), "--steps", "40", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NPKIT_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "NP (ANP, NPRegressor)" in result.stdout and "fitted GP (RBF, per station)" in result.stdout
    assert any(p.suffix == ".png" for p in tmp_path.rglob("*"))
