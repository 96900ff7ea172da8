"""The demo's report lead (rendered from a results record), the device and preset choice, and the
pictures' choice of what to show: no training here."""
import os

import numpy as np
import pytest

from experiments.demo import report


def results_record(seg_base_line=(9.5, 11.0, 10.2), sr_base_psnr=(30.2, 30.3, 30.25), gpl_line=(14.0, 15.5, 15.0)):
    return dict(
        run=dict(preset="cpu", device="cpu", device_name="Some CPU", command="python tools/demo.py", cpus=2,
                 torch="2.9.1", elapsed_s=600.0, load=[0.1, 2.0], parallel=2,
                 stage_cpu_s=dict(super_resolution=500.0, segmentation=400.0, comparison=30.0)),
        tasks=dict(
            super_resolution=dict(baseline="l1", reference=dict(name="bicubic", PSNR=29.95, SSIM=0.8972), arms={
                "l1": dict(PSNR=list(sr_base_psnr), SSIM=[0.90, 0.901, 0.902]),
                "l1+gpl": dict(PSNR=[30.1, 30.5, 30.2], SSIM=[0.9, 0.9012, 0.9031])}),
            segmentation=dict(baseline="ce", arms={
                "ce": {"IoU.line": list(seg_base_line), "IoU.blob": [0.0, 0.0, 0.0], "mIoU": [45.0, 45.5, 46.0]},
                "ce+gpl": {"IoU.line": list(gpl_line), "IoU.blob": [0.0, 0.0, 0.0], "mIoU": [45.2, 45.1, 46.3]}})))


def test_summary_leads_with_the_regime_checks_then_the_answer_per_task():
    text = report.render_summary(results_record(), {"segmentation": "seg.png"})
    lines = text.splitlines()
    assert lines[0].startswith("Preset `cpu` on Some CPU (cpu), 3 seeds per arm: `python tools/demo.py`")
    assert lines[2] == ("CPU time: super-resolution runs 500 s, segmentation runs 400 s, data and comparison "
                        "30 s: at least 8.0 min on 2 dedicated cores at 2 runs at a time (the training CPU "
                        "time shared evenly).")
    regime = [line for line in lines[:8] if line.startswith("- ")]
    assert "learned the thin class 'line' in every seed (final IoU per seed: 9.50, 11.00, 10.20)" in regime[0]
    assert "did NOT learn the thin class 'blob' in 3 of 3 seeds" in regime[1]
    assert "no arm did" in regime[1]
    assert "beats bicubic upsampling on the validation image in every seed" in regime[2]
    assert "against bicubic's 29.95 dB (by +0.25 to +0.35 dB" in regime[2]
    # the line IoU gain: Welch over 3 seeds, clearly significant; mIoU not
    line_row = [line for line in lines if line.startswith("| IoU.line | `ce+gpl` vs `ce` |")][0]
    assert "| 3 / 3 |" in line_row and "significant (welch)" in line_row and "| `ce+gpl` better |" in line_row
    miou_row = [line for line in lines if line.startswith("| mIoU | `ce+gpl` vs `ce` |")][0]
    assert "not significant (welch)" in miou_row and "no significant difference" in miou_row
    assert "on IoU.line `ce+gpl` better (+4.60, significant)" in text
    assert "![" in text and "(seg.png)" in text
    assert text.index("Segmentation (MMSegmentation") > text.index("beats bicubic")  # checks come first


def test_summary_says_when_the_baselines_did_not_reach_the_regime_with_the_gap():
    text = report.render_summary(results_record(seg_base_line=(0.0, 3.0, 0.0), sr_base_psnr=(29.5, 30.0, 29.8)))
    assert "did NOT learn the thin class 'line' in 2 of 3 seeds (final IoU per seed: 0.00, 3.00, 0.00); " \
           "`ce+gpl` did in some seeds." in text
    assert ("does NOT beat bicubic upsampling on the validation image in 2 of 3 seeds: PSNR 29.50, 30.00, "
            "29.80 dB against bicubic's 29.95 dB (gap -0.45 to +0.05 dB, mean -0.18 dB)") in text
    # the checks are the first lines after the run's line
    first = [line for line in text.splitlines() if line.startswith("- ")][0]
    assert text.splitlines().index(first) == 4 and first.startswith("- Segmentation:") and "NOT" in first


def test_a_thin_class_only_some_baseline_seeds_learned_is_not_called_unlearned_by_every_arm():
    results = results_record()
    results["tasks"]["segmentation"]["arms"]["ce"]["IoU.blob"] = [0.0, 0.0, 1.9]
    text = report.render_summary(results)
    assert ("did NOT learn the thin class 'blob' in 2 of 3 seeds (final IoU per seed: 0.00, 0.00, 1.90); no "
            "other arm did in any seed.") in text


def test_a_worse_arm_is_named_and_two_seeds_give_the_bootstrap_method():
    results = results_record(gpl_line=(1.0, 1.5, 1.2))
    rows = [r for r in report.comparisons("segmentation", results["tasks"]["segmentation"])
            if r["metric"] == "IoU.line"]
    assert rows[0]["better"] == "`ce` better" and rows[0]["diff"].method == "welch"
    assert rows[0]["diff"].value == pytest.approx(np.mean([1.0, 1.5, 1.2]) - np.mean([9.5, 11.0, 10.2]))
    record = results["tasks"]["super_resolution"]
    record["arms"] = {arm: {m: v[:2] for m, v in metrics.items()} for arm, metrics in record["arms"].items()}
    assert {r["diff"].method for r in report.comparisons("super_resolution", record)} == {"bootstrap"}


@pytest.mark.parametrize("cuda, argv, device, preset", [
    (False, [], "cpu", "cpu"),
    (True, [], "cuda", "gpu"),
    (True, ["--device", "cpu"], "cpu", "cpu"),
    (True, ["--quick"], "cuda", "quick"),
    (False, ["--preset", "gpu"], "cpu", "gpu"),
])
def test_device_and_preset_follow_cuda_unless_chosen(monkeypatch, cuda, argv, device, preset):
    import torch

    from experiments.demo import parse_args

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    args = parse_args(argv)
    assert (args.device, args.preset) == (device, preset)


def test_cuda_requested_without_one_is_an_error(monkeypatch, capsys):
    import torch

    from experiments.demo import parse_args

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit):
        parse_args(["--device", "cuda"])
    assert "torch finds no CUDA device" in capsys.readouterr().err


def test_training_processes_see_no_gpu_on_the_cpu_device():
    from experiments.demo.runs import training_env

    assert training_env("cpu")["CUDA_VISIBLE_DEVICES"] == ""
    assert training_env("cpu")["OMP_NUM_THREADS"] == "1"
    assert training_env("cuda").get("CUDA_VISIBLE_DEVICES") == os.environ.get("CUDA_VISIBLE_DEVICES")
    with pytest.raises(ValueError, match="device"):
        training_env("tpu")


def test_presets_give_welch_seeds_and_the_gpu_preset_is_larger():
    from experiments.demo import PRESETS

    for name in ("cpu", "gpu"):
        for stage in ("super_resolution", "segmentation"):
            assert PRESETS[name][stage].seeds >= 3, (name, stage)
    cpu, gpu = PRESETS["cpu"], PRESETS["gpu"]
    for stage in ("super_resolution", "segmentation"):
        assert gpu[stage].seeds > cpu[stage].seeds and gpu[stage].iters > cpu[stage].iters
    assert gpu["super_resolution"].gt_patch > cpu["super_resolution"].gt_patch
    assert (gpu["segmentation"].crop or gpu["segmentation"].size) > (cpu["segmentation"].crop or cpu["segmentation"].size)


def test_sr_crops_go_where_the_arms_differ():
    from experiments.demo.super_resolution import differing_crops

    base = np.zeros((64, 96, 3), np.uint8)
    other = base.copy()
    other[40:56, 60:76] = 200  # the arms differ only there
    # a third arm like the baseline: the crop goes where any arm differs
    corners = differing_crops({"l1": base, "l1+gpl": other, "l1+patch_mmd": base.copy()}, size=16, count=2)
    assert corners[0] == (40, 60)
    top, left = corners[1]
    assert abs(top - 40) >= 16 or abs(left - 60) >= 16  # not overlapping the first


def test_segmentation_scenes_are_chosen_by_disagreement_on_thin_classes():
    from experiments.demo.segmentation import thin_disagreement

    truth = np.zeros((8, 8), np.uint8)
    truth[2, :] = 2  # a line
    agree = [truth.copy(), truth.copy()]
    assert thin_disagreement(agree, truth) == 0
    missed = truth.copy()
    missed[2, :4] = 0
    assert thin_disagreement([truth.copy(), missed], truth) == 4
    # disagreeing about region against background, away from thin classes, does not count
    region = truth.copy()
    region[6, :] = 1
    assert thin_disagreement([truth.copy(), region], truth) == 0
    truth_void = truth.copy()
    truth_void[2, :4] = 255
    assert thin_disagreement([truth.copy(), missed], truth_void) == 0


def test_costly_arms_start_first_and_keep_their_order():
    from experiments.demo.runs import TrainJob, costly_first

    work_dirs = {"ce": ["ce/seed0", "ce/seed1"], "ce+gpl": ["ce+gpl/seed0", "ce+gpl/seed1"]}
    jobs = [TrainJob("c", d, []) for d in ("ce/seed0", "ce+gpl/seed0", "ce/seed1", "ce+gpl/seed1")]
    assert [j.work_dir for j in costly_first(jobs, work_dirs)] == [
        "ce+gpl/seed0", "ce+gpl/seed1", "ce/seed0", "ce/seed1"]
