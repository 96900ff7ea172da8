"""The quick demo end to end (real MMagic and MMSegmentation runs through tools/train.py), and its report."""
import csv
import glob
import json
import os

import numpy as np
import pytest

pytest.importorskip("mmseg")
pytest.importorskip("mmagic")


def _final_values(scalars_glob, metric):
    """The last logged value of ``metric`` in each run's scalars.json (the runs' own record)."""
    finals = []
    for scalars in sorted(glob.glob(scalars_glob)):
        with open(scalars) as f:
            finals.append([json.loads(line) for line in f if f'"{metric}"' in line][-1][metric])
    return finals


def _check_final_rows(csv_path, metric, arm_names, runs_dir):
    with open(csv_path) as f:
        rows = [r for r in csv.DictReader(f) if r["metric"] == metric and r["kind"] == "final"]
    assert [r["arm"] for r in rows] == arm_names
    def finals_of(arm):
        return _final_values(str(runs_dir / arm / "seed*" / "*" / "vis_data" / "scalars.json"), metric)

    for row in rows:
        finals = finals_of(row["arm"])
        assert len(finals) == int(row["seeds"]) == 2
        assert float(row["mean"]) == pytest.approx(np.mean(finals))
        assert float(row["std"]) == pytest.approx(np.std(finals, ddof=1))
        if row["arm"] != arm_names[0]:
            assert float(row["diff"]) == pytest.approx(np.mean(finals) - np.mean(finals_of(arm_names[0])))
            assert row["verdict"] in ("significant", "not significant")


@pytest.mark.slow
def test_quick_demo_writes_a_consistent_report(tmp_path, capsys):
    from randperc_plugins.demo import main

    out = tmp_path / "demo_report"
    result = main(["--quick", "--out", str(out)])
    printed = capsys.readouterr().out

    sr = out / "super_resolution"
    for name in ("compare.md", "metrics.csv", "samples.png", "curves/loss_loss_pix.png",
                 "curves/loss_loss_gpl.png", "curves/loss_loss_patch_mmd.png",
                 "curves/metric_PSNR.png", "curves/metric_SSIM.png"):
        assert (sr / name).is_file(), name
    for metric in ("PSNR", "SSIM"):
        _check_final_rows(sr / "metrics.csv", metric, ["l1", "l1+gpl", "l1+patch_mmd"],
                          out / "runs" / "super_resolution")
    assert "| l1+gpl | 2 | PSNR |" in (sr / "compare.md").read_text()

    seg = out / "segmentation"
    for name in ("compare.md", "metrics.csv", "per_class_iou.csv", "samples.png",
                 "curves/loss_decode.loss_ce.png", "curves/loss_decode.loss_gpl.png",
                 "curves/loss_decode.loss_patch_mmd.png", "curves/metric_mIoU.png"):
        assert (seg / name).is_file(), name

    # The tables hold what the runs logged: final values per seed, read here from each scalars.json.
    _check_final_rows(seg / "metrics.csv", "mIoU", ["ce", "ce+gpl", "ce+patch_mmd"],
                      out / "runs" / "segmentation")

    readme = (out / "README.md").read_text()
    assert "[1/3] super-resolution (MMagic): 3 arms x 2 seeds, EDSR x2" in readme
    assert "10 iterations each" in readme.split("[2/3]")[0]
    assert "l1+gpl vs l1: final PSNR" in readme and "l1+patch_mmd vs l1: final SSIM" in readme
    assert "[1/3] super-resolution (MMagic)" in printed
    assert "[2/3] segmentation (MMSegmentation): 3 arms x 2 seeds, 20 iterations each" in readme
    assert "ce+gpl vs ce: final mIoU" in readme and "ce+patch_mmd vs ce: final mIoU" in readme
    assert "final IoU of class 'line'" in readme and "demo finished in" in readme
    # SR: PSNR and SSIM per arm; segmentation: mIoU, line and blob IoU per arm
    assert len(result["findings"]) == 2 * 2 + 2 + 2 * 2

    import matplotlib.image
    picture = matplotlib.image.imread(str(seg / "samples.png"))
    assert picture.shape[1] > picture.shape[0]  # 4 samples x 5 panels (input, 3 arms, ground truth)
    # 3 crops x 5 panels (input upsampled, 3 arms, ground truth), 90 dpi
    sr_picture = matplotlib.image.imread(str(sr / "samples.png"))
    assert sr_picture.shape[:2] == (round(2.1 * 3 * 90), round(1.9 * 5 * 90))
