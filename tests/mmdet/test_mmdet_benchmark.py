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


def test_benchmark_gpu_takes_the_frameworks_own_models_where_they_import():
    # the mmdet tier has mmseg too (one environment); `gpu` takes each framework's model where it imports
    pytest.importorskip("mmseg")
    from randperc_plugins.benchmarks import gpu

    result = gpu.main(["--quick", "--device", "cpu", "--tasks", "segmentation", "instance_masks", "--rounds", "1",
                       "--budget-s", "100000"])
    models = {r["task"]: r["model"] for r in result["steps"]}
    assert models == {"segmentation": "mmseg PSPNet-R50-D8", "instance_masks": "mmdet Mask R-CNN R50-FPN"}
    variants = {(r["task"], r["variant"]) for r in result["steps"] if not r.get("error")}
    assert variants == {(t, v) for t in ("segmentation", "instance_masks")
                        for v in ("step alone", "+ random-CNN", "+ patch-MMD")}, result["steps"]
