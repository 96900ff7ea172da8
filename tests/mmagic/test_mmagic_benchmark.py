"""The MMagic train-step benchmark (`tools/benchmark.py mmagic-step`) runs end to end on a tiny shape."""
import math

import pytest
import torch


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


def test_random_cnn_benchmark_times_the_edsr_step():
    pytest.importorskip("mmagic")
    from randperc_plugins.benchmarks import random_cnn

    cpu = torch.device("cpu")
    step = random_cnn._edsr_step(48, 1, cpu)
    assert step is not None
    rows = random_cnn._case_rows("SR", (1, 3, 48, 48), {"no loss": lambda: None}, step, None, cpu, 1)
    seconds = rows[0]["model step s"]
    assert seconds is not None and math.isfinite(seconds) and seconds > 0
    assert rows[0]["ratio to step"] == rows[0]["loss s"] / seconds
