"""Small procedurally generated datasets in the frameworks' own folder formats, for tests and the demo.

    python tools/make_seg_scenes.py DATA_ROOT [--kind shapes|thin] [--num-train 8] [--num-val 2] [--size 64] [--num-classes 4]

Segmentation (mmseg's folder format, as ``BaseSegDataset`` reads it)::

    DATA_ROOT/img_dir/{train,val}/0000.png     RGB images
    DATA_ROOT/ann_dir/{train,val}/0000.png     uint8 label maps: 0 = background, 1..K-1 = shapes,
                                               255 = a void band along the border (ignored)

``make_seg_dataset`` (``--kind shapes``): each image holds a few filled rectangles and discs whose
class decides their colour, plus noise, so a tiny network can learn the task in a few iterations.

``make_thin_scenes_dataset`` (``--kind thin``, the demo's scenes): classes ``THIN_SCENE_CLASSES`` =
background, large regions (ellipses and rectangles a quarter to half the image wide), lines 1 to 3
pixels wide, and small blobs (radius 1 to 3 pixels). Lines and blobs share one colour, so only their
shape tells them apart, and both are far thinner than a typical segmentation network's output stride;
the background carries a smooth gradient, and every pixel Gaussian noise.

Everything is drawn from a seeded numpy generator.
"""
from __future__ import annotations

import argparse
import os

import numpy as np
from PIL import Image, ImageDraw

THIN_SCENE_CLASSES = ("background", "region", "line", "blob")
THIN_SCENE_PALETTE = [(40, 40, 40), (70, 160, 90), (230, 220, 80), (200, 60, 200)]
PALETTE = [(0, 0, 0), (220, 20, 60), (0, 128, 255), (255, 200, 0), (60, 180, 75), (145, 30, 180)]


def _draw_sample(rng: np.random.Generator, size: int, num_classes: int):
    label = np.zeros((size, size), np.uint8)
    yy, xx = np.mgrid[:size, :size]
    for _ in range(rng.integers(2, 5)):
        cls = int(rng.integers(1, num_classes))
        cy, cx = rng.integers(0, size, 2)
        r = int(rng.integers(size // 10, size // 4))
        if rng.random() < 0.5:
            shape = (abs(yy - cy) <= r) & (abs(xx - cx) <= r)
        else:
            shape = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        label[shape] = cls
    colours = np.array([PALETTE[c % len(PALETTE)] for c in range(num_classes)], np.float32)
    image = colours[label] + rng.normal(0, 12, (size, size, 3))
    label[:2] = 255  # a void band, as mmseg's ignore_index
    return np.clip(image, 0, 255).astype(np.uint8), label


def _draw_thin_scene(rng: np.random.Generator, size: int):
    label_image = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(label_image)
    for _ in range(rng.integers(1, 3)):  # large regions
        cx, cy = rng.integers(0, size, 2)
        rx, ry = rng.integers(size // 8, size // 4 + 1, 2)
        box = [int(cx - rx), int(cy - ry), int(cx + rx), int(cy + ry)]
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=1)
    for _ in range(rng.integers(2, 5)):  # lines 1-3 px wide, edge to edge or shorter
        x0, y0, x1, y1 = (int(v) for v in rng.integers(0, size, 4))
        draw.line([x0, y0, x1, y1], fill=2, width=int(rng.integers(1, 4)))
    for _ in range(rng.integers(3, 7)):  # small blobs
        cx, cy = rng.integers(2, size - 2, 2)
        r = float(rng.uniform(1.0, 3.0))
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=3)
    label = np.asarray(label_image, np.uint8).copy()
    colours = np.array(THIN_SCENE_PALETTE, np.float32)
    colours[3] = colours[2]  # lines and blobs look alike: only shape separates them
    ramp = np.linspace(-25, 25, size, dtype=np.float32)
    background = ramp[None, :, None] * rng.uniform(-1, 1) + ramp[:, None, None] * rng.uniform(-1, 1)
    image = colours[label] + np.where(label[..., None] == 0, background, 0) + rng.normal(0, 15, (size, size, 3))
    return np.clip(image, 0, 255).astype(np.uint8), label


def _write_dataset(root: str, draw, counts, seed: int) -> str:
    rng = np.random.default_rng(seed)
    for split, count in counts:
        os.makedirs(os.path.join(root, "img_dir", split), exist_ok=True)
        os.makedirs(os.path.join(root, "ann_dir", split), exist_ok=True)
        for i in range(count):
            image, label = draw(rng)
            Image.fromarray(image).save(os.path.join(root, "img_dir", split, f"{i:04d}.png"))
            Image.fromarray(label).save(os.path.join(root, "ann_dir", split, f"{i:04d}.png"))
    return root


def make_seg_dataset(root: str, num_train: int = 8, num_val: int = 2, size: int = 64,
                     num_classes: int = 4, seed: int = 0) -> str:
    """Write a toy segmentation dataset under ``root`` (idempotent for the same arguments); return it."""
    if not 2 <= num_classes <= len(PALETTE):
        raise ValueError(f"`num_classes` must be in [2, {len(PALETTE)}], got {num_classes}")
    return _write_dataset(root, lambda rng: _draw_sample(rng, size, num_classes),
                          (("train", num_train), ("val", num_val)), seed)


def make_thin_scenes_dataset(root: str, num_train: int = 32, num_val: int = 8, size: int = 64,
                             seed: int = 0) -> str:
    """Write scenes with thin structures (classes ``THIN_SCENE_CLASSES``) under ``root``; return it.

    Example:
        >>> import tempfile, numpy as np, PIL.Image
        >>> root = make_thin_scenes_dataset(tempfile.mkdtemp(), num_train=1, num_val=1, size=32)
        >>> label = np.asarray(PIL.Image.open(root + "/ann_dir/val/0000.png"))
        >>> label.shape, int(label.max()) <= 3
        ((32, 32), True)
    """
    if size < 16:
        raise ValueError(f"`size` must be at least 16 pixels, got {size}")
    return _write_dataset(root, lambda rng: _draw_thin_scene(rng, size),
                          (("train", num_train), ("val", num_val)), seed)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root")
    parser.add_argument("--kind", choices=["shapes", "thin"], default="shapes",
                        help="shapes: rectangles and discs; thin: regions, 1-3 px lines and small blobs")
    parser.add_argument("--num-train", type=int, default=8)
    parser.add_argument("--num-val", type=int, default=2)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--num-classes", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.kind == "thin":
        root = make_thin_scenes_dataset(args.root, args.num_train, args.num_val, args.size, args.seed)
    else:
        root = make_seg_dataset(args.root, args.num_train, args.num_val, args.size, args.num_classes,
                                args.seed)
    print(f"wrote a toy segmentation dataset to {root}")


if __name__ == "__main__":
    main()
