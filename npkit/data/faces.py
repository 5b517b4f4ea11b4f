"""Face-like images in CelebA's layout, drawn with Pillow: the CelebA path end to end without the
data (CelebA cannot be downloaded here, and the tests need small files).

Each image is a 178x218 aligned "portrait" like CelebA's: a background of one colour, hair, a
skin-toned oval head with jitter in position, size and tilt, two eyes with irises, eyebrows, a
nose and a mouth. The faces share CelebA's structure (a centred face, symmetric features at fixed
relative places, varied colours) so a model must learn the same kind of prior, but they are far
simpler than photographs: numbers on them are not CelebA's.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

WIDTH, HEIGHT = 178, 218  # CelebA's aligned images
SKIN = [(255, 224, 196), (241, 194, 160), (224, 172, 130), (198, 134, 96), (141, 85, 56), (92, 56, 36)]
HAIR = [(20, 16, 14), (70, 45, 30), (130, 90, 50), (200, 160, 90), (150, 150, 150), (120, 40, 20)]
IRIS = [(60, 40, 25), (40, 90, 140), (70, 110, 60), (30, 30, 30)]


def _jitter(rng: np.random.Generator, colour: tuple[int, int, int], amount: int = 18) -> tuple[int, ...]:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in colour)


def draw_face(rng: np.random.Generator) -> Image.Image:
    """One face-like RGB image of 178x218 pixels drawn with ``rng``."""
    background = tuple(int(v) for v in rng.integers(40, 230, size=3))
    img = Image.new("RGB", (WIDTH, HEIGHT), background)
    draw = ImageDraw.Draw(img)
    cx = WIDTH / 2 + rng.normal(0, 5)
    cy = HEIGHT / 2 + 8 + rng.normal(0, 5)
    w, h = rng.uniform(52, 64), rng.uniform(68, 80)  # half width and half height of the head
    skin, hair = _jitter(rng, SKIN[rng.integers(len(SKIN))]), _jitter(rng, HAIR[rng.integers(len(HAIR))])

    long_hair = rng.random() < 0.5
    if long_hair:  # hair falling behind the head to the shoulders
        draw.rounded_rectangle((cx - w - 14, cy - h - 10, cx + w + 14, cy + h + 40), radius=50, fill=hair)
    draw.ellipse(
        (cx - w * 1.7, cy + h * 0.85, cx + w * 1.7, cy + h * 2.4), fill=_jitter(rng, background, 60)
    )  # shoulders
    draw.rectangle((cx - w * 0.35, cy + h * 0.7, cx + w * 0.35, cy + h * 1.1), fill=skin)  # neck
    draw.ellipse((cx - w, cy - h, cx + w, cy + h), fill=skin)
    draw.chord((cx - w - 4, cy - h - 12, cx + w + 4, cy + h * 0.2), 180, 360, fill=hair)  # hair on top

    eye_y, eye_dx = cy - h * 0.1 + rng.normal(0, 2), w * rng.uniform(0.36, 0.46)
    iris = IRIS[rng.integers(len(IRIS))]
    for side in (-1, 1):
        ex = cx + side * eye_dx
        draw.ellipse((ex - 11, eye_y - 6, ex + 11, eye_y + 6), fill=(245, 245, 245))
        draw.ellipse((ex - 5, eye_y - 5, ex + 5, eye_y + 5), fill=iris)
        draw.ellipse((ex - 2, eye_y - 2, ex + 2, eye_y + 2), fill=(10, 10, 10))
        brow = eye_y - 14 - rng.uniform(0, 4)
        draw.line((ex - 12, brow + 2, ex + 12, brow - side * rng.uniform(-2, 2)), fill=hair, width=4)
    shade = tuple(int(c * 0.8) for c in skin)
    nose_y = cy + h * 0.25
    draw.polygon([(cx, eye_y + 6), (cx - 7, nose_y), (cx + 7, nose_y)], fill=shade)
    mouth_y, mouth_w = cy + h * 0.52, w * rng.uniform(0.3, 0.45)
    lips = _jitter(rng, (170, 70, 70), 30)
    smile = rng.uniform(0, 12)
    draw.chord((cx - mouth_w, mouth_y - 6, cx + mouth_w, mouth_y + 6 + smile), 0, 180, fill=lips)

    angle = rng.normal(0, 4)  # head tilt, in degrees
    img = img.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=background, center=(cx, cy))
    return img.filter(ImageFilter.GaussianBlur(radius=0.8))


def make_face_folder(
    root: str | os.PathLike, num_images: int = 1000, seed: int = 0, fractions: tuple[float, float] = (0.8, 0.1)
) -> Path:
    """Write ``num_images`` face-like JPEGs in CelebA's layout (for the ``celeba`` data presets).

    ``root`` gets ``img_align_celeba/000001.jpg ...`` (178x218, as CelebA's aligned images) and
    ``list_eval_partition.txt`` (the first ``fractions[0]`` of the images train, the next
    ``fractions[1]`` valid, the rest test). The same ``seed`` writes the same images.

    Args:
        root: folder to create (it must not hold an ``img_align_celeba`` folder already).
        num_images: images to draw, at least 3 (one per split).
        seed: seeds the drawing.
        fractions: the train and valid shares of the images; the test split gets the rest.

    Returns:
        ``root`` as a Path.

    Examples:
        >>> root = npkit.make_face_folder("/tmp/faces", num_images=200)  # doctest: +SKIP
        >>> sampler = npkit.make_sampler("celeba", root=root, split="test")  # doctest: +SKIP
    """
    if not isinstance(num_images, int) or num_images < 3:
        raise ValueError(f"num_images must be an integer >= 3 (one image per split), got {num_images!r}")
    train, valid = fractions
    if not (0 < train and 0 < valid and train + valid < 1):
        raise ValueError(f"fractions must be two positive shares (train, valid) summing below 1, got {fractions!r}")
    root = Path(root)
    folder = root / "img_align_celeba"
    if folder.exists():
        raise FileExistsError(f"{folder} exists already; make_face_folder writes a new folder")
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    n_train = max(1, math.floor(train * num_images))
    n_valid = max(1, math.floor(valid * num_images))
    n_train = min(n_train, num_images - n_valid - 1)
    lines = []
    for i in range(num_images):
        name = f"{i + 1:06d}.jpg"
        draw_face(rng).save(folder / name, quality=95)
        lines.append(f"{name} {0 if i < n_train else 1 if i < n_train + n_valid else 2}")
    (root / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    return root
