"""The MMDetection train-step benchmark (`tools/benchmark.py mmdet-step`) runs end to end on a tiny shape."""
import math

import pytest
import torch


@pytest.mark.slow
def test_bench_mmdet_step_on_a_tiny_shape():
    pytest.importorskip("mmdet")
    from randperc_plugins.benchmarks import mmdet_step

    rows = mmdet_step.run(torch.device("cpu"), (64, 96), batch=1, repeat=1)
    assert [r["variant"] for r in rows] == list(mmdet_step.VARIANTS)
    assert rows[0]["ratio to baseline"] == 1.0
    for r in rows:
        assert r["positive ROIs"] > 0 and r["step s"] > 0 and math.isfinite(r["ratio to baseline"])
