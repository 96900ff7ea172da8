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


def test_bench_gpu_table_on_tiny_shapes(tmp_path, capsys):
    import json

    pytest.importorskip("torchvision", reason="the stand-in models and VGG-19 come from torchvision")
    from randperc_plugins.benchmarks import gpu

    assert gpu.main(["--device", "cpu", "--quick", "--tasks", "restoration", "--warmup", "0",
                     "--repeat", "1", "--out", str(tmp_path)]) == 0
    assert "| restoration | EDSR x2 c64b16 (plain) | + patch_mmd |" in capsys.readouterr().out
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert [r["variant"] for r in rows] == ["baseline", "+ random_cnn", "+ patch_mmd", "+ VGG-19 (mmagic)"]
    assert all(r["error"] is None for r in rows), rows
    assert rows[0]["x step"] == 1 and all(r["x step"] > 0 for r in rows)
    assert rows[-1]["loss / VGG"] == 1 and all(r["loss ms"] > 0 for r in rows[1:])
    assert (tmp_path / "results.md").read_text().startswith("train steps on CPU")


def test_bench_gpu_flops_at_the_task_shapes(capsys):
    pytest.importorskip("torchvision", reason="the stand-in models and VGG-19 come from torchvision")
    from randperc_plugins.benchmarks import gpu

    rows = [r for t in ("restoration", "instance_masks") for r in gpu.flop_rows(t, quick=False)]
    by = {(r["task"], r["variant"]): r for r in rows}
    # FLOPs are deterministic: mmagic's VGG-19 relu5_4 loss at 16x3x96x96 is 344 GFLOP fwd + bwd
    assert 340 < by[("restoration", "+ VGG-19 (mmagic)")]["loss GFLOP"] < 350
    assert by[("restoration", "+ random_cnn")]["loss / VGG"] > 0
    assert by[("instance_masks", "+ patch_mmd")]["loss GFLOP"] > 0
