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


@pytest.mark.slow
def test_bench_mmdet_step_on_a_tiny_shape():
    pytest.importorskip("mmdet")
    from randperc_plugins.benchmarks import mmdet_step

    rows = mmdet_step.run(torch.device("cpu"), (64, 96), batch=1, repeat=1)
    assert [r["variant"] for r in rows] == list(mmdet_step.VARIANTS)
    assert rows[0]["ratio to baseline"] == 1.0
    for r in rows:
        assert r["positive ROIs"] > 0 and r["step s"] > 0 and math.isfinite(r["ratio to baseline"])


@pytest.mark.slow  # four EDSR models and a VGG-19: minutes on 2 shared cores
def test_bench_mmagic_step_on_a_tiny_shape():
    pytest.importorskip("mmagic")
    from randperc_plugins.benchmarks import mmagic_step

    rows = mmagic_step.run(torch.device("cpu"), lq_size=8, batch=1, scale=2, repeat=1)
    loss_rows = [r for r in rows if r.get("table") == "loss"]
    rows = [r for r in rows if "table" not in r]
    assert [r["variant"] for r in loss_rows] == list(mmagic_step.VARIANTS)
    assert loss_rows[-1]["ratio to L1 + VGG"] == 1 and all(r["loss s"] > 0 for r in loss_rows)
    names = [r["variant"] for r in rows]
    assert names == list(mmagic_step.VARIANTS)
    assert rows[0]["ratio to baseline"] == 1 and rows[0]["added cost / VGG's"] is None
    for r in rows:
        assert r["step s"] > 0 and math.isfinite(r["ratio to baseline"])
    for r in rows[1:3]:
        assert math.isfinite(r["added cost / VGG's"])


def test_vgg_variant_adds_mmagic_perceptual_term():
    pytest.importorskip("mmagic")
    from randperc_plugins.benchmarks import mmagic_step
    from randperc_plugins.benchmarks.random_cnn import _vgg_perceptual_loss

    l1 = torch.nn.L1Loss()
    vgg = _vgg_perceptual_loss(torch.device("cpu"))
    pred, gt = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    both = mmagic_step._L1PlusPerceptual(l1, vgg)(pred, gt)
    assert torch.allclose(both, l1(pred, gt) + vgg(pred, gt)[0])
