"""The demo's scenes with thin structures: classes, thinness, determinism, bad arguments."""
import os

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from experiments.datasets.seg_scenes import THIN_SCENE_CLASSES, make_thin_scenes_dataset


def _load(root, split, i):
    name = f"{i:04d}.png"
    return (np.asarray(Image.open(os.path.join(root, "img_dir", split, name))),
            np.asarray(Image.open(os.path.join(root, "ann_dir", split, name))))


def test_thin_scenes_hold_thin_lines_small_blobs_and_large_regions(tmp_path):
    root = make_thin_scenes_dataset(str(tmp_path), num_train=6, num_val=2, size=64, seed=3)
    for split, count in (("train", 6), ("val", 2)):
        for i in range(count):
            image, label = _load(root, split, i)
            assert image.shape == (64, 64, 3) and image.dtype == np.uint8 and label.shape == (64, 64)
            assert set(np.unique(label)) <= set(range(len(THIN_SCENE_CLASSES)))
            # lines are <= 3 px wide: almost nothing of them survives a 5x5 erosion (only where they
            # cross or overlap)
            lines = label == 2
            assert lines.any()
            eroded = ndimage.binary_erosion(lines, structure=np.ones((5, 5)))
            assert eroded.sum() <= 0.1 * lines.sum()
            blobs, n = ndimage.label(label == 3)
            sizes = np.bincount(blobs.ravel())[1:]
            assert n >= 1 and sizes.max() <= 7 * 7  # radius <= 3 px (merged blobs excepted, rare)
            if (label == 1).any():
                assert (label == 1).sum() >= 64  # regions are large
            # lines and blobs share one colour: their mean colours are close, the region's is not
            colour = {c: image[label == c].mean(0) for c in (2, 3)}
            assert np.abs(colour[2] - colour[3]).max() < 25


def test_thin_scenes_are_deterministic_and_check_size(tmp_path):
    a = make_thin_scenes_dataset(str(tmp_path / "a"), num_train=1, num_val=1, size=32, seed=1)
    b = make_thin_scenes_dataset(str(tmp_path / "b"), num_train=1, num_val=1, size=32, seed=1)
    for x, y in zip(_load(a, "val", 0), _load(b, "val", 0)):
        assert np.array_equal(x, y)
    with pytest.raises(ValueError, match="`size` must be at least 16 pixels, got 8"):
        make_thin_scenes_dataset(str(tmp_path / "c"), size=8)
