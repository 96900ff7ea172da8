"""Every shipped mmagic config loads, inherits its mmagic baseline, changes only the pixel loss, and builds."""
import glob
import os

import pytest

pytest.importorskip("mmagic")
from mmengine.config import Config  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmagic.registry import MODELS  # noqa: E402

from randperc_plugins.benchmarks._framework_models import load_config  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = sorted(glob.glob(os.path.join(REPO, "configs", "mmagic", "*", "*.py")))
BASELINES = {  # model spec -> mmagic folder and schedule
    "edsr_x2c64b16": ("edsr", "1xb16-300k_div2k"),
    "edsr_x3c64b16": ("edsr", "1xb16-300k_div2k"),
    "edsr_x4c64b16": ("edsr", "1xb16-300k_div2k"),
    "msrresnet_x4c64b16": ("srgan_resnet", "1xb16-1000k_div2k"),
}
LOSSES = {"gpl": "AddRandomCNNPerceptualLoss", "patch-mmd": "AddPatchMMDLoss"}
EXPECTED = {f"{spec}_{loss}_{schedule}.py" for spec, (_, schedule) in BASELINES.items() for loss in LOSSES}


def _baseline_of(path):
    name = os.path.basename(path)
    spec = "_".join(name.split("_")[:2])
    loss = name.split("_")[2]
    folder, schedule = BASELINES[spec]
    return f"mmagic::{folder}/{spec}_{schedule}.py", loss


def test_every_planned_config_is_shipped():
    assert {os.path.basename(p) for p in CONFIGS} == EXPECTED


def _without_pixel_loss(cfg):
    node = cfg.to_dict()
    node["model"].pop("pixel_loss")
    return node


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_config_changes_only_the_loss_and_builds(path):
    cfg = Config.fromfile(path)
    base_path, loss = _baseline_of(path)
    base = load_config(base_path)
    assert open(path).read().count(f"_base_ = '{base_path}'") == 1
    pixel_loss = cfg.model.pixel_loss
    assert pixel_loss.type == f"randperc_plugins.mmagic.{LOSSES[loss]}"
    for key, value in base.model.pixel_loss.items():  # the baseline's arguments, kept by the merge
        if key != "type":
            assert pixel_loss[key] == value, key
    assert _without_pixel_loss(cfg) == _without_pixel_loss(base)

    init_default_scope("mmagic")
    model = MODELS.build(cfg.model)
    assert type(model.pixel_loss.base).__name__ == base.model.pixel_loss.type
    assert model.pixel_loss.perceptual.loss_weight == pixel_loss.perceptual.loss_weight
    assert set(model.state_dict()) == set(MODELS.build(base.model).state_dict())
