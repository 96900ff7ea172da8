"""Every shipped mmdet config loads, inherits its mmdet baseline, changes only the mask loss, and builds."""
import copy
import glob
import os

import pytest

pytest.importorskip("mmdet")
from mmengine.config import Config  # noqa: E402
from mmdet.registry import MODELS  # noqa: E402
from mmdet.utils import register_all_modules  # noqa: E402

from randperc_plugins.losses.tasks import task_defaults  # noqa: E402
from randperc_plugins.benchmarks._framework_models import load_config  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = sorted(glob.glob(os.path.join(REPO, "configs", "mmdet", "*", "*.py")))
EXPECTED = {f"mask-rcnn_r50_fpn_{loss}_{schedule}_coco.py"
            for loss in ("gpl", "patch-mmd") for schedule in ("1x", "ms-poly-3x")}
DEFAULT_KEY = {"gpl": "random_cnn", "patch-mmd": "patch_mmd"}


def _loss_of(path):
    return "patch-mmd" if "_patch-mmd_" in os.path.basename(path) else "gpl"


def _baseline_of(path):
    name = os.path.basename(path).replace(f"_{_loss_of(path)}", "")
    return f"mmdet::{os.path.basename(os.path.dirname(path))}/{name}"


def _without_mask_loss(cfg):
    node = copy.deepcopy(cfg.to_dict())
    node["model"]["roi_head"]["mask_head"].pop("loss_mask")
    return node


def test_every_planned_config_is_shipped():
    assert {os.path.basename(p) for p in CONFIGS} == EXPECTED


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_config_changes_only_the_mask_loss_and_builds(path):
    cfg = Config.fromfile(path)
    base = load_config(_baseline_of(path))
    loss = cfg.model.roi_head.mask_head.loss_mask
    assert loss.type.startswith("randperc_plugins.mmdet.Add")
    for key, value in base.model.roi_head.mask_head.loss_mask.items():
        if key != "type":
            assert loss[key] == value, key
    # the weight written in the config is the calibrated default its comment justifies
    assert loss.perceptual.loss_weight == task_defaults("instance_masks", DEFAULT_KEY[_loss_of(path)])["loss_weight"]
    assert _without_mask_loss(cfg) == _without_mask_loss(base)

    register_all_modules(init_default_scope=True)
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone.pop("init_cfg")  # no download
    model = MODELS.build(model_cfg)
    loss_module = model.roi_head.mask_head.loss_mask
    assert type(loss_module.base).__name__ == "CrossEntropyLoss" and loss_module.base.use_mask
    assert loss_module.perceptual.loss_name == f"loss_mask_{DEFAULT_KEY[_loss_of(path)].replace('random_cnn', 'gpl')}"
