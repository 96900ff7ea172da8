"""The random-CNN benchmark times the PSPNet-R50 step it compares the loss with (not a silent n/a)."""
import math

import pytest
import torch

pytest.importorskip("mmseg")


def test_random_cnn_benchmark_times_the_pspnet_step():
    from randperc_plugins.benchmarks import random_cnn

    # batch 2: the pyramid pooling's 1x1 branch has batch-norm, which needs more than one value
    seconds = random_cnn._pspnet_step_time((64, 128), 2, torch.device("cpu"), quick=True)
    assert seconds is not None and math.isfinite(seconds) and seconds > 0
