"""The toy COCO dataset: pycocotools loads it, and its masks, boxes and areas are what the images show."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("pycocotools")
from pycocotools.coco import COCO  # noqa: E402

from experiments.datasets.coco_shapes import CLASSES, PALETTE, make_coco_dataset  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_coco_dataset(str(tmp_path_factory.mktemp("coco_shapes")), num_train=6, num_val=3, size=96)


def _classes_seen(image: np.ndarray) -> np.ndarray:
    """Each pixel's category, read from its colour alone (nearest palette entry), independently of the writer."""
    palette = np.array([PALETTE[c] for c in sorted(PALETTE)], np.float64)
    distance = ((image[..., None, :].astype(np.float64) - palette) ** 2).sum(-1)
    return distance.argmin(-1)


@pytest.mark.parametrize("split, count", [("train", 6), ("val", 3)])
def test_masks_boxes_and_areas_match_the_pixels(root, split, count):
    coco = COCO(os.path.join(root, "annotations", f"instances_{split}.json"))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(CLASSES)
    assert len(coco.getImgIds()) == count
    for image_id in coco.getImgIds():
        info = coco.loadImgs(image_id)[0]
        image = np.asarray(Image.open(os.path.join(root, split, info["file_name"])).convert("RGB"))
        assert image.shape == (info["height"], info["width"], 3) == (96, 96, 3)
        seen = _classes_seen(image)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        assert anns, "every image holds at least one instance"
        union = np.zeros(seen.shape, np.int64)
        for ann in anns:
            mask = coco.annToMask(ann).astype(bool)
            assert mask.any()
            # Every pixel of the instance shows its category's colour.
            assert (seen[mask] == ann["category_id"]).all()
            ys, xs = np.nonzero(mask)
            x, y, w, h = ann["bbox"]
            assert (x, y, x + w, y + h) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
            assert ann["area"] == mask.sum()
            assert ann["iscrowd"] == 0
            union += mask
        assert union.max() == 1, "instances of one image never share a pixel"
        assert ((union == 1) == (seen > 0)).all(), "the masks cover exactly the shapes drawn"


def test_polygons_rles_thin_shapes_and_overlaps_all_occur(root):
    with open(os.path.join(root, "annotations", "instances_train.json")) as f:
        anns = json.load(f)["annotations"]
    kinds = {type(a["segmentation"]).__name__ for a in anns}
    assert kinds == {"list", "dict"}, "polygons for whole instances, RLE for occluded ones"
    assert all(isinstance(a["segmentation"]["counts"], str) for a in anns if isinstance(a["segmentation"], dict))
    assert {a["category_id"] for a in anns} == {1, 2, 3, 4}
    # A bar is thin: its area is a few pixels per pixel of its length (the box's diagonal).
    bars = [a for a in anns if a["category_id"] == 4 and isinstance(a["segmentation"], list)]
    assert bars and all(a["area"] <= 4 * np.hypot(a["bbox"][2], a["bbox"][3]) for a in bars)
    discs = [a for a in anns if a["category_id"] == 2 and isinstance(a["segmentation"], list)]
    assert discs and all(a["area"] >= 0.5 * a["bbox"][2] * a["bbox"][3] for a in discs)


def test_same_seed_same_files_other_seed_other_files(root, tmp_path):
    again = make_coco_dataset(str(tmp_path / "again"), num_train=6, num_val=3, size=96)
    other = make_coco_dataset(str(tmp_path / "other"), num_train=6, num_val=3, size=96, seed=1)
    name = os.path.join("annotations", "instances_train.json")
    with open(os.path.join(root, name)) as a, open(os.path.join(again, name)) as b, \
            open(os.path.join(other, name)) as c:
        first, second, third = a.read(), b.read(), c.read()
    assert first == second != third


@pytest.mark.parametrize("kwargs, argument", [({"size": 16}, "`size`"), ({"num_val": 0}, "`num_val`")])
def test_bad_arguments_are_named(tmp_path, kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        make_coco_dataset(str(tmp_path), **kwargs)


def test_cli_writes_the_dataset(tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO)
    subprocess.run([sys.executable, os.path.join(REPO, "tools", "make_coco_shapes.py"), str(tmp_path),
                    "--num-train", "1", "--num-val", "1", "--size", "48"], check=True, env=env,
                   capture_output=True)
    for path in ("train/0000.png", "val/0000.png", "annotations/instances_train.json",
                 "annotations/instances_val.json"):
        assert os.path.isfile(tmp_path / path)
