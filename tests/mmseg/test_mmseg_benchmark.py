"""The random-CNN benchmark times the PSPNet-R50 step it compares the loss with (not a silent n/a)."""
import math

import pytest
import torch

pytest.importorskip("mmseg")


def test_random_cnn_benchmark_times_the_pspnet_step():
    from randperc_plugins.benchmarks import random_cnn

    # batch 2: the pyramid pooling's 1x1 branch has batch-norm, which needs more than one value
    cpu = torch.device("cpu")
    step = random_cnn._pspnet_step((64, 128), 2, cpu)
    assert step is not None
    rows = random_cnn._case_rows("seg", (2, 19, 64, 128), {"no loss": lambda: None}, step, None, cpu, 1)
    seconds = rows[0]["model step s"]
    assert seconds is not None and math.isfinite(seconds) and seconds > 0
    assert rows[0]["ratio to step"] == rows[0]["loss s"] / seconds
