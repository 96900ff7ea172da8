"""tools/compare.py on work dirs of short real MMDetection runs: the tiny Mask R-CNN of
tests/mmdet/data/toy_mask_rcnn.py, mask cross-entropy against the one-line cross-entropy + patch-MMD,
2 seeds each, trained through tools/train.py with mmdet's own epoch-based loop and CocoMetric (bbox and
segm, per-category AP on) after each of 2 epochs. The expected values are read from each run's
scalars.json here, independently of the reader."""
import json
import os
import sys

import numpy as np
import pytest

pytest.importorskip("mmdet")
pytest.importorskip("pycocotools")
from randperc_plugins.compare import load_arms, read_run  # noqa: E402
from randperc_plugins.compare.cli import main as compare_main  # noqa: E402
from experiments.datasets.coco_shapes import make_coco_dataset  # noqa: E402
from train_runs import REPO, logged_scalars, run_tools, write_config  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TOY_CONFIG = os.path.join(HERE, "data", "toy_mask_rcnn.py")
# mmdet's own schedule form: epochs, metrics logged by epoch (its logger's default); 2 epochs of 2
# iterations (4 images, batch 2), a validation after each.
EPOCHS = """
train_dataloader = dict(sampler=dict(type='DefaultSampler', shuffle=True))
train_cfg = dict(_delete_=True, type='EpochBasedTrainLoop', max_epochs=2, val_interval=1)
default_hooks = dict(checkpoint=dict(by_epoch=True, interval=2))
log_processor = dict(by_epoch=True)
"""
PATCH_MMD_LINE = ("model = dict(roi_head=dict(mask_head=dict(loss_mask=dict("
                  "type='randperc_plugins.mmdet.AddPatchMMDLoss'))))")
SEEDS = (0, 1)
METRICS = {f"coco/{kind}_mAP{suffix}" for kind in ("bbox", "segm")
           for suffix in ("", "_50", "_75", "_s", "_m", "_l")}
# The toy images (128x128) hold no object larger than 96x96 pixels: COCO logs -1 for these.
NOT_EVALUATED = {"coco/bbox_mAP_l", "coco/segm_mAP_l"}


@pytest.fixture(scope="module")
def mmdet_runs(tmp_path_factory):
    """``root/{ce,ce_patch_mmd}/seed{0,1}``: real runs of 2 epochs (4 iterations), all four at once."""
    root = tmp_path_factory.mktemp("mmdet_compare")
    data = make_coco_dataset(str(root / "data"), num_train=4, num_val=2)
    ann = os.path.join(data, "annotations", "instances_val.json")
    commands = []
    for arm, body in (("ce", EPOCHS), ("ce_patch_mmd", EPOCHS + PATCH_MMD_LINE)):
        cfg = write_config(root, TOY_CONFIG, arm, body)
        for seed in SEEDS:
            # score_thr 0 keeps the low-scored boxes of a 4-step model, so that AP is not all 0
            commands.append([sys.executable, "tools/train.py", cfg, "--work-dir", str(root / arm / f"seed{seed}"),
                             "--cfg-options", f"train_dataloader.dataset.data_root={data}/",
                             f"val_dataloader.dataset.data_root={data}/", f"val_evaluator.ann_file={ann}",
                             "val_evaluator.classwise=True", "model.test_cfg.rcnn.score_thr=0.0",
                             f"randomness.seed={seed}"])
    run_tools(commands)
    return root


def _validations(work_dir):
    return [r for r in logged_scalars(work_dir) if "coco/bbox_mAP" in r]


def _metric(value):
    return float("nan") if value == -1 else value  # COCO's "not evaluated"


def test_reads_an_mmdet_work_dir(mmdet_runs):
    work_dir = str(mmdet_runs / "ce_patch_mmd" / "seed1")
    run = read_run(work_dir)
    assert run.framework == "mmdet"
    rows = logged_scalars(work_dir)
    train = [r for r in rows if "loss" in r]
    val = _validations(work_dir)
    assert [r["epoch"] for r in train] == [1, 1, 2, 2] and [r["step"] for r in val] == [1, 2]
    # the added term, beside the baseline's terms, at every logged iteration
    assert {"loss", "loss_mask", "loss_mask_ce", "loss_mask_patch_mmd", "loss_cls", "loss_bbox"} <= set(run.losses)
    assert run.losses["loss_mask_patch_mmd"] == ([1, 2, 3, 4], [r["loss_mask_patch_mmd"] for r in train])
    # metrics logged by epoch sit at the last iteration of their epoch; per-category AP
    # (coco/<category>_precision) and the *_copypaste strings are not metrics
    assert any(key.endswith("_precision") for key in val[0]), "classwise=True logged no per-category AP"
    assert set(run.metrics) == METRICS
    for key in METRICS:
        iters, values = run.metrics[key]
        assert iters == [2, 4]
        np.testing.assert_array_equal(values, [_metric(r[key]) for r in val])
    assert np.isnan(run.metrics["coco/segm_mAP_l"][1]).all()
    assert run.per_class is None and run.per_class_note == ""


def test_compare_cli_on_mmdet_runs(mmdet_runs, tmp_path, capsys):
    out = tmp_path / "report"
    result = compare_main([str(mmdet_runs / "ce"), str(mmdet_runs / "ce_patch_mmd"), "--out", str(out),
                           "--no-progress"])
    printed = capsys.readouterr().out
    rows = {(r["arm"], r["metric"], r["kind"]): r for r in result["rows"]}
    evaluated = sorted(METRICS - NOT_EVALUATED)
    assert {metric for _, metric, _ in rows} == set(evaluated)
    # final and best of every seed, as the raw logs give them
    for arm in ("ce", "ce_patch_mmd"):
        val = [_validations(str(mmdet_runs / arm / f"seed{seed}")) for seed in SEEDS]
        for metric in evaluated:
            assert rows[(arm, metric, "final")]["values"] == [v[-1][metric] for v in val], (arm, metric)
            assert rows[(arm, metric, "best")]["values"] == [max(r[metric] for r in v) for v in val]
            assert rows[(arm, metric, "final")]["seeds"] == 2
    base = rows[("ce", "coco/bbox_mAP_50", "final")]["values"]
    ours = rows[("ce_patch_mmd", "coco/bbox_mAP_50", "final")]
    assert ours["diff"].value == pytest.approx(np.mean(ours["values"]) - np.mean(base))
    assert rows[("ce", "coco/segm_mAP", "final")]["diff"] is None

    md = (out / "compare.md").read_text()
    assert md.startswith("# mmdet runs against the baseline `ce`")
    for arm in ("ce", "ce_patch_mmd"):
        for metric in evaluated:
            assert f"| {arm} | 2 | {metric} |" in md
    assert "Per-class" not in md and "per-class" not in md
    assert "Not evaluated in any run" in md and "coco/bbox_mAP_l, coco/segm_mAP_l" in md
    assert "copypaste" not in md and "_precision" not in md and "nan" not in md
    assert "ce_patch_mmd vs ce: final coco/segm_mAP" in printed
    with open(out / "metrics.csv") as f:
        lines = f.read().splitlines()
    assert len(lines) == 1 + len(evaluated) * 2 * 2  # metrics x final/best x 2 arms
    assert not (out / "per_class_iou.csv").exists()
    import matplotlib.image
    for name in ["loss_loss_mask_patch_mmd", "loss_loss_mask_ce", "loss_loss_mask", "loss_loss"] + \
            [f"metric_{m.replace('/', '_')}" for m in evaluated]:
        image = matplotlib.image.imread(str(out / "curves" / f"{name}.png"))
        assert image.ndim == 3 and image.shape[0] > 100
    assert not (out / "curves" / "metric_coco_bbox_mAP_l.png").exists()


def test_mmdet_runs_against_runs_of_another_framework_are_refused(mmdet_runs, tmp_path):
    # a detectron2 output dir (the format, hand-written: detectron2 is not needed for the check)
    d2 = tmp_path / "d2"
    d2.mkdir()
    (d2 / "metrics.json").write_text(json.dumps({"iteration": 3, "total_loss": 1.0, "segm/AP": 2.0}) + "\n")
    with pytest.raises(ValueError, match=r"written by detectron2 but .*seed0 by mmdet; compare runs of one "
                                         r"framework"):
        load_arms([str(mmdet_runs / "ce"), str(d2)], progress=False)
    with pytest.raises(SystemExit, match="compare: .*compare runs of one framework"):
        compare_main([str(mmdet_runs / "ce"), str(d2), "--out", str(tmp_path / "r"), "--no-progress"])
