"""npkit.make_face_folder: face-like images in CelebA's layout, so the CelebA path (loader, presets,
training, evaluation) runs end to end without the data."""

from __future__ import annotations

import json
import math

import pytest
import torch
from PIL import Image

import npkit
from npkit.cli import main
from npkit.data.image_datasets import load_celeba
from npkit.runs import load_trained


def test_the_folder_has_celebas_layout_and_splits(tmp_path):
    root = npkit.make_face_folder(tmp_path / "faces", num_images=20, seed=0)
    images = sorted((root / "img_align_celeba").iterdir())
    assert [p.name for p in images] == [f"{i:06d}.jpg" for i in range(1, 21)]
    with Image.open(images[0]) as first:
        assert first.size == (178, 218)  # CelebA's aligned size
    splits = [line.split()[1] for line in (root / "list_eval_partition.txt").read_text().splitlines()]
    assert splits == ["0"] * 16 + ["1"] * 2 + ["2"] * 2
    train, test = load_celeba(root, "train", size=32), load_celeba(root, "test", size=32)
    assert train.shape == (16, 3, 32, 32) and test.shape == (2, 3, 32, 32)


def test_faces_are_seeded_varied_and_face_shaped(tmp_path):
    a = load_celeba(npkit.make_face_folder(tmp_path / "a", num_images=12, seed=3), "train", size=32)
    b = load_celeba(npkit.make_face_folder(tmp_path / "b", num_images=12, seed=3), "train", size=32)
    c = load_celeba(npkit.make_face_folder(tmp_path / "c", num_images=12, seed=4), "train", size=32)
    assert torch.equal(a, b) and not torch.equal(a, c)  # the seed alone decides the images
    assert (a[1:] - a[:1]).abs().mean(dim=(1, 2, 3)).min() > 0.02  # no two images alike
    # A face in the middle: the centre differs from the background corners in every image.
    centre = a[:, :, 12:20, 12:20].mean(dim=(2, 3))
    corner = a[:, :, :4, :4].mean(dim=(2, 3))
    assert ((centre - corner).abs().sum(1) > 0.05).all()


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="num_images"):
        npkit.make_face_folder(tmp_path / "x", num_images=2)
    with pytest.raises(ValueError, match="fractions"):
        npkit.make_face_folder(tmp_path / "y", num_images=10, fractions=(0.9, 0.2))
    npkit.make_face_folder(tmp_path / "z", num_images=3)
    with pytest.raises(FileExistsError, match="img_align_celeba"):
        npkit.make_face_folder(tmp_path / "z", num_images=3)


@pytest.mark.parametrize("preset", ["celeba-cnp", "celeba-anp"])
def test_the_celeba_presets_train_evaluate_and_plot_on_generated_faces(tmp_path, preset, capsys):
    root = npkit.make_face_folder(tmp_path / "faces", num_images=24, seed=0)  # test split: 3 images
    run = tmp_path / "run"
    sets = [f"data.root={root}", "train.steps=4", "train.batch_size=4", "train.eval_every=4", "train.eval_batches=1"]
    sets += ["train.checkpoint_every=2", "train.progress=false", "model.hidden_dim=16", "model.r_dim=16"]
    sets += ["model.z_dim=4"] if preset == "celeba-anp" else []
    assert main(["train", preset, "--run-dir", str(run)] + [f"--set={s}" for s in sets]) == 0
    model = load_trained(run)
    assert (model.config.x_dim, model.config.y_dim) == (2, 3)  # pixel coordinates -> RGB
    quick = [
        "eval.num_images=3",
        "eval.batch_size=3",
        "eval.fractions=[0.1,1.0]",
        "eval.fit_steps=2",
        "eval.num_samples=4",
    ]
    assert main(["eval", str(run)] + [f"--set={s}" for s in quick]) == 0
    assert "celeba32:test: 3 images" in capsys.readouterr().out  # scored on the generated test split
    results = json.loads((run / "metrics.json").read_text())["results"]
    assert set(results) == {model.name, "kNN (k=5)", "GP (RBF, fitted)"}
    assert all(math.isfinite(m["tar_ll"]) for method in results.values() for m in method.values())
    assert main(["plot", str(run)]) == 0
    assert any(p.suffix == ".png" for p in (run / "figures").iterdir())
