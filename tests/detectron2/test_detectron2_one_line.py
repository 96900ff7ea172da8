"""The one line on detectron2 baselines the project does not ship, in both config systems: the model
builds with our head (every other head argument the baseline's) and a CPU train step gives finite
losses with gradients, ours among them."""
import pytest
import torch

pytestmark = pytest.mark.detectron2

pytest.importorskip("detectron2.config")  # not the tests/detectron2 folder
from randperc_plugins.benchmarks import _detectron2_models as dm  # noqa: E402
from randperc_plugins.detectron2 import (MaskRCNNConvUpsampleHeadWithGPL,  # noqa: E402
                                         MaskRCNNConvUpsampleHeadWithPatchMMD)

HEAD_CLASSES = {"gpl": MaskRCNNConvUpsampleHeadWithGPL, "patch_mmd": MaskRCNNConvUpsampleHeadWithPatchMMD}
KEYS = {"gpl": "loss_mask_gpl", "patch_mmd": "loss_mask_patch_mmd"}
BASELINES = [
    "Misc/cascade_mask_rcnn_R_50_FPN_1x.yaml",                     # YAML, cascade box heads
    "COCO-InstanceSegmentation/mask_rcnn_R_101_FPN_3x.yaml",       # YAML, R101
    "Misc/mask_rcnn_R_50_FPN_1x_cls_agnostic.yaml",                # YAML, one mask channel
    "new_baselines/mask_rcnn_R_50_FPN_100ep_LSJ.py",               # LazyConfig, SyncBN / GN-like norms
]


CASES = [(BASELINES[0], "gpl"), (BASELINES[1], "patch_mmd"), (BASELINES[2], "patch_mmd"),
         (BASELINES[3], "gpl"), (BASELINES[3], "patch_mmd")]


def _baseline_mask_head(cfg):
    from detectron2.config import instantiate
    from detectron2.modeling.roi_heads import build_mask_head

    if hasattr(cfg, "MODEL"):
        from detectron2.layers import ShapeSpec
        return build_mask_head(cfg, ShapeSpec(channels=cfg.MODEL.FPN.OUT_CHANNELS,
                                              width=cfg.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION,
                                              height=cfg.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION))
    return instantiate(cfg.model.roi_heads.mask_head)


@pytest.mark.parametrize("baseline,loss", CASES)
def test_one_line_builds_and_trains_a_step(baseline, loss):
    base_head = _baseline_mask_head(dm.model_zoo_config(baseline))
    model = dm.build_model(dm.few_rois(dm.model_zoo_config(baseline, mask_head=loss)))
    head = model.roi_heads.mask_head
    assert type(head) is HEAD_CLASSES[loss]
    # every other argument of the baseline head kept: same layers and shapes (norms included)
    base_state, state = base_head.state_dict(), head.state_dict()
    assert list(state) == list(base_state)
    for key, value in base_state.items():
        assert state[key].shape == value.shape, key
    assert [type(m) for m in list(head.modules())[1:]] == [type(m) for m in list(base_head.modules())[1:]]

    losses = dm.d2_train_step(model, dm.d2_batch(size=(64, 64), num_images=2, num_instances=2))
    assert "loss_mask" in losses and KEYS[loss] in losses
    for name, value in losses.items():
        assert torch.isfinite(value), name
        assert value.requires_grad, name
    assert losses[KEYS[loss]] > 0
    grad = head.predictor.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def _docs_detectron2_section():
    """The code blocks of the Detectron2 page's "The one line" section (docs/detectron2.md)."""
    import os
    import re
    page = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                        "docs", "detectron2.md")
    text = open(page).read()
    section = text.split("## The one line\n", 1)[1].split("\n## ", 1)[0]
    return (re.findall(r"```py\n(.*?)```", section, flags=re.S),
            re.findall(r"```yaml\n(.*?)```", section, flags=re.S))


def test_the_readme_gives_the_pages_lazyconfig_line():
    import os
    import re
    readme = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                          "README.md")
    readme_lines = [line for block in re.findall(r"```py\n(.*?)```", open(readme).read(), flags=re.S)
                    for line in block.splitlines() if line.strip()]
    page_lines = [line for block in _docs_detectron2_section()[0] for line in block.splitlines()]
    assert readme_lines and set(readme_lines) <= set(page_lines)


@pytest.mark.parametrize("index", range(2))
def test_docs_lazyconfig_lines_select_each_head(index):
    from detectron2.config import instantiate
    py_blocks, _ = _docs_detectron2_section()
    lines = [line for block in py_blocks for line in block.splitlines() if line.strip()]
    cfg = dm.model_zoo_config("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.py")
    exec(lines[index], {"model": cfg.model})
    head = instantiate(cfg.model.roi_heads.mask_head)
    assert type(head) is (MaskRCNNConvUpsampleHeadWithGPL, MaskRCNNConvUpsampleHeadWithPatchMMD)[index]


def test_docs_yaml_lines_select_the_head(tmp_path):
    from detectron2.config import get_cfg
    from detectron2.modeling.roi_heads import ROI_MASK_HEAD_REGISTRY
    _, yaml_blocks = _docs_detectron2_section()
    path = tmp_path / "one_line.yaml"
    path.write_text(yaml_blocks[0])
    cfg = get_cfg()
    cfg.merge_from_file(str(path))
    assert ROI_MASK_HEAD_REGISTRY.get(cfg.MODEL.ROI_MASK_HEAD.NAME) is MaskRCNNConvUpsampleHeadWithGPL
