"""Image datasets as float32 tensors ``[N, C, H, W]`` with values in ``[0, 1]``.

- `load_digits`: scikit-learn's bundled 8x8 digits (no download).
- `load_mnist`: the four standard MNIST IDX files, raw or gzipped, parsed and size-checked
  here; ``download=True`` fetches missing ones from public mirrors and checks their MD5.
- `load_celeba`: CelebA's aligned JPEGs with the official train/valid/test partition.
- `load_image_folder`: every PNG/JPEG under a folder.

Image files are read with Pillow: centre-cropped to a square, then resized with
``Image.Resampling.BILINEAR`` (antialiased when shrinking, like torchvision's default). A missing,
truncated or unreadable file raises `npkit.files.FileError` naming it.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import urllib.request
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from npkit.files import FileError, atomic_write

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
PROGRESS_MIN_FILES = 1000  # show a progress bar (progress=None) from this many files on

# ----------------------------------------------------------------------------- digits


def load_digits() -> tuple[Tensor, Tensor]:
    """scikit-learn's 8x8 handwritten digits: images ``[1797, 1, 8, 8]`` (values 0..16 divided
    by 16) and labels ``[1797]`` int64. Ships with scikit-learn; nothing is downloaded."""
    from sklearn.datasets import load_digits as sk_load_digits

    digits = sk_load_digits()
    images = torch.from_numpy(np.asarray(digits.images, dtype=np.float32) / 16.0).unsqueeze(1)
    labels = torch.from_numpy(np.asarray(digits.target, dtype=np.int64))
    return images, labels


# ----------------------------------------------------------------------------- MNIST

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# MD5 of the gzipped files, as published with the dataset.
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension


def data_root(subfolder: str, root: str | os.PathLike | None = None) -> Path:
    """``root`` if given, else ``$NPKIT_DATA/<subfolder>`` when that folder exists, else ``$NPKIT_DATA``."""
    if root is not None:
        return Path(root)
    env = os.environ.get("NPKIT_DATA")
    if not env:
        raise ValueError(f"no data folder for {subfolder}: pass root=... or set the NPKIT_DATA environment variable")
    sub = Path(env) / subfolder
    return sub if sub.is_dir() else Path(env)


def load_mnist(
    root: str | os.PathLike | None = None, split: str = "train", download: bool = False
) -> tuple[Tensor, Tensor]:
    """MNIST from its IDX files: images ``[N, 1, 28, 28]`` (bytes / 255) and labels ``[N]`` int64;
    N = 60000 for ``split="train"``, 10000 for ``"test"``.

    Looks in ``root`` (default ``$NPKIT_DATA/mnist``, else ``$NPKIT_DATA``) for
    ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and
    ``t10k-labels-idx1-ubyte``, each raw or with ``.gz``. With ``download=True`` a missing file is
    fetched (gzipped) from `MNIST_MIRRORS`, checked against `MNIST_MD5` and written
    atomically. Any Fashion-MNIST-style set with the same file names loads the same way.
    """
    if split not in MNIST_FILES:
        raise ValueError(f"unknown MNIST split {split!r}; expected one of {sorted(MNIST_FILES)}")
    folder = data_root("mnist", root)
    image_name, label_name = MNIST_FILES[split]
    image_path = _find_or_download(folder, image_name, download)
    label_path = _find_or_download(folder, label_name, download)
    images = read_idx(image_path, IDX_IMAGES_MAGIC)
    labels = read_idx(label_path, IDX_LABELS_MAGIC)
    if len(images) != len(labels):
        raise FileError(f"{image_path} holds {len(images)} images but {label_path} holds {len(labels)} labels")
    x = torch.from_numpy(images).unsqueeze(1).float().div_(255.0)
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y


def read_idx(path: str | os.PathLike, magic: int) -> np.ndarray:
    """The uint8 array in the IDX file ``path`` (raw, or gzipped when it ends in ``.gz``).

    ``magic`` is the expected header (0x00000803: images [N, H, W]; 0x00000801: labels [N]);
    the file must have exactly the size its header announces. Raises FileError naming the file.
    """
    path = Path(path)
    gz = path.suffix == ".gz"
    try:
        data = gzip.decompress(path.read_bytes()) if gz else path.read_bytes()
    except FileNotFoundError as err:
        raise FileError(f"missing file {path}") from err
    except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
        raise FileError(f"{path}: corrupt gzip file: {err}") from err
    after = " after decompression" if gz else ""
    kind = {IDX_IMAGES_MAGIC: "IDX image file", IDX_LABELS_MAGIC: "IDX label file"}.get(magic, "IDX file")
    if len(data) < 4:
        raise FileError(f"{path}: truncated: expected an IDX header of at least 4 bytes{after}, got {len(data)}")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise FileError(f"{path}: not an {kind} (magic 0x{found:08x}; expected 0x{magic:08x})")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise FileError(f"{path}: truncated: expected an IDX header of {header} bytes{after}, got {len(data)}")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "trailing data"
        raise FileError(f"{path}: {what}: expected {expected} bytes{after}, got {len(data)} (shape {list(shape)})")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape).copy()  # writable, for torch


def _find_or_download(folder: Path, name: str, download: bool) -> Path:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    if not download:
        raise FileError(
            f"missing file {folder / name} (or {name}.gz): put the MNIST IDX files in {folder} or pass download=True"
        )
    return download_checked(f"{name}.gz", folder, MNIST_MIRRORS, MNIST_MD5[f"{name}.gz"])


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.read()


def download_checked(name: str, folder: Path, mirrors: Sequence[str], md5: str) -> Path:
    """Fetch ``name`` from the first mirror that serves it with MD5 ``md5``; write it atomically
    to ``folder / name``. Raises FileError (listing every mirror's failure) if none does."""
    folder = Path(folder)
    failures = []
    for mirror in mirrors:
        url = mirror + name
        try:
            data = _fetch(url)
        except OSError as err:  # urllib.error.URLError is an OSError
            failures.append(f"{url}: {err}")
            continue
        digest = hashlib.md5(data).hexdigest()
        if digest != md5:
            failures.append(f"{url}: MD5 mismatch: got {digest}, expected {md5}")
            continue
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        atomic_write(path, lambda tmp, data=data: tmp.write_bytes(data))
        return path
    raise FileError(f"could not download {folder / name}:\n  " + "\n  ".join(failures))


# ----------------------------------------------------------------------------- image files


def _open_square(path: Path, size: int, mode: str, crop: int | None = None) -> np.ndarray:
    """The image at ``path`` as uint8 ``[size, size, C]``: converted to ``mode``, centre-cropped to a
    ``crop``-sided square (default: the largest one) and resized with bilinear filtering."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img = img.convert(mode)  # decodes the whole file: truncated data fails here
    except FileNotFoundError as err:
        raise FileError(f"missing file {path}") from err
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise FileError(f"{path}: unreadable image: {err}") from err
    w, h = img.size
    side = min(w, h) if crop is None else crop
    if side > min(w, h):
        raise FileError(f"{path}: image of {w}x{h} is smaller than the {side}x{side} centre crop")
    left, top = (w - side) // 2, (h - side) // 2
    img = img.crop((left, top, left + side, top + side))
    if side != size:
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    array = np.asarray(img, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def _load_squares(paths: Sequence[Path], size: int, mode: str, crop: int | None, progress: bool | None, desc: str):
    channels = {"RGB": 3, "L": 1}[mode]
    out = np.empty((len(paths), size, size, channels), dtype=np.uint8)  # uint8 until the end: 4x less memory
    show = len(paths) >= PROGRESS_MIN_FILES if progress is None else progress
    for i, path in enumerate(tqdm(paths, desc=desc, disable=not show, unit="img")):
        out[i] = _open_square(path, size, mode, crop)
    return torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255.0).contiguous()


def _check_size_mode(size: int, mode: str) -> None:
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    if mode not in ("RGB", "L"):
        raise ValueError(f"mode must be 'RGB' (3 channels) or 'L' (1 channel), got {mode!r}")


CELEBA_SPLITS = {"train": 0, "valid": 1, "test": 2}


def load_celeba(
    root: str | os.PathLike, split: str = "train", size: int = 32, crop: int = 178, progress: bool | None = None
) -> Tensor:
    """CelebA faces as RGB images ``[N, 3, size, size]`` (N = 162770 / 19867 / 19962 for
    ``split`` = "train" / "valid" / "test" in the full set).

    ``root`` holds ``img_align_celeba/`` (000001.jpg ... , 178x218) and ``list_eval_partition.txt``
    (lines ``000001.jpg 0``; 0 train, 1 valid, 2 test). Each image is centre-cropped to a
    ``crop`` x ``crop`` square (default 178: the full width, rows 20..197; 140 is the tighter
    face crop also in use), then resized to ``size`` x ``size`` with bilinear filtering.
    Memory: the result takes 4 * 3 * size^2 bytes per image (162770 train images at size 64: 8.0 GB).
    """
    if split not in CELEBA_SPLITS:
        raise ValueError(f"unknown CelebA split {split!r}; expected one of {sorted(CELEBA_SPLITS)}")
    _check_size_mode(size, "RGB")
    root = Path(root)
    folder = root / "img_align_celeba"
    partition = root / "list_eval_partition.txt"
    if not folder.is_dir():
        raise FileError(f"missing folder {folder} (CelebA's aligned JPEGs)")
    if not partition.is_file():
        raise FileError(f"missing file {partition} (CelebA's train/valid/test partition)")
    wanted = CELEBA_SPLITS[split]
    names = []
    for number, line in enumerate(partition.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise FileError(f"{partition}: line {number} is {line!r}; expected '<image>.jpg <0|1|2>'")
        if int(fields[1]) == wanted:
            names.append(fields[0])
    if not names:
        raise FileError(f"{partition}: no images in the {split!r} split")
    return _load_squares([folder / n for n in names], size, "RGB", crop, progress, f"celeba[{split}]")


def load_image_folder(
    root: str | os.PathLike, size: int = 32, mode: str = "RGB", progress: bool | None = None
) -> Tensor:
    """Every PNG/JPEG under ``root`` (recursive, extensions in any case, sorted by relative path)
    as ``[N, C, size, size]``: C = 3 for ``mode="RGB"``, 1 for ``mode="L"`` (greyscale).
    Each image is centre-cropped to its largest square, then resized with bilinear filtering."""
    _check_size_mode(size, mode)
    root = Path(root)
    if not root.is_dir():
        raise FileError(f"missing folder {root}")
    paths = sorted(
        (p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
        key=lambda p: p.relative_to(root).as_posix(),
    )
    if not paths:
        raise FileError(f"no images ({', '.join(IMAGE_SUFFIXES)}, any case) under {root}")
    return _load_squares(paths, size, mode, None, progress, f"images[{root.name}]")
