"""Training a small Mask R-CNN through tools/train.py and tools/dist_train.sh on the toy COCO dataset: 2 CPU
processes on gloo with CocoMetric (bbox and segm AP), the same loss network on every rank, baseline
checkpoint compatibility, and a zero loss weight that reproduces the baseline exactly."""
import os
import sys

import pytest
import torch

pytest.importorskip("mmdet")
pytest.importorskip("pycocotools")
from mmengine.config import Config  # noqa: E402
from mmdet.registry import MODELS  # noqa: E402
from mmdet.utils import register_all_modules  # noqa: E402

from experiments.datasets.coco_shapes import make_coco_dataset  # noqa: E402
from train_runs import logged_scalars, loss_weights_on_ranks, write_config  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TOY_CONFIG = os.path.join(HERE, "data", "toy_mask_rcnn.py")
GPL_LINE = ("model = dict(roi_head=dict(mask_head=dict(loss_mask=dict("
            "type='randperc_plugins.mmdet.AddRandomCNNPerceptualLoss'{extra}))))")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return make_coco_dataset(str(tmp_path_factory.mktemp("coco_shapes")), num_train=8, num_val=4)


def _config(tmp_path, name, body):
    return write_config(tmp_path, TOY_CONFIG, name, body)


def _data_options(root):
    ann = os.path.join(root, "annotations", "instances_val.json")
    return ["--cfg-options"] + [f"{split}_dataloader.dataset.data_root={root}/"
                                for split in ("train", "val", "test")] + \
        [f"val_evaluator.ann_file={ann}", f"test_evaluator.ann_file={ann}"]


def _scalars(work_dir):
    rows = logged_scalars(work_dir)
    return [r for r in rows if "loss" in r], [r for r in rows if "coco/segm_mAP" in r]


def _baseline_model():
    register_all_modules(init_default_scope=True)
    return MODELS.build(Config.fromfile(TOY_CONFIG).model)


@pytest.mark.dist
def test_two_process_cpu_training_with_coco_metric_loads_into_the_baseline(tmp_path, data_root, run_tool,
                                                                           free_port):
    cfg = _config(tmp_path, "toy_gpl", GPL_LINE.format(extra="") +
                  "\ncustom_hooks = [dict(type='loss_weights_probe.LossWeightsProbe', match='loss_mask')]")
    work_dir = str(tmp_path / "work")
    run_tool(["bash", "tools/dist_train.sh", cfg, "2", "--work-dir", work_dir] + _data_options(data_root),
             pythonpath=[HERE], PORT=str(free_port()))

    losses, metrics = _scalars(work_dir)
    assert [row["iter"] for row in losses] == [1, 2, 3, 4]
    for row in losses:
        for key in ("loss", "loss_mask", "loss_mask_ce", "loss_mask_gpl"):
            assert torch.isfinite(torch.tensor(row[key])), key
    # mmdet's CocoMetric ran through pycocotools on both box and mask results (AP is near 0 after 4
    # iterations; -1 would mean nothing was evaluated for that area range).
    assert len(metrics) == 1
    for key in ("coco/bbox_mAP", "coco/segm_mAP", "coco/bbox_mAP_50", "coco/segm_mAP_50"):
        assert 0.0 <= metrics[0][key] <= 1.0, key

    # The random loss network is the same on both ranks (compared, not assumed).
    ranks = loss_weights_on_ranks(work_dir)
    assert ranks[0] == ranks[1] and "loss_mask" in ranks[0]

    ckpt = torch.load(os.path.join(work_dir, "iter_4.pth"), map_location="cpu", weights_only=False)
    assert not any("loss_mask" in k for k in ckpt["state_dict"])
    _baseline_model().load_state_dict(ckpt["state_dict"], strict=True)


def test_zero_loss_weight_reproduces_the_baseline_run(tmp_path, data_root, run_tool):
    runs = {}
    for name, body in (("baseline", ""),
                       ("zero", GPL_LINE.format(extra=", perceptual=dict(loss_weight=0.0)"))):
        work_dir = str(tmp_path / name)
        run_tool([sys.executable, "tools/train.py", _config(tmp_path, name, body), "--work-dir", work_dir]
                 + _data_options(data_root) + ["train_cfg.val_interval=100"], pythonpath=[HERE])
        ckpt = torch.load(os.path.join(work_dir, "iter_4.pth"), map_location="cpu", weights_only=False)
        runs[name] = (ckpt["state_dict"], _scalars(work_dir)[0])
    (base_state, base_log), (zero_state, zero_log) = runs["baseline"], runs["zero"]
    assert list(base_state) == list(zero_state)
    for key in base_state:
        assert torch.equal(base_state[key], zero_state[key]), key
    assert len(base_log) == len(zero_log) == 4
    for base_row, zero_row in zip(base_log, zero_log):
        for key in ("loss", "loss_mask", "loss_cls", "loss_bbox", "loss_rpn_cls", "acc"):
            assert base_row[key] == zero_row[key], key
        assert zero_row["loss_mask_gpl"] == 0.0 and zero_row["loss_mask_ce"] == base_row["loss_mask"]
