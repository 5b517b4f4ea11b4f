"""The collapse tutorial (docs/tutorials/collapse.py) at 30 steps: `npkit diagnose RUN` and
`npkit.diagnose` give the same numbers for the same run, and the per-dimension table adds up to
the diagnostics."""

from __future__ import annotations

import math

import pytest
from test_tutorials import finite, run

VERDICTS = {"healthy", "overconfident", "collapsed: point mass", "collapsed: latent unused", "collapsed: z ignored"}


def test_collapse_cli_and_api_diagnose_agree_and_the_table_adds_up(tmp_path, capsys):
    result = run("collapse", 30, tmp_path)
    printed = capsys.readouterr().out
    diagnoses = result["diagnoses"]
    assert set(diagnoses) == {"one function, ELBO", "sine family, ELBO", "sine family, ML"}

    # The command line diagnosed the run folder's model on the same tasks and z (seed 0) as
    # npkit.diagnose on the reloaded model: a wrong sampler, seed or model would differ.
    cli, api = result["from_cli"], diagnoses["one function, ELBO"]
    assert cli["verdict"] == api["verdict"]
    for key, value in api.items():
        if key != "verdict":
            assert cli[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
    # `npkit diagnose` printed the run's numbers and verdict, on the run's own data (sine5).
    line = next(row for row in printed.splitlines() if row.startswith("lnp on sine5 (256 tasks, seed 0): "))
    assert f": {cli['verdict']}: posterior std {cli['std_context']:.4f} (context)" in line
    assert f"KL {cli['kl']:.4f} nats" in line and f"z effect {cli['z_effect']:.4f}" in line

    for name, d in diagnoses.items():
        assert d["verdict"] in VERDICTS
        assert finite(d["std_context"], d["std_full"], d["kl"], d["z_effect"], d["target_spread"], d["far_spread"])
        assert 0 <= d["active_units"] <= d["z_dim"] == 2
        assert -0.05 < d["mutual_information"] < math.log(d["num_tasks"]) + 0.05  # in [0, log N] up to MC error
        # The per-dimension table, computed from model.posterior by the tutorial, adds up to
        # diagnose's numbers: the mean std, the KL summed over dimensions, the active units.
        dims = result["per_dimension"][name]
        assert len(dims) == d["z_dim"]
        assert all(row["kl"] >= 0 for row in dims)  # a KL is never negative
        assert sum(row["kl"] for row in dims) == pytest.approx(d["kl"], rel=1e-4)
        assert sum(row["std_context"] for row in dims) / len(dims) == pytest.approx(d["std_context"], rel=1e-5)
        assert sum(row["std_full"] for row in dims) / len(dims) == pytest.approx(d["std_full"], rel=1e-5)
        assert sum(row["mean_variance"] > 0.01 for row in dims) == d["active_units"]
    assert all(s > 0 and math.isfinite(s) for s in result["spread_at_minus4"].values())
