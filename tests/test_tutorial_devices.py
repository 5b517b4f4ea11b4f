"""The devices tutorial at 30 steps: one configuration trained in one process, in two DDP
processes (gloo, a subprocess), killed by SIGTERM and resumed, and in bf16-mixed."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

from test_tutorials import finite, run


def test_devices_ddp_resume_and_bf16_runs_behave_as_the_page_says(tmp_path):
    result = run("devices", 30, tmp_path)
    shutil.rmtree(Path(result["run_dirs"]["one"]).parent)  # the tutorial's temporary run folders
    runs = result["runs"]
    assert {name: row["steps"] for name, row in runs.items()} == dict.fromkeys(("one", "ddp", "resumed", "bf16"), 30)

    # The SIGTERM stopped the run part way (a checkpoint saved there), and the resumed run ended
    # bit-identical to the uninterrupted one: catches a resume that loses Adam's state, the
    # schedule or the (seed, step, rank) stream, and a signal that is not turned into a checkpoint.
    assert 0 < result["stopped_at"] < 30
    assert result["resume_diff"] == 0.0
    assert runs["resumed"]["first_loss"] == runs["one"]["first_loss"]

    # Under DDP the logged loss is the mean over the ranks, and rank 0 draws the batch the single
    # process draws (same seed, step and rank 0) from the same weights: had rank 1 drawn the same
    # batch (ranks seeded alike), the DDP run's first loss would equal the single run's exactly.
    assert runs["ddp"]["first_loss"] != runs["one"]["first_loss"]
    assert abs(runs["ddp"]["first_loss"] - runs["one"]["first_loss"]) < 0.5
    assert runs["ddp"]["tasks"] == 2 * runs["one"]["tasks"]
    assert "train.devices: saved 2, now 1" in result["refused"]  # a 2-process run is not resumed on 1

    # bf16-mixed: the same first batch and weights give a close but not equal loss (a precision
    # setting that was ignored would give the float32 loss exactly), and the weights drift apart.
    one, bf16 = runs["one"]["first_loss"], runs["bf16"]["first_loss"]
    assert bf16 != one and abs(bf16 - one) < 0.01 * abs(one)
    assert result["bf16_diff"] > 0

    assert finite(*result["tar_ll"].values(), result["oracle_tar_ll"])
    assert all(math.isfinite(row["eval_tar_ll"]) for row in runs.values())
    assert result["oracle_tar_ll"] > max(result["tar_ll"].values())
