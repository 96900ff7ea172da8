"""Every shipped mmseg config loads, inherits its mmseg baseline, changes only the loss, and builds."""
import glob
import os

import pytest

pytest.importorskip("mmseg")
from mmengine.config import Config  # noqa: E402
from mmseg.registry import MODELS  # noqa: E402
from mmseg.utils import register_all_modules  # noqa: E402

from randperc_plugins.benchmarks._framework_models import bn_instead_of_syncbn, load_config  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = sorted(glob.glob(os.path.join(REPO, "configs", "mmseg", "*", "*.py")))
EXPECTED = {
    f"{model}_r50-d8_{loss}_{schedule}.py"
    for model in ("pspnet", "deeplabv3plus")
    for loss in ("gpl", "patch-mmd")
    for schedule in ("4xb2-80k_cityscapes-512x1024", "4xb4-80k_ade20k-512x512",
                     "4xb4-160k_ade20k-512x512")
}


def _baseline_of(path):
    name = os.path.basename(path)
    model = name.split("_")[0]
    for loss in ("_gpl", "_patch-mmd"):
        name = name.replace(loss, "")
    return f"mmseg::{model}/{name}"


def test_every_planned_config_is_shipped():
    assert {os.path.basename(p) for p in CONFIGS} == EXPECTED


def _without_loss(node):
    node = node.to_dict() if hasattr(node, "to_dict") else node
    node["model"]["decode_head"].pop("loss_decode")
    return node


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_config_changes_only_the_loss_and_builds(path):
    cfg = Config.fromfile(path)
    base = load_config(_baseline_of(path))
    loss = cfg.model.decode_head.loss_decode
    assert loss.type.startswith("randperc_plugins.mmseg.Add")
    base_loss = base.model.decode_head.loss_decode
    for key, value in base_loss.items():
        if key != "type":
            assert loss[key] == value, key
    assert _without_loss(cfg) == _without_loss(base)

    register_all_modules(init_default_scope=True)
    model = MODELS.build(bn_instead_of_syncbn(cfg.model))
    ce, perceptual = list(model.decode_head.loss_decode)
    assert ce.loss_name == "loss_ce" and perceptual.loss_name.startswith("loss_")
