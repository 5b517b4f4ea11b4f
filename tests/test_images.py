"""Specification of npkit.data.images: images as functions of pixel coordinates (protocol 3
of docs/benchmarks/protocols.md), context masks, the way back to images, and the image presets."""

import pytest
import torch

import npkit.data
import npkit.data.image_datasets
from npkit.data import ImageSampler, make_sampler, mask_pixels, pixel_grid, to_image


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def fake_images(n: int = 5, c: int = 1, h: int = 4, w: int = 6, seed: int = 0) -> torch.Tensor:
    """Distinct pixel values, so every value tells which image and pixel it came from."""
    return torch.rand(n, c, h, w, generator=gen(seed))


def flat_index(x: torch.Tensor, h: int, w: int, coords: str = "unit") -> torch.Tensor:
    unit = (x + 1) / 2 if coords == "centered" else x
    i, j = (unit[..., 0] * (h - 1)).round().long(), (unit[..., 1] * (w - 1)).round().long()
    return i * w + j


# --------------------------------------------------------------------------- coordinates


def test_unit_grid_maps_corners_row_then_column():
    grid = pixel_grid(3, 5, "unit").reshape(3, 5, 2)
    assert grid[0, 0].tolist() == [0.0, 0.0]
    assert grid[0, 4].tolist() == [0.0, 1.0]  # top right: row 0, last column
    assert grid[2, 0].tolist() == [1.0, 0.0]
    assert grid[2, 4].tolist() == [1.0, 1.0]
    assert grid[1, 1].tolist() == [0.5, 0.25]


def test_centered_grid_is_the_bnp_convention():
    h, w = 3, 5
    grid = pixel_grid(h, w, "centered").reshape(h, w, 2)
    assert grid[0, 0].tolist() == [-1.0, -1.0] and grid[2, 4].tolist() == [1.0, 1.0]
    assert grid[0, 4].tolist() == [-1.0, 1.0] and grid[2, 0].tolist() == [1.0, -1.0]
    i, j = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    expected = torch.stack([2 * i / (h - 1) - 1, 2 * j / (w - 1) - 1], -1).float()
    assert torch.allclose(grid, expected)


# --------------------------------------------------------------------------- to_image


def test_to_image_puts_values_at_their_pixels():
    x = torch.tensor([[0.0, 1.0], [1.0, 0.0]])  # (row 0, last column), (last row, column 0)
    y = torch.tensor([[0.7, 0.1], [0.3, 0.9]])  # two channels
    image, observed = to_image(x, y, (3, 5), fill=-1.0)
    assert image.shape == (2, 3, 5) and observed.shape == (3, 5)
    assert image[:, 0, 4].tolist() == pytest.approx([0.7, 0.1])
    assert image[:, 2, 0].tolist() == pytest.approx([0.3, 0.9])
    assert observed.sum() == 2 and observed[0, 4] and observed[2, 0]
    assert (image[:, ~observed] == -1.0).all()


def test_to_image_refuses_points_off_the_grid():
    with pytest.raises(ValueError, match="pixel grid"):
        to_image(torch.tensor([[0.3, 0.0]]), torch.zeros(1, 1), (3, 5))
    with pytest.raises(ValueError, match="pixel grid"):  # centered coordinates read as unit ones
        to_image(torch.tensor([[-1.0, 0.0]]), torch.zeros(1, 1), (3, 5), coords="unit")


@pytest.mark.parametrize("coords", ["unit", "centered"])
@pytest.mark.parametrize("values", ["unit", "centered"])
def test_context_and_targets_rebuild_the_drawn_images(coords, values):
    images = fake_images(c=3)
    sampler = ImageSampler(images, source="fake", num_context=(5, 10), coords=coords, values=values)
    batch = sampler.sample(6, gen(0))
    x, y = torch.cat([batch.xc, batch.xt], 1), torch.cat([batch.yc, batch.yt], 1)
    rebuilt, observed = sampler.to_image(x, y)
    assert rebuilt.shape == (6, 3, 4, 6) and observed.all()
    for task in rebuilt:  # each task is exactly one of the images
        assert any(torch.allclose(task, image, atol=1e-6) for image in images)
    if values == "centered":
        assert y.min() >= -0.5 and y.max() <= 0.5 and y.min() < 0


# --------------------------------------------------------------------------- sampling


def test_batches_have_documented_shapes_dtypes_and_contiguity():
    sampler = ImageSampler(fake_images(c=3), source="fake", num_context=(2, 9), num_target=(4, 7))
    batch = sampler.sample(5, gen(1))
    nc, nt = batch.num_context, batch.num_target
    assert 2 <= nc <= 9 and 4 <= nt <= 7
    assert batch.xc.shape == (5, nc, 2) and batch.yc.shape == (5, nc, 3)
    assert batch.xt.shape == (5, nt, 2) and batch.yt.shape == (5, nt, 3)
    for t in (batch.xc, batch.yc, batch.xt, batch.yt):
        assert t.dtype == torch.float32 and t.is_contiguous()


def test_context_and_targets_are_disjoint_and_cover_the_image_by_default():
    sampler = ImageSampler(fake_images(), source="fake", num_context=(1, 20))
    for seed in range(5):
        batch = sampler.sample(4, gen(seed))
        assert batch.num_context + batch.num_target == 24
        for xc, xt in zip(batch.xc, batch.xt):
            c, t = set(flat_index(xc, 4, 6).tolist()), set(flat_index(xt, 4, 6).tolist())
            assert not c & t and c | t == set(range(24))
            assert len(c) == batch.num_context  # no pixel twice


def test_random_contexts_differ_between_tasks_and_targets_stay_disjoint():
    sampler = ImageSampler(fake_images(), source="fake", num_context=(6, 6), num_target=(5, 5))
    batch = sampler.sample(4, gen(3))
    contexts = [frozenset(flat_index(xc, 4, 6).tolist()) for xc in batch.xc]
    assert len(set(contexts)) > 1  # a permutation per task, not one per batch
    for c, xt in zip(contexts, batch.xt):
        t = set(flat_index(xt, 4, 6).tolist())
        assert len(t) == 5 and not c & t


def test_max_points_caps_context_plus_targets():
    sampler = ImageSampler(fake_images(), source="fake", num_context=(3, 15), num_target=(3, 15), max_points=18)
    for seed in range(20):
        batch = sampler.sample(2, gen(seed))
        assert 3 <= batch.num_context <= 15 and 3 <= batch.num_target <= 18 - batch.num_context


@pytest.mark.parametrize(
    "mask, rows, cols",
    [
        ("top", slice(0, 2), slice(0, 6)),
        ("bottom", slice(2, 4), slice(0, 6)),
        ("left", slice(0, 4), slice(0, 3)),
        ("right", slice(0, 4), slice(3, 6)),
    ],
)
def test_half_masks_give_exactly_their_half_as_context(mask, rows, cols):
    expected = torch.zeros(4, 6, dtype=torch.bool)
    expected[rows, cols] = True
    assert torch.equal(mask_pixels(mask, 4, 6), expected)
    batch = ImageSampler(fake_images(), source="fake", mask=mask).sample(3, gen(0))
    for xc, xt in zip(batch.xc, batch.xt):
        assert set(flat_index(xc, 4, 6).tolist()) == set(expected.reshape(-1).nonzero().squeeze(1).tolist())
        assert set(flat_index(xt, 4, 6).tolist()) == set((~expected).reshape(-1).nonzero().squeeze(1).tolist())


def test_center_mask_hides_the_centre_block():
    hidden = torch.zeros(8, 8, dtype=torch.bool)
    hidden[2:6, 2:6] = True
    assert torch.equal(mask_pixels("center", 8, 8), ~hidden)
    sampler = ImageSampler(fake_images(h=8, w=8), source="fake", mask="center", num_target=(5, 9))
    batch = sampler.sample(2, gen(0))
    assert batch.num_context == 48 and 5 <= batch.num_target <= 9
    for xt in batch.xt:
        assert hidden.reshape(-1)[flat_index(xt, 8, 8)].all()


def test_same_seed_same_batch_and_other_seed_other_batch():
    sampler = ImageSampler(fake_images(), source="fake", num_context=(2, 10))
    a, b, c = sampler.sample(4, gen(7)), sampler.sample(4, gen(7)), sampler.sample(4, gen(8))
    for name in ("xc", "yc", "xt", "yt"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert not (a.xc.shape == c.xc.shape and torch.equal(a.xc, c.xc) and torch.equal(a.yc, c.yc))


def test_every_image_gets_drawn():
    images = torch.arange(4.0).reshape(4, 1, 1, 1).expand(4, 1, 2, 2) / 4  # image k is constant k / 4
    batch = ImageSampler(images.contiguous(), source="fake", num_context=(1, 1)).sample(200, gen(0))
    assert set((batch.yc[:, 0, 0] * 4).round().long().tolist()) == {0, 1, 2, 3}


# --------------------------------------------------------------------------- repr and validation


def test_repr_names_the_source_and_holds_no_tensor_data():
    a = ImageSampler(fake_images(n=500), source="digits")
    b = ImageSampler(fake_images(n=500), source="mnist:train")
    assert "digits" in repr(a) and "tensor" not in repr(a) and len(repr(a)) < 300
    assert repr(a) != repr(b)


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(num_context=(3, 24)), r"num_context=\(3, 24\).*4 x 6 = 24 pixels"),
        (dict(num_context=(5, 3)), "num_context must satisfy"),
        (dict(num_context=(3, 10), num_target=(20, 30)), r"num_target=\(20, 30\)"),
        (dict(mask="top", num_target=(13, 20)), "num_target"),
        (dict(mask="middle"), "mask must be one of"),
        (dict(coords="pixels"), "coords must be one of"),
        (dict(values="signed"), "values must be one of"),
        (dict(max_points=25), "max_points"),
        (dict(source=""), "source"),
    ],
)
def test_bad_settings_are_refused_naming_the_option(options, message):
    with pytest.raises(ValueError, match=message):
        ImageSampler(fake_images(), **{"source": "fake", **options})


@pytest.mark.parametrize(
    "images, message",
    [
        (torch.rand(4, 6), r"\[N, C, H, W\]"),
        (torch.randint(0, 255, (2, 1, 4, 4)), r"\[N, C, H, W\]"),
        (torch.rand(2, 1, 4, 4) * 255, r"\[0, 1\]"),
    ],
)
def test_bad_images_are_refused(images, message):
    with pytest.raises(ValueError, match=message):
        ImageSampler(images, source="fake")


# --------------------------------------------------------------------------- presets


def test_digits_preset_is_the_8x8_digits_in_unit_conventions():
    sampler = make_sampler("digits")
    assert sampler.images.shape == (1437, 1, 8, 8) and sampler.source == "digits:train"
    batch = sampler.sample(4, gen(0))
    assert 3 <= batch.num_context <= 32 and batch.num_context + batch.num_target == 64
    x = torch.cat([batch.xc, batch.xt], 1)
    assert x.min() == 0 and x.max() == 1 and batch.yc.min() >= 0 and batch.yc.max() <= 1


def test_digits_splits_are_disjoint_and_classes_select_labels():
    from npkit.data.image_datasets import load_digits

    images, labels = load_digits()
    train, test = make_sampler("digits").images, make_sampler("digits", split="test").images
    assert len(train) + len(test) == 1797 and torch.equal(torch.cat([train, test]), images)
    low = make_sampler("digits", classes=[4, 0, 1, 2, 3])
    assert low.source == "digits:train:classes=0,1,2,3,4"
    assert torch.equal(low.images, images[:-360][labels[:-360] < 5])
    with pytest.raises(ValueError, match="unknown digits split 'valid'"):
        make_sampler("digits", split="valid")
    with pytest.raises(ValueError, match=r"classes=\[11\] selects no image"):
        make_sampler("digits-bnp", classes=[11])


def test_digits_bnp_preset_uses_centered_conventions_and_scaled_counts():
    sampler = make_sampler("digits-bnp")
    for seed in range(20):
        batch = sampler.sample(2, gen(seed))
        assert 3 <= batch.num_context <= 61 and 3 <= batch.num_target <= 64 - batch.num_context
    assert batch.xc.min() >= -1 and batch.xc.max() <= 1 and (batch.xc < 0).any()
    assert batch.yc.min() >= -0.5 and batch.yc.max() <= 0.5


def test_image_presets_take_overrides_and_refuse_kernels():
    sampler = make_sampler("digits", num_context=[10, 50], mask="top")
    assert sampler.num_context == (10, 50) and sampler.mask == "top"
    assert sampler.sample(2, gen(0)).num_context == 32
    with pytest.raises(ValueError, match="has no kernel"):
        make_sampler("digits", kernel="rbf")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['images'\]"):
        make_sampler("digits", images=torch.rand(1, 1, 2, 2))


def test_mnist_bnp_preset_is_benchmarks_section_3(monkeypatch):
    loaded = []

    def fake_mnist(root, split):
        loaded.append((root, split))
        return fake_images(n=3, h=28, w=28), torch.tensor([7, 2, 7])

    monkeypatch.setattr(npkit.data.image_datasets, "load_mnist", fake_mnist)
    assert len(make_sampler("mnist", root="/r", classes=[7]).images) == 2
    loaded.clear()
    sampler = make_sampler("mnist-bnp", root="/data/mnist", split="test")
    assert loaded == [("/data/mnist", "test")] and sampler.source == "mnist:test"
    assert (sampler.coords, sampler.values) == ("centered", "centered")
    counts = [sampler.sample(1, gen(seed)) for seed in range(30)]
    for batch in counts:
        assert 3 <= batch.num_context <= 196 and 3 <= batch.num_target <= 199 - batch.num_context
    assert make_sampler("mnist").num_target is None and make_sampler("mnist").source == "mnist:train"


def test_mnist_without_a_data_folder_says_how_to_give_one(monkeypatch):
    monkeypatch.delenv("NPKIT_DATA", raising=False)
    with pytest.raises(ValueError, match="NPKIT_DATA"):
        make_sampler("mnist")


def test_image_folder_preset_splits_every_tenth_image_and_names_its_root(tmp_path):
    from PIL import Image

    for i in range(12):  # grey level i * 20, so an image is recognised by its value
        Image.new("L", (10, 6), i * 20).save(tmp_path / f"{i:02d}.png")
    train = make_sampler("image-folder", root=str(tmp_path), size=4, mode="L")
    test = make_sampler("image-folder", root=str(tmp_path), split="test", size=4, mode="L", num_context=[1, 3])
    level = lambda s: (s.images[:, 0, 0, 0] * 255 / 20).round().int().tolist()
    assert level(test) == [9] and level(train) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11]
    assert train.images.shape == (11, 1, 4, 4) and train.num_context == (3, 8) and test.num_context == (1, 3)
    assert train.source == f"folder:{tmp_path.name}:train"
    with pytest.raises(ValueError, match="needs root=FOLDER"):
        make_sampler("image-folder")
    with pytest.raises(ValueError, match="unknown image-folder split 'valid'"):
        make_sampler("image-folder", root=str(tmp_path), split="valid")


def test_celeba_presets_load_the_split_at_the_size_asked(monkeypatch, tmp_path):
    loaded = []

    def fake_celeba(root, split, size, crop):
        loaded.append((str(root), split, size, crop))
        return torch.rand(3, 3, size, size, generator=gen(0))

    monkeypatch.setattr(npkit.data.image_datasets, "load_celeba", fake_celeba)
    npkit.data._celeba_images.cache_clear()
    sampler = make_sampler("celeba", root=str(tmp_path), split="valid", size=8)
    assert loaded == [(str(tmp_path), "valid", 8, 178)] and sampler.source == "celeba8:valid"
    assert sampler.num_context == (3, 32) and sampler.sample(2, gen(0)).yc.shape[-1] == 3
    bnp = make_sampler("celeba-bnp", root=str(tmp_path), size=16, crop=140)
    assert loaded[-1] == (str(tmp_path), "train", 16, 140) and bnp.max_points == 199 and bnp.values == "centered"
    npkit.data._celeba_images.cache_clear()
