"""tools/compare.py on output dirs of short real detectron2 runs: Mask R-CNN R50-FPN from the model zoo's
LazyConfig (made tiny, BN for FrozenBN) against its one-line + loss_mask_gpl config, 2 seeds each,
trained through tools/train_net.py for 4 iterations with COCOEvaluator (bbox and segm) every 2 and at
the end. The expected values are read from each run's metrics.json here, independently of the reader."""
import importlib.util
import json
import math
import os
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.detectron2

pytest.importorskip("detectron2.config")  # not the tests/detectron2 folder
from randperc_plugins.compare import load_arms, read_run  # noqa: E402
from randperc_plugins.compare.cli import main as compare_main  # noqa: E402
from experiments.datasets.coco_shapes import make_coco_dataset  # noqa: E402
from train_runs import REPO, detectron2_datasets, detectron2_lazy_opts, run_tools  # noqa: E402

CONFIGS = {"baseline": "detectron2::COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.py",
           "gpl": "configs/detectron2/mask_rcnn_R_50_FPN_1x_gpl.py"}
SEEDS = (0, 1)
METRICS = {f"{task}/{name}" for task in ("bbox", "segm") for name in ("AP", "AP50", "AP75", "APs", "APm", "APl")}
# The toy images (128x128) hold no large object: COCOEvaluator writes NaN for APl.
NOT_EVALUATED = {"bbox/APl", "segm/APl"}
HAS_MMDET = importlib.util.find_spec("mmdet") is not None


@pytest.fixture(scope="module")
def detectron2_runs(tmp_path_factory):
    """``root/{baseline,gpl}/seed{0,1}``: real runs of 4 iterations evaluated after iterations 2 and 4
    (detectron2 writes them at iterations 1 and 4); and ``root/mmdet`` (where mmdet is installed), a
    real run of the tiny mmdet Mask R-CNN on the same data, for the mixing check; all at once."""
    from detectron2 import model_zoo

    root = tmp_path_factory.mktemp("detectron2_compare")
    data = make_coco_dataset(str(root / "data"), num_train=4, num_val=2, size=128)
    commands = []
    for arm, config in CONFIGS.items():
        if config.startswith("detectron2::"):
            config = model_zoo.get_config_file(config[len("detectron2::"):])
        for seed in SEEDS:
            commands.append([sys.executable, "tools/train_net.py", "--config-file", config]
                            + detectron2_datasets(data)
                            + detectron2_lazy_opts(root / arm / f"seed{seed}", 4, "train.eval_period=2",
                                                   f"train.seed={seed}"))
    if HAS_MMDET:
        ann = os.path.join(data, "annotations", "instances_val.json")
        commands.append([sys.executable, "tools/train.py", os.path.join(REPO, "tests", "mmdet", "data",
                                                                        "toy_mask_rcnn.py"),
                         "--work-dir", str(root / "mmdet"), "--cfg-options",
                         f"train_dataloader.dataset.data_root={data}/", f"val_dataloader.dataset.data_root={data}/",
                         f"val_evaluator.ann_file={ann}"])
    run_tools(commands)
    # compare.py reads the logs, never the weights (~335 MB a run): gone, so the suite's disk stays small
    for checkpoint in root.rglob("*.pth"):
        checkpoint.unlink()
    return root


def _records(out):
    with open(os.path.join(out, "metrics.json")) as f:
        return [json.loads(line) for line in f]


def _evaluations(out):
    """``{iteration: record}`` of the evaluation records, in iteration order."""
    return dict(sorted((r["iteration"], r) for r in _records(out) if "segm/AP" in r))


def test_reads_a_detectron2_output_dir(detectron2_runs):
    out = str(detectron2_runs / "gpl" / "seed1")
    run = read_run(out)
    assert run.framework == "detectron2"
    records = _records(out)
    # detectron2's quirks, as written: the first evaluation shares the record of its iteration with the
    # losses, the last one has a record of its own at max_iter, after the last training record
    train = sorted((r for r in records if "loss_mask_gpl" in r), key=lambda r: r["iteration"])
    assert [r["iteration"] for r in train] == [0, 1, 2, 3]
    evaluations = _evaluations(out)
    assert list(evaluations) == [1, 4]
    assert "loss_mask" in evaluations[1] and "loss_mask" not in evaluations[4]
    assert any("-" in key for key in evaluations[4]), "no per-category AP (segm/AP-<category>) written"
    assert {"loss_mask", "loss_mask_gpl", "total_loss", "loss_cls"} <= set(run.losses)
    assert run.losses["loss_mask_gpl"] == ([0, 1, 2, 3], [r["loss_mask_gpl"] for r in train])
    # per-category AP and the training statistics (fast_rcnn/..., mask_rcnn/...) are not metrics
    assert set(run.metrics) == METRICS
    for key in METRICS:
        iters, values = run.metrics[key]
        assert iters == [1, 4]
        np.testing.assert_array_equal(values, [r[key] for r in evaluations.values()])
    assert all(math.isnan(v) for key in NOT_EVALUATED for v in run.metrics[key][1])
    assert run.per_class is None and run.per_class_note == ""


def test_compare_cli_on_detectron2_runs(detectron2_runs, tmp_path, capsys):
    out = tmp_path / "report"
    result = compare_main([str(detectron2_runs / "baseline" / "seed*"), str(detectron2_runs / "gpl"),
                           "--out", str(out), "--no-progress"])
    printed = capsys.readouterr().out
    rows = {(r["arm"], r["metric"], r["kind"]): r for r in result["rows"]}
    evaluated = sorted(METRICS - NOT_EVALUATED)
    assert {metric for _, metric, _ in rows} == set(evaluated)
    for arm in CONFIGS:
        evaluations = [list(_evaluations(str(detectron2_runs / arm / f"seed{seed}")).values()) for seed in SEEDS]
        for metric in evaluated:
            assert rows[(arm, metric, "final")]["values"] == [e[-1][metric] for e in evaluations], (arm, metric)
            assert rows[(arm, metric, "best")]["values"] == [max(r[metric] for r in e) for e in evaluations]
            assert rows[(arm, metric, "final")]["seeds"] == 2
    assert rows[("baseline", "segm/AP", "final")]["diff"] is None
    assert rows[("gpl", "segm/AP", "final")]["diff"] is not None

    md = (out / "compare.md").read_text()
    assert md.startswith("# detectron2 runs against the baseline `baseline`")
    for arm in CONFIGS:
        for metric in evaluated:
            assert f"| {arm} | 2 | {metric} |" in md
    assert "Per-class" not in md and "per-class" not in md and "nan" not in md
    assert "Not evaluated in any run" in md and "bbox/APl, segm/APl" in md
    assert "gpl vs baseline: final segm/AP" in printed
    with open(out / "metrics.csv") as f:
        lines = f.read().splitlines()
    assert len(lines) == 1 + len(evaluated) * 2 * 2  # metrics x final/best x 2 arms
    assert not (out / "per_class_iou.csv").exists()
    import matplotlib.image
    for name in ["loss_loss_mask_gpl", "loss_loss_mask", "loss_total_loss", "metric_bbox_AP", "metric_segm_AP"]:
        image = matplotlib.image.imread(str(out / "curves" / f"{name}.png"))
        assert image.ndim == 3 and image.shape[0] > 100
    assert not (out / "curves" / "metric_segm_APl.png").exists()


@pytest.mark.skipif(not HAS_MMDET, reason="mmdet is not installed")
def test_detectron2_and_mmdet_work_dirs_are_not_compared(detectron2_runs, tmp_path):
    mmdet = str(detectron2_runs / "mmdet")
    assert read_run(mmdet).framework == "mmdet"
    with pytest.raises(ValueError, match=r"mmdet was written by mmdet but .*seed0 by detectron2; compare "
                                         r"runs of one framework"):
        load_arms([str(detectron2_runs / "baseline"), mmdet], progress=False)
    with pytest.raises(SystemExit, match="compare: .*written by detectron2 but .*mmdet; compare runs of one "
                                         "framework"):
        compare_main([mmdet, str(detectron2_runs / "gpl"), "--out", str(tmp_path / "r"), "--no-progress"])
