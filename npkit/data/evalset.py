"""Fixed, seeded evaluation sets: batches of tasks with what generated them (the GP behind each
batch, for the oracle), saved as safetensors + JSON and cached so every model meets the same tasks.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from npkit.data.gp import TrueGP
from npkit.files import FileError, read_json, read_tensors, write_json, write_tensors
from npkit.tasks import Batch

FORMAT_VERSION = 2
_TENSOR_FIELDS = ("xc", "yc", "xt", "yt", "mask_c", "mask_t")


@dataclass
class EvalSet:
    """A fixed evaluation set: batches of tasks and, for GP tasks, what generated each batch.

    Iterating yields the batches; ``len`` and indexing work as on the list.

    Attributes:
        batches: the batches (at least one).
        gps: the generating ``TrueGP`` of each batch, for the GP oracle (None for other tasks).
    """

    batches: list[Batch]
    gps: list[TrueGP] | None = None

    def __post_init__(self) -> None:
        if not self.batches:
            raise ValueError("an evaluation set needs at least one batch")
        if self.gps is not None and len(self.gps) != len(self.batches):
            raise ValueError(f"{len(self.gps)} GPs for {len(self.batches)} batches")

    def __iter__(self) -> Iterator[Batch]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> Batch:
        return self.batches[index]


def make_eval_set(sampler, num_batches: int, batch_size: int, seed: int) -> EvalSet:
    """Draw a fixed evaluation set: the same arguments always give the same tasks.

    The batches are drawn with one ``torch.Generator`` seeded by ``seed``. Samplers with
    ``sample_with_truth`` (GP samplers) also record the generating GPs.

    Args:
        sampler (TaskSampler): the task sampler.
        num_batches: batches to draw (>= 1).
        batch_size: tasks per batch.
        seed: the seed of the generator.

    Returns:
        The evaluation set.
    """
    if num_batches < 1:
        raise ValueError(f"num_batches must be >= 1, got {num_batches}")
    generator = torch.Generator().manual_seed(seed)
    if not hasattr(sampler, "sample_with_truth"):
        return EvalSet([sampler.sample(batch_size, generator=generator) for _ in range(num_batches)])
    drawn = [sampler.sample_with_truth(batch_size, generator) for _ in range(num_batches)]
    gps = [truth for _, truth in drawn]
    return EvalSet([batch for batch, _ in drawn], gps if all(isinstance(g, TrueGP) for g in gps) else None)


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def _gp_tensors(i: int, gp: TrueGP) -> tuple[dict[str, Tensor], dict]:
    tensors = {f"{i}.gp.scale": gp.scale, f"{i}.gp.length": gp.length}
    if gp.period is not None:
        tensors[f"{i}.gp.period"] = gp.period
    noise_is_tensor = isinstance(gp.noise_std, Tensor)
    if noise_is_tensor:
        tensors[f"{i}.gp.noise_std"] = gp.noise_std
    info = {"kernel": gp.kernel, "has_period": gp.period is not None}
    info["noise_std"] = None if noise_is_tensor else float(gp.noise_std)
    return tensors, info


def save_eval_set(evalset: EvalSet, path: str | os.PathLike) -> None:
    """Write ``evalset`` to ``path`` (safetensors, keys ``"{i}.{field}"``) and its counts and
    GP settings to a JSON file beside it (``path`` with ``.json``), each written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, Tensor] = {}
    meta: dict = {"version": FORMAT_VERSION, "batches": []}
    for i, batch in enumerate(evalset.batches):
        info: dict = {"fields": [], "gp": None, "counts": [batch.batch_size, batch.num_context, batch.num_target]}
        for name in _TENSOR_FIELDS:
            value = getattr(batch, name)
            if value is not None:
                tensors[f"{i}.{name}"] = value
                info["fields"].append(name)
        if evalset.gps is not None:
            gp_tensors, info["gp"] = _gp_tensors(i, evalset.gps[i])
            tensors.update(gp_tensors)
        meta["batches"].append(info)
    write_json(_sidecar(path), meta)
    write_tensors(path, tensors)


def load_eval_set(path: str | os.PathLike) -> EvalSet:
    """Read a set written by `save_eval_set` (no pickle involved); a missing, corrupt or
    inconsistent file raises ``FileError`` naming it."""
    path = Path(path)
    meta = read_json(_sidecar(path))
    if not isinstance(meta, dict) or meta.get("version") != FORMAT_VERSION:
        raise FileError(f"{_sidecar(path)}: not an npkit evaluation set of format version {FORMAT_VERSION}")
    tensors = read_tensors(path)
    batches, gps = [], []
    try:
        for i, info in enumerate(meta["batches"]):
            batch = Batch(**{name: tensors[f"{i}.{name}"] for name in info["fields"]})
            if [batch.batch_size, batch.num_context, batch.num_target] != info["counts"]:
                raise FileError(f"{path}: batch {i} does not match the counts recorded beside it")
            batches.append(batch)
            g = info["gp"]
            if g is not None:
                noise = g["noise_std"] if g["noise_std"] is not None else tensors[f"{i}.gp.noise_std"]
                period = tensors[f"{i}.gp.period"] if g["has_period"] else None
                gps.append(TrueGP(g["kernel"], tensors[f"{i}.gp.scale"], tensors[f"{i}.gp.length"], period, noise))
    except (KeyError, TypeError, ValueError) as err:
        if isinstance(err, FileError):
            raise
        raise FileError(f"{path}: inconsistent evaluation set ({type(err).__name__}: {err})") from err
    return EvalSet(batches, gps or None)


def cached_eval_set(
    sampler,
    num_batches: int,
    batch_size: int,
    seed: int,
    cache_dir: str | os.PathLike | None = None,
) -> EvalSet:
    """`make_eval_set`, cached on disk, so every model is evaluated on the same tasks.

    The file name holds the arguments and a hash of the sampler's full settings (its repr), so
    a sampler with other settings never reuses a stale set. A corrupt cache file is rebuilt
    with a warning; an unwritable cache folder is skipped with a warning.

    Args:
        sampler (TaskSampler): the task sampler.
        num_batches: batches to draw (>= 1).
        batch_size: tasks per batch.
        seed: the seed of the generator.
        cache_dir: the cache folder (None: ``$NPKIT_CACHE``, else ``~/.cache/npkit``).

    Returns:
        The evaluation set, read from the cache or drawn and written to it.
    """
    digest = hashlib.sha256(repr(sampler).encode()).hexdigest()[:10]
    label = type(sampler).__name__ + (f"-{sampler.kernel}" if hasattr(sampler, "kernel") else "")
    name = f"{label}_{num_batches}x{batch_size}_seed{seed}_{digest}.safetensors"
    if cache_dir is None:
        cache_dir = os.environ.get("NPKIT_CACHE") or Path.home() / ".cache" / "npkit"
    path = Path(cache_dir) / name
    if path.exists() and _sidecar(path).exists():
        try:
            return load_eval_set(path)
        except FileError as err:
            warnings.warn(f"rebuilding the evaluation cache: {err}", stacklevel=2)
    evalset = make_eval_set(sampler, num_batches, batch_size, seed)
    try:
        save_eval_set(evalset, path)
    except OSError as err:
        where = err.filename or cache_dir
        warnings.warn(f"not caching the evaluation set: cannot write {where} ({err.strerror})", stacklevel=2)
    return evalset
