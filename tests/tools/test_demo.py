"""The quick demo end to end (real MMSegmentation runs through tools/train.py), and its report."""
import csv
import glob
import json
import os

import numpy as np
import pytest

pytest.importorskip("mmseg")


@pytest.mark.slow
def test_quick_demo_writes_a_consistent_report(tmp_path, capsys):
    from randperc_plugins.demo import main, super_resolution

    out = tmp_path / "demo_report"
    result = main(["--quick", "--out", str(out)])
    printed = capsys.readouterr().out

    seg = out / "segmentation"
    for name in ("compare.md", "metrics.csv", "per_class_iou.csv", "samples.png",
                 "curves/loss_decode.loss_ce.png", "curves/loss_decode.loss_gpl.png",
                 "curves/loss_decode.loss_patch_mmd.png", "curves/metric_mIoU.png"):
        assert (seg / name).is_file(), name

    # The tables hold what the runs logged: final mIoU per seed, read here from each scalars.json.
    with open(seg / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["metric"] == "mIoU" and r["kind"] == "final"]
    assert [r["arm"] for r in rows] == ["ce", "ce+gpl", "ce+patch_mmd"]
    for row in rows:
        finals = []
        for scalars in sorted(glob.glob(str(out / "runs" / "segmentation" / row["arm"] / "seed*" / "*"
                                            / "vis_data" / "scalars.json"))):
            with open(scalars) as f:
                finals.append([json.loads(line) for line in f if "mIoU" in line][-1]["mIoU"])
        assert len(finals) == int(row["seeds"]) == 2
        assert float(row["mean"]) == pytest.approx(np.mean(finals))
        if row["arm"] != "ce":
            assert row["verdict"] in ("significant", "not significant")

    readme = (out / "README.md").read_text()
    assert "[2/3] segmentation (MMSegmentation): 3 arms x 2 seeds, 20 iterations each" in readme
    assert "ce+gpl vs ce: final mIoU" in readme and "ce+patch_mmd vs ce: final mIoU" in readme
    assert "final IoU of class 'line'" in readme and "demo finished in" in readme
    if super_resolution.missing_modules():
        assert "[1/3] super-resolution (MMagic): skipped: needs randperc_plugins.mmagic" in printed
    assert len(result["findings"]) == 2 + 2 * 2  # mIoU per arm, line and blob IoU per arm

    import matplotlib.image
    picture = matplotlib.image.imread(str(seg / "samples.png"))
    assert picture.shape[1] > picture.shape[0]  # 4 samples x 5 panels (input, 3 arms, ground truth)
