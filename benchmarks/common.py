"""What several benchmark scripts share: the machine's name and training a preset into a run folder."""

from __future__ import annotations

import platform
from pathlib import Path

from npkit.cli import main as npkit_main


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def train(preset: str, run: Path, sets: list[str]) -> None:
    """``npkit train`` the preset into ``run``: reuse a finished run, resume an interrupted one."""
    if (run / "model").is_dir():
        return
    resume = (run / "checkpoints").is_dir()
    argv = ["train", "--run-dir", str(run), "--resume"] if resume else ["train", preset, "--run-dir", str(run)]
    if npkit_main([*argv, *(f"--set={s}" for s in sets)]) != 0:
        raise SystemExit(f"training {preset} into {run} failed")
