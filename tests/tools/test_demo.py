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


def _run_quick(out, argv=()):
    from experiments.demo import main

    return main(["--quick", "--device", "cpu", "--out", str(out), *argv])


@pytest.mark.slow
def test_quick_demo_writes_a_consistent_report_and_repeats_to_the_last_digit(tmp_path, capsys):
    out = tmp_path / "demo_report"
    result = _run_quick(out)
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

    # results.json holds the same final values, and the report's lead is rendered from it alone
    results = json.loads((out / "results.json").read_text())
    assert results["run"]["preset"] == "quick" and results["run"]["device"] == "cpu"
    for arm in ("l1", "l1+gpl", "l1+patch_mmd"):
        assert results["tasks"]["super_resolution"]["arms"][arm]["PSNR"] == _final_values(
            str(out / "runs" / "super_resolution" / arm / "seed*" / "*" / "vis_data" / "scalars.json"), "PSNR")
    from experiments.demo import PICTURES, report
    readme = (out / "README.md").read_text()
    assert readme.startswith("# randperc_plugins demo report\n\n" + report.render_summary(results, PICTURES))
    assert "Super-resolution: the baseline `l1`" in readme and "bicubic" in readme
    assert "Segmentation: the baseline `ce`" in readme and "'line'" in readme
    assert "| IoU.line | `ce+gpl` vs `ce` | 2 / 2 |" in readme and "| PSNR | `l1+patch_mmd` vs `l1` |" in readme
    assert "[1/3] super-resolution (MMagic): 3 arms x 2 seeds, EDSR x2" in readme
    assert "10 iterations each" in readme.split("[2/3]")[0]
    assert "[2/3] segmentation (MMSegmentation): 3 arms x 2 seeds, 20 iterations each" in readme
    assert "[1/3] super-resolution (MMagic)" in printed and "summary:" in printed
    assert set(results["run"]["stage_cpu_s"]) == {"super_resolution", "segmentation", "comparison"}
    for times in (out / "runs").glob("*/*/seed*/times.json"):
        assert json.loads(times.read_text())["cpu_s"] > 0

    # the bicubic reference and a model's output are measured as the runs' validation measures
    from experiments.demo import super_resolution
    data = str(out / "runs" / "super_resolution" / "data")
    gt, lq = super_resolution.validation_pair(data)
    reference = results["tasks"]["super_resolution"]["reference"]
    assert 25 < reference["PSNR"] < 35
    assert reference["PSNR"] == super_resolution.image_metrics(super_resolution.bicubic_upsample(lq), gt)["PSNR"]
    dirs = {"l1": sorted(str(p) for p in (out / "runs" / "super_resolution" / "l1").glob("seed*"))}
    seed0 = super_resolution.image_metrics(super_resolution.predict_validation(dirs, data)["l1"], gt)
    assert seed0["PSNR"] == pytest.approx(results["tasks"]["super_resolution"]["arms"]["l1"]["PSNR"][0], abs=0.05)

    import matplotlib.image
    picture = matplotlib.image.imread(str(seg / "samples.png"))
    assert picture.shape[1] > picture.shape[0]  # 4 samples x 5 panels (input, 3 arms, ground truth)
    # 3 crops x 5 panels (input upsampled, 3 arms, ground truth), 90 dpi
    sr_picture = matplotlib.image.imread(str(sr / "samples.png"))
    assert sr_picture.shape[:2] == (round(2.1 * 3 * 90), round(1.9 * 5 * 90))

    # Deterministic on one machine: the same command again gives every metric to the last digit.
    again = tmp_path / "again"
    _run_quick(again)
    assert json.loads((again / "results.json").read_text())["tasks"] == results["tasks"]
    for name in ("super_resolution/metrics.csv", "segmentation/metrics.csv", "segmentation/per_class_iou.csv"):
        assert (again / name).read_text().replace(str(again), str(out)) == (out / name).read_text(), name


@pytest.mark.slow
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device")
def test_quick_demo_trains_on_the_gpu_by_default_where_there_is_one(tmp_path):
    import torch

    from experiments.demo import main

    out = tmp_path / "demo_report"
    main(["--quick", "--out", str(out)])
    results = json.loads((out / "results.json").read_text())
    assert results["run"]["device"] == "cuda"
    assert results["run"]["device_name"] == torch.cuda.get_device_name(0)
    stdout = (out / "runs" / "segmentation" / "ce" / "seed0" / "train_stdout.txt").read_text()
    assert "cuda" in stdout.lower()
