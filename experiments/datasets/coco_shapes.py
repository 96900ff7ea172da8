"""A small procedurally drawn instance-segmentation dataset in COCO's format, for tests and the demo.

    python tools/make_coco_shapes.py DATA_ROOT [--num-train 8] [--num-val 4] [--size 128] [--seed 0]

Layout (as mmdet's ``CocoDataset`` and detectron2's ``register_coco_instances`` read it)::

    DATA_ROOT/train/0000.png                      RGB images
    DATA_ROOT/val/0000.png
    DATA_ROOT/annotations/instances_train.json    COCO instances: images, annotations, categories
    DATA_ROOT/annotations/instances_val.json

Each image holds a few shapes of four categories (:data:`CATEGORIES`): thick ones (rotated rectangles,
discs, triangles) and thin ones (bars 2-3 pixels wide), each category in its own colour (:data:`PALETTE`)
plus a little noise, on a black background. Shapes overlap: later ones occlude earlier ones, and an
annotation describes the *visible* part of its instance, so that the instances of an image never share a
pixel. An instance that is not occluded is stored as a polygon (``segmentation`` a list of ``[x1, y1, x2,
y2, ...]``); an occluded one, whose visible part is no longer a polygon, as a compressed RLE (``{"size":
[h, w], "counts": str}``). ``bbox`` (``[x, y, w, h]``) and ``area`` are those of the visible mask;
``iscrowd`` is 0 throughout.

Masks are rasterised with pycocotools, the same rasteriser mmdet and detectron2 use for polygons, so the
pixels painted into an image are exactly the masks a loader decodes. (Detectron2 reads the RLE
annotations only with ``cfg.INPUT.MASK_FORMAT = "bitmask"``.) Everything is drawn from a seeded numpy
generator; the same arguments write the same files.
"""
from __future__ import annotations

import argparse
import json
import os
from typing import List, Tuple

import numpy as np
from PIL import Image

CATEGORIES = [
    {"id": 1, "name": "rectangle", "supercategory": "shape"},
    {"id": 2, "name": "disc", "supercategory": "shape"},
    {"id": 3, "name": "triangle", "supercategory": "shape"},
    {"id": 4, "name": "bar", "supercategory": "shape"},
]
CLASSES = tuple(c["name"] for c in CATEGORIES)
# RGB colour of each category id; 0 is the background. Far apart, so that the noise never blurs them.
PALETTE = {0: (0, 0, 0), 1: (220, 20, 60), 2: (0, 128, 255), 3: (255, 200, 0), 4: (60, 220, 75)}
NOISE_STD = 6.0
# An occluded instance is kept when at least this share of it (and MIN_VISIBLE_PIXELS) stays visible.
MIN_VISIBLE_FRACTION = 0.3
MIN_VISIBLE_PIXELS = 12


def _mask_utils():
    try:
        from pycocotools import mask as mask_utils
    except ImportError as err:  # pragma: no cover - pycocotools comes with the mmdet extra
        raise ImportError("coco_shapes needs pycocotools: pip install pycocotools") from err
    return mask_utils


def _rotated(points: np.ndarray, centre: np.ndarray, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return (points - centre) @ np.array([[c, s], [-s, c]]) + centre


def _random_polygon(rng: np.random.Generator, category_id: int, size: int,
                    centre: np.ndarray) -> np.ndarray:
    """Vertices ``(V, 2)`` (x, y) of one shape of ``category_id`` around ``centre``."""
    angle = rng.uniform(0, np.pi)
    if category_id == 1:  # rectangle
        hw, hh = rng.uniform(size / 14, size / 5, 2)
        corners = centre + np.array([[-hw, -hh], [hw, -hh], [hw, hh], [-hw, hh]])
        return _rotated(corners, centre, angle)
    if category_id == 2:  # disc, as a 32-gon
        radius = rng.uniform(size / 12, size / 5)
        t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
        return centre + radius * np.stack([np.cos(t), np.sin(t)], 1)
    if category_id == 3:  # triangle
        radius = rng.uniform(size / 10, size / 4)
        t = angle + np.array([0, 2 * np.pi / 3, 4 * np.pi / 3]) + rng.uniform(-0.3, 0.3, 3)
        return centre + radius * np.stack([np.cos(t), np.sin(t)], 1)
    # bar: a thin rotated rectangle, 2-3 pixels wide
    half_length = rng.uniform(size / 6, size / 3)
    half_width = rng.uniform(1.0, 1.5)
    corners = centre + np.array([[-half_length, -half_width], [half_length, -half_width],
                                 [half_length, half_width], [-half_length, half_width]])
    return _rotated(corners, centre, angle)


def _rasterise(polygon: np.ndarray, size: int) -> np.ndarray:
    mask_utils = _mask_utils()
    rle = mask_utils.merge(mask_utils.frPyObjects([polygon.reshape(-1).tolist()], size, size))
    return mask_utils.decode(rle).astype(bool)


def _draw_scene(rng: np.random.Generator, size: int):
    """One image and its instances ``[(category_id, polygon, visible_mask, occluded)]``, back to front."""
    shapes: List[Tuple[int, np.ndarray, np.ndarray]] = []
    for _ in range(rng.integers(3, 7)):
        category_id = int(rng.integers(1, len(CATEGORIES) + 1))
        if shapes and rng.random() < 0.5:
            # Next to an earlier shape, so that overlaps are common.
            centre = shapes[rng.integers(len(shapes))][1].mean(0) + rng.uniform(-size / 8, size / 8, 2)
        else:
            centre = rng.uniform(size / 8, size * 7 / 8, 2)
        polygon = np.clip(_random_polygon(rng, category_id, size, centre), 0, size - 1)
        full = _rasterise(polygon, size)
        if full.sum() >= MIN_VISIBLE_PIXELS:
            shapes.append((category_id, polygon, full))

    # Drop instances that end up mostly hidden; dropping one only uncovers others, so repeat until stable.
    while True:
        covered = np.zeros((size, size), bool)
        visible = [None] * len(shapes)
        for k in range(len(shapes) - 1, -1, -1):
            visible[k] = shapes[k][2] & ~covered
            covered |= shapes[k][2]
        hidden = [k for k, (_, _, full) in enumerate(shapes)
                  if visible[k].sum() < max(MIN_VISIBLE_FRACTION * full.sum(), MIN_VISIBLE_PIXELS)]
        if not hidden:
            break
        shapes = [s for k, s in enumerate(shapes) if k not in hidden]

    label = np.zeros((size, size), np.int64)
    for category_id, _, full in shapes:
        label[full] = category_id
    colours = np.array([PALETTE[c] for c in range(len(PALETTE))], np.float32)
    image = colours[label] + rng.normal(0, NOISE_STD, (size, size, 3))
    instances = [(c, polygon, vis, bool((full & ~vis).any()))
                 for (c, polygon, full), vis in zip(shapes, visible)]
    return np.clip(image, 0, 255).round().astype(np.uint8), instances


def _annotation(ann_id: int, image_id: int, category_id: int, polygon: np.ndarray,
                visible: np.ndarray, occluded: bool) -> dict:
    mask_utils = _mask_utils()
    rle = mask_utils.encode(np.asfortranarray(visible.astype(np.uint8)))
    # The box from the pixels: pycocotools' toBbox is off by one column for some RLEs.
    ys, xs = np.nonzero(visible)
    if occluded:
        segmentation = {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}
    else:
        segmentation = [[float(v) for v in polygon.reshape(-1)]]  # unrounded: rasterises as drawn
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "segmentation": segmentation,
        "bbox": [float(xs.min()), float(ys.min()), float(xs.max() + 1 - xs.min()),
                 float(ys.max() + 1 - ys.min())],
        "area": float(visible.sum()),
        "iscrowd": 0,
    }


def make_coco_dataset(root: str, num_train: int = 8, num_val: int = 4, size: int = 128,
                      seed: int = 0) -> str:
    """Write the toy COCO instance-segmentation dataset under ``root`` (idempotent); return ``root``.

    Args:
        root: the folder to write (created if needed).
        num_train, num_val: images per split.
        size: the side of the square images, in pixels (at least 32).
        seed: the seed of the numpy generator that draws everything.

    Example:
        >>> import tempfile
        >>> from pycocotools.coco import COCO
        >>> root = make_coco_dataset(tempfile.mkdtemp(), num_train=2, num_val=1, size=64)
        >>> coco = COCO(f"{root}/annotations/instances_val.json")  # doctest: +ELLIPSIS
        loading annotations into memory...
        >>> [c["name"] for c in coco.loadCats(coco.getCatIds())]
        ['rectangle', 'disc', 'triangle', 'bar']
    """
    if size < 32:
        raise ValueError(f"`size` must be at least 32 pixels, got {size}")
    for name, count in (("num_train", num_train), ("num_val", num_val)):
        if count < 1:
            raise ValueError(f"`{name}` must be at least 1, got {count}")
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    for split, count in (("train", num_train), ("val", num_val)):
        os.makedirs(os.path.join(root, split), exist_ok=True)
        images, annotations = [], []
        for i in range(count):
            image, instances = _draw_scene(rng, size)
            file_name = f"{i:04d}.png"
            Image.fromarray(image).save(os.path.join(root, split, file_name))
            image_id = i + 1
            images.append({"id": image_id, "file_name": file_name, "height": size, "width": size})
            for category_id, polygon, visible, occluded in instances:
                annotations.append(_annotation(len(annotations) + 1, image_id, category_id, polygon,
                                               visible, occluded))
        coco = {"info": {"description": "randperc_plugins coco_shapes", "version": "1.0"},
                "licenses": [], "images": images, "annotations": annotations, "categories": CATEGORIES}
        with open(os.path.join(root, "annotations", f"instances_{split}.json"), "w") as f:
            json.dump(coco, f)
    return root


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root")
    parser.add_argument("--num-train", type=int, default=8)
    parser.add_argument("--num-val", type=int, default=4)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    root = make_coco_dataset(args.root, args.num_train, args.num_val, args.size, args.seed)
    print(f"wrote a toy COCO instance-segmentation dataset to {root}")


if __name__ == "__main__":
    main()
