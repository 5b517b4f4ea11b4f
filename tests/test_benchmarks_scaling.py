"""benchmarks/scaling.py measures and tabulates on tiny sizes (its full run is benchmarks/results/scaling.txt)."""

from __future__ import annotations

import math

import pytest
from conftest import benchmark_script

MODELS = ["cnp", "anp", "tnpd"]


@pytest.fixture(scope="module")
def scaling():
    with benchmark_script("scaling") as module:
        yield module


def test_table_has_a_row_per_size_and_two_positive_columns_per_model(scaling):
    sizes = [4, 8]
    results = {(m, n): scaling.measure(m, 4, n, steps=2, warmup=1, batch_size=2) for m in MODELS for n in sizes}
    for r in results.values():
        assert r["ms"] > 0 and math.isfinite(r["mb"]) and r["mb"] >= 0  # in-process the increment may read 0
    lines = scaling.report(results, MODELS, sizes, "target", 4, batch_size=2)
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    assert head == ["Nt", "steps", *(f"{m} {c}" for m in MODELS for c in ("ms/step", "peak MB"))]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:4]]
    assert [row[0] for row in rows] == ["4", "8"] and all(row[1] == "2" for row in rows)
    assert all(float(c) >= 0 for row in rows for c in row[2:]) and all(float(c) > 0 for row in rows for c in row[2::2])
    notes = [line for line in lines if line.startswith("- ")]
    assert [n.split(":")[0] for n in notes] == [f"- {m}" for m in MODELS]
    # ANP: iwae with 4 samples scores context ∪ targets: chunks above 2^23 // (4 x 2 x 128) points
    assert "Nt > 8,188" in notes[1] and "time ~ Nt^" in notes[1]


def test_a_worker_process_reports_a_positive_peak_increment(scaling):
    r = scaling.run_worker("cnp", 4, 8, steps=1, warmup=1, batch_size=2)
    assert "error" not in r, r
    assert r["ms"] > 0 and r["mb"] > 0 and r["steps"] == 1


def test_fewer_steps_beyond_1024_points_and_growth_exponents(scaling):
    assert [scaling.steps_at(n, 10) for n in (1024, 2048, 4096, 8192)] == [10, 5, 3, 3]
    assert scaling.slope([1, 2, 4], [3, 12, 48]) == pytest.approx(2.0)
    names = ["flat", "linear", "between linear and quadratic", "quadratic"]
    assert [scaling.growth(e) for e in (0.3, 1.0, 1.5, 2.0)] == names
    assert scaling.slope([1], [1]) is None
