"""Smoke test of `tools/benchmark.py detectron2-step` on a tiny shape: one row per variant, ratios to
the baseline in the same run."""
import pytest
import torch

pytestmark = pytest.mark.detectron2

pytest.importorskip("detectron2.config")  # not the tests/detectron2 folder
from randperc_plugins.benchmarks import SUBCOMMANDS, detectron2_step  # noqa: E402


def test_detectron2_step_rows_on_a_tiny_shape():
    assert SUBCOMMANDS["detectron2-step"][0] == "detectron2_step"
    rows = detectron2_step.run(torch.device("cpu"), (64, 64), batch=1, instances=2, rois=16, repeat=1)
    assert [r["variant"] for r in rows] == list(detectron2_step.VARIANTS)
    assert rows[0]["ratio to baseline"] == 1.0
    for row in rows:
        assert row["step s"] > 0 and row["ratio to baseline"] > 0
