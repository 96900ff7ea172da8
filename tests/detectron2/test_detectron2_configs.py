"""configs/detectron2: each file loads (YAML with its `detectron2::` base, LazyConfig), differs from
detectron2's model-zoo baseline only in the mask head (and the output folder), and builds."""
import glob
import os

import pytest

pytestmark = pytest.mark.detectron2

pytest.importorskip("detectron2.config")  # not the tests/detectron2 folder
from randperc_plugins.benchmarks import _detectron2_models as dm  # noqa: E402
from randperc_plugins.detectron2 import (MaskRCNNConvUpsampleHeadWithGPL,  # noqa: E402
                                         MaskRCNNConvUpsampleHeadWithPatchMMD)
from randperc_plugins.detectron2_config import load_config  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = sorted(glob.glob(os.path.join(REPO, "configs", "detectron2", "*")))
HEADS = {"gpl": MaskRCNNConvUpsampleHeadWithGPL, "patch_mmd": MaskRCNNConvUpsampleHeadWithPatchMMD}


def test_every_schedule_loss_and_form_is_shipped():
    names = {os.path.basename(p) for p in CONFIGS}
    assert names == {f"mask_rcnn_R_50_FPN_{s}_{loss}.{ext}" for s in ("1x", "3x")
                     for loss in HEADS for ext in ("py", "yaml")}


def _flat(node, prefix=""):
    from omegaconf import DictConfig, ListConfig, OmegaConf
    if isinstance(node, (DictConfig, ListConfig)):
        node = OmegaConf.to_container(node, resolve=False)
    out = {}
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else None
    if items is None:
        return {prefix: node}
    for key, value in items:
        out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _baseline(path):
    schedule = "3x" if "_3x_" in path else "1x"
    if path.endswith(".yaml"):
        return dm.model_zoo_config(f"COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_{schedule}.yaml")
    cfg = dm.model_zoo_config("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.py")
    if schedule == "3x":
        from detectron2 import model_zoo
        cfg.lr_multiplier = model_zoo.get_config("common/coco_schedule.py").lr_multiplier_3x
        cfg.train.max_iter = 270000
    return cfg


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_config_is_the_model_zoo_baseline_with_our_head_and_builds(path):
    loss = "patch_mmd" if "patch_mmd" in path else "gpl"
    cfg = load_config(path)
    base = _baseline(path)
    if path.endswith(".yaml"):
        assert cfg.MODEL.WEIGHTS == "detectron2://ImageNetPretrained/MSRA/R-50.pkl"  # the zoo's own
        cfg.MODEL.WEIGHTS, cfg.MODEL.DEVICE = "", "cpu"
        ours, theirs = _flat(dict(cfg)), _flat(dict(base))
        changed = {"MODEL.ROI_MASK_HEAD.NAME", "OUTPUT_DIR"}
    else:
        assert cfg.train.init_checkpoint.startswith("detectron2://ImageNetPretrained/")
        cfg.train.init_checkpoint, cfg.train.device = "", "cpu"
        ours, theirs = _flat(cfg), _flat(base)
        changed = {"model.roi_heads.mask_head._target_", "train.output_dir"}
    assert {k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k)} == changed
    model = dm.build_model(cfg)
    assert type(model.roi_heads.mask_head) is HEADS[loss]
    assert model.roi_heads.num_classes == 80


def test_missing_config_file_is_named():
    with pytest.raises(FileNotFoundError, match="`config_file`"):
        load_config("configs/detectron2/no_such_config.yaml")
