"""What several benchmark scripts share: the machine's name, the process's memory, training a
preset into a run folder and the mean ± standard error of a result over seeds."""

from __future__ import annotations

import math
import platform
import resource
import statistics
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


def memory_mb(field: str = "VmRSS") -> float:
    """This process's resident memory in MB: ``VmRSS`` now, or ``VmHWM`` its peak since it started
    or since :func:`reset_peak_memory` (``/proc/self/status``, Linux). Unlike ``ru_maxrss``, the
    peak is this process's own: a child's ``ru_maxrss`` starts at its parent's peak (the memory
    image it was spawned from). Elsewhere, ``ru_maxrss`` for both."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_memory() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def train(preset: str, run: Path, sets: list[str]) -> None:
    """``npkit train`` the preset into ``run``: reuse a finished run, resume an interrupted one."""
    if (run / "model").is_dir():
        return
    resume = (run / "checkpoints").is_dir()
    argv = ["train", "--run-dir", str(run), "--resume"] if resume else ["train", preset, "--run-dir", str(run)]
    if npkit_main([*argv, *(f"--set={s}" for s in sets)]) != 0:
        raise SystemExit(f"training {preset} into {run} failed")


def mean_se(values: list[float]) -> str:
    """'mean ± standard error' of ``values`` (e.g. one result per training seed; nan for one)."""
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else math.nan
    return f"{statistics.fmean(values):.3f} ± {se:.3f}"
