"""Small procedurally generated datasets in the frameworks' own folder formats, for tests and the demo.

    python tools/make_seg_scenes.py DATA_ROOT [--num-train 8] [--num-val 2] [--size 64] [--num-classes 4]

Segmentation (mmseg's folder format, as ``BaseSegDataset`` reads it)::

    DATA_ROOT/img_dir/{train,val}/0000.png     RGB images
    DATA_ROOT/ann_dir/{train,val}/0000.png     uint8 label maps: 0 = background, 1..K-1 = shapes,
                                               255 = a void band along the border (ignored)

Each image holds a few filled rectangles and discs whose class decides their colour, plus noise, so a
tiny network can learn the task in a few iterations. Everything is drawn from a seeded numpy generator.
"""
from __future__ import annotations

import argparse
import os

import numpy as np
from PIL import Image

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


def make_seg_dataset(root: str, num_train: int = 8, num_val: int = 2, size: int = 64,
                     num_classes: int = 4, seed: int = 0) -> str:
    """Write a toy segmentation dataset under ``root`` (idempotent for the same arguments); return it."""
    if not 2 <= num_classes <= len(PALETTE):
        raise ValueError(f"`num_classes` must be in [2, {len(PALETTE)}], got {num_classes}")
    rng = np.random.default_rng(seed)
    for split, count in (("train", num_train), ("val", num_val)):
        os.makedirs(os.path.join(root, "img_dir", split), exist_ok=True)
        os.makedirs(os.path.join(root, "ann_dir", split), exist_ok=True)
        for i in range(count):
            image, label = _draw_sample(rng, size, num_classes)
            Image.fromarray(image).save(os.path.join(root, "img_dir", split, f"{i:04d}.png"))
            Image.fromarray(label).save(os.path.join(root, "ann_dir", split, f"{i:04d}.png"))
    return root


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root")
    parser.add_argument("--num-train", type=int, default=8)
    parser.add_argument("--num-val", type=int, default=2)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--num-classes", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    root = make_seg_dataset(args.root, args.num_train, args.num_val, args.size, args.num_classes, args.seed)
    print(f"wrote a toy segmentation dataset to {root}")


if __name__ == "__main__":
    main()
