"""The one-line config on mmdet baselines the project does not ship: builds, trains a step, keeps keys."""
import copy
from pathlib import Path

import pytest
import torch

pytest.importorskip("mmdet")
from mmengine.config import Config  # noqa: E402
from mmengine.logging import MessageHub  # noqa: E402
from mmdet.registry import MODELS  # noqa: E402
from mmdet.utils import register_all_modules  # noqa: E402

from randperc_plugins.benchmarks._framework_models import bn_instead_of_syncbn, det_batch  # noqa: E402

register_all_modules(init_default_scope=True)

# The lines of the MMDetection page (docs/mmdet.md), verbatim; the README copies the first.
ONE_LINE = {
    "gpl": "model = dict(roi_head=dict(mask_head=dict(loss_mask=dict("
           "type='randperc_plugins.mmdet.AddRandomCNNPerceptualLoss'))))",
    "patch_mmd": "model = dict(roi_head=dict(mask_head=dict(loss_mask=dict("
                 "type='randperc_plugins.mmdet.AddPatchMMDLoss'))))",
}
UNSHIPPED_BASELINES = [
    "mmdet::cascade_rcnn/cascade-mask-rcnn_r50_fpn_1x_coco.py",
    "mmdet::mask_rcnn/mask-rcnn_r101_fpn_1x_coco.py",
]


def test_the_docs_and_the_readme_give_these_lines():
    repo = Path(__file__).resolve().parents[2]
    page = (repo / "docs" / "mmdet.md").read_text()
    section = page.split("## The one line\n", 1)[1].split("\n## ", 1)[0]
    assert all(line in section.splitlines() for line in ONE_LINE.values())
    assert ONE_LINE["gpl"] in (repo / "README.md").read_text().splitlines()


def drop_pretrained(node):
    """Remove every pretrained ``init_cfg`` (in place): nothing is downloaded."""
    if isinstance(node, dict):
        if isinstance(node.get("init_cfg"), dict) and node["init_cfg"].get("type") == "Pretrained":
            node.pop("init_cfg")
        node.pop("pretrained", None)
        for value in node.values():
            drop_pretrained(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            drop_pretrained(value)
    return node


def build_one_line_model(tmp_path, baseline, line, model_overrides=None):
    cfg_file = tmp_path / "one_line.py"
    cfg_file.write_text(f"_base_ = '{baseline}'\n{line}\n")
    cfg = Config.fromfile(str(cfg_file))
    if model_overrides:
        cfg.merge_from_dict({f"model.{k}": v for k, v in model_overrides.items()})
    # a ConfigDict, not a dict: mmdet reads train_cfg.rpn as an attribute
    model_cfg = drop_pretrained(bn_instead_of_syncbn(copy.deepcopy(cfg.model)))
    return cfg, MODELS.build(model_cfg)


def _mask_loss_cfgs(cfg):
    heads = cfg.model.roi_head.mask_head
    return [h.loss_mask for h in (heads if isinstance(heads, list) else [heads])]


# Each baseline with one loss in CI (a CPU step of an R50/R101 detector takes tens of seconds); every
# pair with --runslow.
CASES = [
    ("gpl", UNSHIPPED_BASELINES[0]),
    ("patch_mmd", UNSHIPPED_BASELINES[1]),
    pytest.param("patch_mmd", UNSHIPPED_BASELINES[0], marks=pytest.mark.slow),
    pytest.param("gpl", UNSHIPPED_BASELINES[1], marks=pytest.mark.slow),
]


@pytest.mark.parametrize("loss,baseline", CASES)
def test_one_line_on_unshipped_baselines_trains(tmp_path, baseline, loss):
    cfg, model = build_one_line_model(tmp_path, baseline, ONE_LINE[loss])
    for loss_cfg in _mask_loss_cfgs(cfg):  # the baseline's own arguments survive the merge
        assert loss_cfg.use_mask is True and loss_cfg.loss_weight == 1.0
    data = det_batch(model, size=(64, 96), batch=1)
    model.train()
    hub = MessageHub.get_instance(f"one_line_{loss}_{baseline}")
    MessageHub._instance_dict.move_to_end(hub.instance_name)
    losses = model.loss(data["inputs"], data["data_samples"])
    mask_keys = [k for k in losses if k.endswith("loss_mask")]
    assert mask_keys, sorted(losses)
    for name, value in losses.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        assert all(torch.isfinite(v).all() for v in values), name
    # each part of loss_mask is logged under its own name, and they add up to it (the last mask head
    # called; a cascade weights its stages' losses)
    ce = hub.get_scalar("train/loss_mask_ce").current()
    term = hub.get_scalar(f"train/loss_mask_{loss}").current()
    assert term > 0
    stage_weight = getattr(model.roi_head, "stage_loss_weights", [1.0])[-1]
    assert losses[mask_keys[-1]].item() == pytest.approx(stage_weight * (ce + term), rel=1e-5)
    total = sum(sum(v) if isinstance(v, (list, tuple)) else v.sum() for k, v in losses.items() if "loss" in k)
    total.backward()
    mask_params = [p for n, p in model.named_parameters() if "mask_head" in n]
    assert mask_params and all(p.grad is not None and torch.isfinite(p.grad).all() for p in mask_params)


@pytest.mark.parametrize("loss", sorted(ONE_LINE))
def test_one_line_keeps_the_checkpoint_keys(tmp_path, loss):
    baseline = UNSHIPPED_BASELINES[0]
    _, with_loss = build_one_line_model(tmp_path, baseline, ONE_LINE[loss])
    _, without = build_one_line_model(tmp_path, baseline, "")
    assert list(with_loss.state_dict()) == list(without.state_dict())
    without.load_state_dict(with_loss.state_dict(), strict=True)


@pytest.mark.slow
def test_one_line_on_a_class_agnostic_head(tmp_path):
    _, model = build_one_line_model(tmp_path, UNSHIPPED_BASELINES[1], ONE_LINE["gpl"],
                                    {"roi_head.mask_head.class_agnostic": True})
    assert model.roi_head.mask_head.conv_logits.out_channels == 1
    data = det_batch(model, size=(64, 96), batch=1)
    model.train()
    losses = model.loss(data["inputs"], data["data_samples"])
    assert torch.isfinite(losses["loss_mask"]).all()
    losses["loss_mask"].sum().backward()
    assert model.roi_head.mask_head.conv_logits.weight.grad.abs().sum() > 0
