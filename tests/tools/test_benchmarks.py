"""The benchmark scripts run end to end on tiny shapes and report what their tables promise."""
import math

import pytest
import torch

from randperc_plugins.benchmarks import patch_mmd as bench_patch_mmd
from randperc_plugins.benchmarks.common import time_in_turns


def test_time_in_turns_runs_each_case_in_turn():
    calls = []
    fns = {name: (lambda name=name: calls.append(name)) for name in ("a", "b")}
    times = time_in_turns(fns, torch.device("cpu"), repeat=3)
    assert calls == ["a", "b"] * 3
    assert set(times) == {"a", "b"} and all(t >= 0 for t in times.values())


def test_bench_patch_mmd_tables_on_tiny_shapes(monkeypatch):
    monkeypatch.setattr(bench_patch_mmd, "SIDES", {100: 16, 196: 20})
    monkeypatch.setattr(bench_patch_mmd, "SR_SHAPES", ((20, "tiny"),))
    monkeypatch.setattr(bench_patch_mmd, "SR_FEATURES", (16, 64))
    monkeypatch.setattr(bench_patch_mmd, "SR_SEEDS", 2)
    monkeypatch.setattr(bench_patch_mmd, "SR_BATCH", 2)
    rows = bench_patch_mmd.run(torch.device("cpu"), quick=False)
    scaling = [r for r in rows if r["table"] == "scaling" and "time_s" in r]
    sr = [r for r in rows if r["table"] == "sr"]
    methods = {r["method"] for r in scaling}
    assert {"exact", "dense", "rf"} <= methods
    for r in scaling:
        assert r["time_s"] > 0 and math.isfinite(r["time_vs_exact"])
        if r["method"] in ("exact", "dense", "geomloss"):
            # float32 against the float64 exact value; a 16x16 crop's small MMD² cancels more than
            # the loss tests' inputs, so this checks the plumbing, not the precision
            assert r["rel_err"] < 1e-2, r
    assert [r["method"] for r in sr] == ["exact", "rf D=16", "rf D=64"]
    assert sr[0]["speedup"] == 1 and sr[0]["rel_err"] == 0
    for r in sr[1:]:
        # the MMD's error is about half the MMD²'s; both are averages over draws, not 0
        assert 0 < r["mmd_rel_err"] < r["rel_err"] and r["loss_rel_err"] >= 0


def test_bench_patch_mmd_kernels_table(monkeypatch, capsys):
    monkeypatch.setattr(bench_patch_mmd, "SIDES", {100: 16})
    bench_patch_mmd.main(["--device", "cpu", "--kernels", "100"])
    out = capsys.readouterr().out
    assert "random_cnn, depth 7" in out and "time_vs_gaussian" in out
    rows = bench_patch_mmd.kernel_rows(torch.device("cpu"), 100)
    assert [r["method"] for r in rows] == ["gaussian, 1 sigma", "gaussian, 4 sigmas", "random_cnn, depth 7"]
    assert rows[0]["time_vs_gaussian"] == 1 and all(r["time_s"] > 0 for r in rows)


def test_bench_patch_mmd_windows_on_tiny_shapes():
    from randperc_plugins.benchmarks import patch_mmd_windows

    rows = patch_mmd_windows.run(torch.device("cpu"), side=40, batch=1, repeat=1, patch_sizes=(3,))
    assert [(r["patch"], r["method"]) for r in rows] == [("3x3", "exact"), ("3x3", "random_features")]
    for r in rows:
        assert r["whole_s"] > 0 and r["windows_s"] > 0
        assert math.isclose(r["time_ratio"], r["windows_s"] / r["whole_s"])


def test_bench_patch_mmd_exact_on_tiny_shapes(tmp_path, capsys):
    from randperc_plugins.benchmarks import patch_mmd_exact

    out = tmp_path / "exact.json"
    assert patch_mmd_exact.main(["--device", "cpu", "--sides", "16", "--repeat", "1",
                                 "--out", str(out)]) == 0
    assert "| 16 | 100 | blocks |" in capsys.readouterr().out
    import json
    rows = json.loads(out.read_text())["rows"]
    assert rows[0]["method"] == "blocks" and rows[0]["x"] == 1
    # float32 blocks against float64: the 4-bandwidth MMD² of a 16x16 pair, to float32 precision
    assert all(0 <= r["rel. error"] < 1e-4 for r in rows), rows


def test_benchmark_gpu_quick_on_the_cpu(tmp_path):
    pytest.importorskip("torchvision", reason="the stand-in models and VGG-19 are torchvision's")
    # toy sizes, the stand-ins (torch + torchvision only), timed on the CPU: every row present, ratios
    # positive, the files written; CUDA-only columns (peak memory, host syncs) read n/a here
    import json

    from randperc_plugins.benchmarks import gpu

    result = gpu.main(["--quick", "--device", "cpu", "--stand-ins", "--budget-s", "100000",
                       "--out", str(tmp_path)])
    steps = {(r["task"], r["variant"]): r for r in result["steps"]}
    expected = {("segmentation", v) for v in ("step alone", "+ random-CNN", "+ patch-MMD")}
    expected |= {("restoration", v) for v in ("step alone", "+ random-CNN", "+ patch-MMD", "+ VGG-19 (mmagic's)")}
    expected |= {("instance_masks", v) for v in ("step alone", "+ random-CNN", "+ patch-MMD")}
    assert set(steps) == expected
    for row in steps.values():
        assert "error" not in row, row
        assert row["step ms"] > 0 and row["ratio to step"] > 0
        assert row["host syncs / step"] is None and row["peak MiB"] is None
    assert steps[("segmentation", "step alone")]["ratio to step"] == 1
    assert steps[("instance_masks", "+ random-CNN")]["ROIs / step"] > 0
    losses = {(r["task"], r["loss"], r["setting"]): r for r in result["losses"]}
    for task in ("segmentation", "restoration", "instance_masks"):
        for key in (("random-CNN", "default"), ("random-CNN", "full-width network"),
                    ("patch-MMD", "default"), ("random-CNN", "default, bf16 autocast")):
            row = losses[(task, *key)]
            assert "error" not in row, row
            assert row["loss ms"] > 0 and row["ratio to step"] > 0
    assert losses[("restoration", "VGG-19 (mmagic's)", "layer 34, L1")]["ratio to VGG"] == 1
    assert ("instance_masks", "random-CNN", "default, no ROI buckets") in losses
    text = (tmp_path / "gpu.md").read_text()
    assert "| task | model | variant |" in text and "plain EDSR" in text
    assert json.loads((tmp_path / "gpu.json").read_text())["mode"] == "time"


def test_benchmark_gpu_cpu_flops_quick(tmp_path):
    pytest.importorskip("torchvision", reason="the stand-in models and VGG-19 are torchvision's")
    from randperc_plugins.benchmarks import gpu

    with pytest.warns(FutureWarning, match="'sr' is an earlier spelling of 'restoration'"):
        result = gpu.main(["--cpu-flops", "--quick", "--tasks", "sr", "instance_masks", "--budget-s", "100000",
                           "--out", str(tmp_path)])
    steps = {(r["task"], r["variant"]): r for r in result["steps"]}
    for task, extra in (("restoration", "+ VGG-19 (mmagic's)"), ("instance_masks", "+ patch-MMD")):
        base = steps[(task, "step alone")]["step GFLOP"]
        assert base > 0
        # FLOPs are deterministic: a term only adds
        assert steps[(task, "+ random-CNN")]["step GFLOP"] > base
        assert steps[(task, extra)]["ratio to step"] >= 1
    losses = {(r["task"], r["loss"], r["setting"]): r for r in result["losses"]}
    sr_new = losses[("restoration", "random-CNN", "default")]["loss GFLOP"]
    sr_old = losses[("restoration", "random-CNN", "full-width network")]["loss GFLOP"]
    assert 0 < sr_new < sr_old  # half width: about a quarter of the cost
    # quarter width: 1/16 of the cost per ROI; here the 16 ROIs are padded to a bucket of 64
    masks_new = losses[("instance_masks", "random-CNN", "default")]["loss GFLOP"]
    masks_unpadded = losses[("instance_masks", "random-CNN", "default, no ROI buckets")]["loss GFLOP"]
    masks_old = losses[("instance_masks", "random-CNN", "full-width network")]["loss GFLOP"]
    assert masks_unpadded < masks_old / 10 and masks_new == pytest.approx(4 * masks_unpadded)
    assert (tmp_path / "cpu_flops.md").exists()


def test_benchmark_help_lists_every_subcommand(capsys):
    import importlib.util
    import os

    from randperc_plugins import benchmarks

    path = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "benchmark.py")
    spec = importlib.util.spec_from_file_location("benchmark_tool", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in benchmarks.SUBCOMMANDS:
        assert f"    {name} " in out
