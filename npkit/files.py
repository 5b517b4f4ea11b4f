"""Safe files: safetensors for tensors, JSON for everything else, written atomically.

Every write goes to a temporary file in the same folder (named with the writer's pid, so
concurrent writers never share one) and is then renamed over the target, so a reader or a
process killed mid-write never sees half a file. Nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor


class FileError(ValueError):
    """A file is missing, corrupt, or not what was expected; the message names it."""


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp)`` on a temporary path beside ``path``, then rename it to ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, sort_keys=True)))


def write_tensors(path: Path, tensors: dict[str, Tensor]) -> None:
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}  # no shared storage
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp)))


def read_json(path: Path, error: type[FileError] = FileError) -> Any:
    """The JSON value in ``path``; ``error`` (a FileError) names the file when it is missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise error(f"missing file {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise error(f"corrupt JSON in {path}: {err}") from err


def read_tensors(path: Path, error: type[FileError] = FileError) -> dict[str, Tensor]:
    """The tensors in the safetensors file ``path`` (on the CPU); ``error`` as in `read_json`."""
    path = Path(path)
    if not path.is_file():
        raise error(f"missing file {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise error(f"corrupt safetensors file {path}: {err}") from err
