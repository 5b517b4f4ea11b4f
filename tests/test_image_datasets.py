"""Specification of npkit.data.image_datasets: image loaders giving float32 [N, C, H, W] in [0, 1].
Every file is built here in tmp_path; nothing touches the network (downloads use file:// mirrors)."""

import gzip
import hashlib
import re

import numpy as np
import pytest
import torch
from PIL import Image

from npkit.data import image_datasets as imd
from npkit.data.image_datasets import load_celeba, load_digits, load_image_folder, load_mnist
from npkit.files import FileError

# --------------------------------------------------------------------------- digits


def test_load_digits_gives_the_sklearn_digits_scaled_to_unit_range():
    from sklearn.datasets import load_digits as sk_load_digits

    images, labels = load_digits()
    assert images.shape == (1797, 1, 8, 8) and images.dtype == torch.float32
    assert labels.shape == (1797,) and labels.dtype == torch.int64
    assert images.min() == 0 and images.max() == 1
    sk = sk_load_digits()
    assert torch.equal(images[:, 0] * 16, torch.from_numpy(sk.images).float())
    assert torch.equal(labels, torch.from_numpy(sk.target).long())


# --------------------------------------------------------------------------- MNIST IDX


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(path, data: bytes, gz: bool):
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def make_mnist(folder, split="train", n=5, gz=False, seed=0):
    """Tiny IDX files with MNIST's names; returns (images uint8 [n, 28, 28], labels uint8 [n])."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    img_name, lab_name = imd.MNIST_FILES[split]
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / img_name, idx_bytes(images, 0x803), gz)
    write_idx(folder / lab_name, idx_bytes(labels, 0x801), gz)
    return images, labels


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_load_mnist_reads_idx_files_pixel_for_pixel(tmp_path, gz, split):
    images, labels = make_mnist(tmp_path, split, n=5, gz=gz)
    x, y = load_mnist(tmp_path, split)
    assert x.shape == (5, 1, 28, 28) and x.dtype == torch.float32
    assert y.dtype == torch.int64
    assert torch.equal((x[:, 0] * 255).round().to(torch.uint8), torch.from_numpy(images))
    assert torch.equal(y, torch.from_numpy(labels).long())
    assert 0 <= x.min() and x.max() <= 1


def test_load_mnist_splits_read_their_own_files(tmp_path):
    make_mnist(tmp_path, "train", n=7, seed=1)
    make_mnist(tmp_path, "test", n=3, seed=2)
    assert len(load_mnist(tmp_path, "train")[0]) == 7
    assert len(load_mnist(tmp_path, "test")[0]) == 3
    with pytest.raises(ValueError, match="unknown MNIST split"):
        load_mnist(tmp_path, "valid")


@pytest.mark.parametrize("sub", ["mnist", ""])
def test_load_mnist_default_root_is_npkit_data_mnist_else_npkit_data(tmp_path, monkeypatch, sub):
    make_mnist(tmp_path / sub if sub else tmp_path, n=4)
    monkeypatch.setenv("NPKIT_DATA", str(tmp_path))
    assert load_mnist()[0].shape == (4, 1, 28, 28)


def test_load_mnist_without_root_or_npkit_data_says_how_to_fix(monkeypatch):
    monkeypatch.delenv("NPKIT_DATA", raising=False)
    with pytest.raises(ValueError, match="pass root=.*NPKIT_DATA"):
        load_mnist()


def test_missing_idx_file_is_named_with_the_download_hint(tmp_path):
    make_mnist(tmp_path, n=3)
    (tmp_path / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(FileError, match=re.escape(str(tmp_path / "train-labels-idx1-ubyte")) + ".*download=True"):
        load_mnist(tmp_path)


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("which", ["images", "labels"])
def test_truncated_idx_file_is_named_with_expected_and_actual_size(tmp_path, gz, which):
    images, labels = make_mnist(tmp_path, n=5)
    name = "train-images-idx3-ubyte" if which == "images" else "train-labels-idx1-ubyte"
    data = idx_bytes(images, 0x803) if which == "images" else idx_bytes(labels, 0x801)
    (tmp_path / name).unlink()
    path = write_idx(tmp_path / name, data[:-3], gz)
    after = " after decompression" if gz else ""
    message = f"{path}: truncated: expected {len(data)} bytes{after}"
    with pytest.raises(FileError, match=re.escape(f"{message}, got {len(data) - 3} (shape")):
        load_mnist(tmp_path)


def test_idx_file_shorter_than_its_header_is_truncated(tmp_path):
    make_mnist(tmp_path, n=2)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03\x00\x00")
    with pytest.raises(FileError, match=re.escape(f"{tmp_path / 'train-images-idx3-ubyte'}: truncated")):
        load_mnist(tmp_path)


def test_idx_file_with_trailing_bytes_is_rejected(tmp_path):
    images, _ = make_mnist(tmp_path, n=2)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(idx_bytes(images, 0x803) + b"\x00")
    with pytest.raises(FileError, match="train-images-idx3-ubyte: trailing data"):
        load_mnist(tmp_path)


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_wrong_magic_is_named_with_found_and_expected_magic(tmp_path, gz):
    _, labels = make_mnist(tmp_path, n=5)
    (tmp_path / "train-images-idx3-ubyte").unlink()
    path = write_idx(tmp_path / "train-images-idx3-ubyte", idx_bytes(labels, 0x801), gz)  # a label file
    message = f"{path}: not an IDX image file (magic 0x00000801; expected 0x00000803)"
    with pytest.raises(FileError, match=re.escape(message)):
        load_mnist(tmp_path)


def test_corrupt_gzip_is_named(tmp_path):
    make_mnist(tmp_path, n=2)
    (tmp_path / "train-labels-idx1-ubyte").unlink()
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(b"this is not gzip")
    with pytest.raises(FileError, match=re.escape(str(tmp_path / "train-labels-idx1-ubyte.gz")) + ": corrupt gzip"):
        load_mnist(tmp_path)


def test_image_and_label_counts_must_agree(tmp_path):
    make_mnist(tmp_path, n=4)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(3, np.uint8), 0x801))
    with pytest.raises(FileError, match="holds 4 images but .*train-labels-idx1-ubyte holds 3 labels"):
        load_mnist(tmp_path)


# --------------------------------------------------------------------------- MNIST download (file:// only)


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A local file:// mirror of tiny gzipped MNIST files, with their MD5s as the published ones."""
    src = tmp_path / "mirror"
    images, labels = make_mnist(src, n=6, gz=True)
    md5 = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in src.iterdir()}
    monkeypatch.setattr(imd, "MNIST_MD5", {**imd.MNIST_MD5, **md5})
    monkeypatch.setattr(imd, "MNIST_MIRRORS", (src.as_uri() + "/",))
    return src, images, labels


def test_download_fetches_missing_files_verifies_md5_and_leaves_no_temporaries(tmp_path, mirror):
    src, images, labels = mirror
    dest = tmp_path / "data" / "mnist"
    x, y = load_mnist(dest, "train", download=True)
    assert torch.equal((x[:, 0] * 255).round().to(torch.uint8), torch.from_numpy(images))
    assert torch.equal(y, torch.from_numpy(labels).long())
    assert sorted(p.name for p in dest.iterdir()) == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    assert (dest / "train-images-idx3-ubyte.gz").read_bytes() == (src / "train-images-idx3-ubyte.gz").read_bytes()


def test_download_skips_a_mirror_with_a_bad_checksum_or_no_file(tmp_path, mirror, monkeypatch):
    src, images, _ = mirror
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "train-images-idx3-ubyte.gz").write_bytes(b"tampered")  # labels absent from this mirror
    empty = tmp_path / "nothing-here"
    monkeypatch.setattr(imd, "MNIST_MIRRORS", (empty.as_uri() + "/", bad.as_uri() + "/", src.as_uri() + "/"))
    x, _ = load_mnist(tmp_path / "dest", download=True)
    assert torch.equal((x[:, 0] * 255).round().to(torch.uint8), torch.from_numpy(images))


def test_download_with_only_bad_checksums_writes_nothing_and_says_why(tmp_path, mirror, monkeypatch):
    src, _, _ = mirror
    monkeypatch.setattr(imd, "MNIST_MD5", {k: "0" * 32 for k in imd.MNIST_MD5})
    dest = tmp_path / "dest"
    with pytest.raises(FileError, match=r"could not download .*train-images-idx3-ubyte\.gz(.|\n)*MD5 mismatch"):
        load_mnist(dest, download=True)
    assert not dest.exists() or list(dest.iterdir()) == []


def test_download_is_not_attempted_for_files_already_present(tmp_path, monkeypatch):
    make_mnist(tmp_path, n=2)

    def no_fetch(url):
        raise AssertionError(f"fetched {url}")

    monkeypatch.setattr(imd, "_fetch", no_fetch)
    assert load_mnist(tmp_path, download=True)[0].shape == (2, 1, 28, 28)


def test_published_mnist_checksums_and_mirrors_are_the_standard_ones():
    assert imd.MNIST_MD5["train-images-idx3-ubyte.gz"] == "f68b3c2dcbeaaa9fbdd348bbdeb94873"
    assert imd.MNIST_MD5["t10k-labels-idx1-ubyte.gz"] == "ec29112dd5afa0611ce80d1b7f02629c"
    assert all(m.startswith("https://") and m.endswith("/") for m in imd.MNIST_MIRRORS)


# --------------------------------------------------------------------------- CelebA

COLOURS = [(250, 10, 10), (10, 250, 10), (10, 10, 250), (250, 250, 10), (10, 250, 250)]


def make_celeba(root, splits=(0, 0, 1, 2, 0), bands=False):
    """JPEGs of CelebA's aligned size (178x218), image i a flat COLOURS[i]; with ``bands`` the top
    and bottom 20 rows (outside the centre 178x178 square) are black."""
    folder = root / "img_align_celeba"
    folder.mkdir(parents=True)
    lines = []
    for i, split in enumerate(splits):
        img = Image.new("RGB", (178, 218), COLOURS[i])
        if bands:
            img.paste((0, 0, 0), (0, 0, 178, 20))
            img.paste((0, 0, 0), (0, 198, 178, 218))
        name = f"{i + 1:06d}.jpg"
        img.save(folder / name, quality=100, subsampling=0)
        lines.append(f"{name} {split}")
    (root / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("size", [32, 64])
def test_celeba_returns_the_split_in_partition_order(tmp_path, size):
    make_celeba(tmp_path)
    train = load_celeba(tmp_path, "train", size=size)
    assert train.shape == (3, 3, size, size) and train.dtype == torch.float32
    expected = torch.tensor([COLOURS[0], COLOURS[1], COLOURS[4]], dtype=torch.float32)[:, :, None, None] / 255
    assert (train - expected).abs().max() < 3 / 255
    valid, test = load_celeba(tmp_path, "valid", size=size), load_celeba(tmp_path, "test", size=size)
    assert valid.shape == test.shape == (1, 3, size, size)
    assert (valid[0] - torch.tensor(COLOURS[2])[:, None, None] / 255).abs().max() < 3 / 255
    assert (test[0] - torch.tensor(COLOURS[3])[:, None, None] / 255).abs().max() < 3 / 255


def test_celeba_crops_the_centre_178_square_before_resizing(tmp_path):
    make_celeba(tmp_path, splits=(0,), bands=True)
    x = load_celeba(tmp_path, size=32)
    assert (x[0] - torch.tensor(COLOURS[0])[:, None, None] / 255).abs().max() < 3 / 255  # no black rows
    x140 = load_celeba(tmp_path, size=32, crop=140)
    assert (x140[0] - torch.tensor(COLOURS[0])[:, None, None] / 255).abs().max() < 3 / 255


def test_celeba_without_the_partition_file_or_folder_names_it(tmp_path):
    make_celeba(tmp_path)
    (tmp_path / "list_eval_partition.txt").unlink()
    with pytest.raises(FileError, match=re.escape(str(tmp_path / "list_eval_partition.txt"))):
        load_celeba(tmp_path)
    with pytest.raises(FileError, match=re.escape(str(tmp_path / "elsewhere" / "img_align_celeba"))):
        load_celeba(tmp_path / "elsewhere")


def test_celeba_unreadable_or_missing_jpeg_is_named(tmp_path):
    make_celeba(tmp_path)
    bad = tmp_path / "img_align_celeba" / "000002.jpg"
    bad.write_bytes(bad.read_bytes()[:300])  # truncated JPEG
    with pytest.raises(FileError, match=re.escape(str(bad)) + ": unreadable image"):
        load_celeba(tmp_path, "train")
    gone = tmp_path / "img_align_celeba" / "000003.jpg"
    gone.unlink()
    with pytest.raises(FileError, match=re.escape(f"missing file {gone}")):
        load_celeba(tmp_path, "valid")


def test_celeba_malformed_partition_line_is_named(tmp_path):
    make_celeba(tmp_path)
    (tmp_path / "list_eval_partition.txt").write_text("000001.jpg 0\n000002.jpg train\n")
    with pytest.raises(FileError, match=re.escape(str(tmp_path / "list_eval_partition.txt")) + ": line 2"):
        load_celeba(tmp_path)


# --------------------------------------------------------------------------- image folders


def test_image_folder_reads_png_and_jpeg_recursively_sorted_any_case(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    (tmp_path / "sub").mkdir()
    Image.fromarray(a).save(tmp_path / "a.png")
    Image.fromarray(b).save(tmp_path / "sub" / "B.PNG")
    Image.new("RGB", (4, 4), (200, 100, 50)).save(tmp_path / "c.JPG", quality=100, subsampling=0)
    Image.new("RGB", (4, 4), (0, 0, 0)).save(tmp_path / "d.Jpeg", quality=100, subsampling=0)
    (tmp_path / "notes.txt").write_text("not an image")
    x = load_image_folder(tmp_path, size=4)
    assert x.shape == (4, 3, 4, 4) and x.dtype == torch.float32
    assert 0 <= x.min() and x.max() <= 1
    as_bytes = (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1)
    assert torch.equal(as_bytes[0], torch.from_numpy(a))  # a.png < c.JPG < d.Jpeg < sub/B.PNG
    assert (x[1].mean((1, 2)) * 255 - torch.tensor([200.0, 100, 50])).abs().max() < 3
    assert x[2].max() < 3 / 255
    assert torch.equal(as_bytes[3], torch.from_numpy(b))


@pytest.mark.parametrize("shape", [(4, 6), (6, 4)], ids=["wide", "tall"])
def test_image_folder_crops_the_centre_square_exactly(tmp_path, shape):
    h, w = shape
    pixels = np.arange(h * w, dtype=np.uint8).reshape(h, w)
    Image.fromarray(pixels).save(tmp_path / "g.png")
    x = load_image_folder(tmp_path, size=4, mode="L")
    assert x.shape == (1, 1, 4, 4)
    top, left = (h - 4) // 2, (w - 4) // 2
    assert torch.equal(
        (x[0, 0] * 255).round().to(torch.uint8), torch.from_numpy(pixels[top : top + 4, left : left + 4])
    )


def test_image_folder_converts_between_grey_and_rgb(tmp_path):
    grey = np.array([[0, 64], [128, 255]], dtype=np.uint8)
    rgb = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [10, 20, 30]]], dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "1grey.png")
    Image.fromarray(rgb).save(tmp_path / "2rgb.png")
    as_l = load_image_folder(tmp_path, size=2, mode="L")
    assert as_l.shape == (2, 1, 2, 2)
    assert torch.equal((as_l[0, 0] * 255).round().to(torch.uint8), torch.from_numpy(grey))
    luminance = np.array(Image.fromarray(rgb).convert("L"))
    assert torch.equal((as_l[1, 0] * 255).round().to(torch.uint8), torch.from_numpy(luminance))
    as_rgb = load_image_folder(tmp_path, size=2, mode="RGB")
    assert as_rgb.shape == (2, 3, 2, 2)
    assert torch.equal(as_rgb[0], as_l[0].expand(3, 2, 2))  # grey repeated in each channel
    assert torch.equal((as_rgb[1] * 255).round().to(torch.uint8), torch.from_numpy(rgb).permute(2, 0, 1))


def test_image_folder_resizes_to_the_requested_size(tmp_path):
    Image.new("RGB", (40, 30), (30, 60, 90)).save(tmp_path / "flat.png")
    x = load_image_folder(tmp_path, size=8)
    assert x.shape == (1, 3, 8, 8)
    assert torch.equal((x[0] * 255).round(), torch.tensor([30.0, 60, 90])[:, None, None].expand(3, 8, 8))


def test_image_folder_unreadable_image_is_named(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "good.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(FileError, match=re.escape(str(tmp_path / "broken.png")) + ": unreadable image"):
        load_image_folder(tmp_path)


def test_image_folder_without_images_says_so(tmp_path):
    (tmp_path / "readme.txt").write_text("no images")
    with pytest.raises(FileError, match=f"no images .* under {re.escape(str(tmp_path))}"):
        load_image_folder(tmp_path)
    with pytest.raises(FileError, match="missing folder"):
        load_image_folder(tmp_path / "absent")


def test_image_folder_rejects_unknown_mode_and_bad_size(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    with pytest.raises(ValueError, match="mode must be"):
        load_image_folder(tmp_path, mode="CMYK")
    with pytest.raises(ValueError, match="size must be"):
        load_image_folder(tmp_path, size=0)
