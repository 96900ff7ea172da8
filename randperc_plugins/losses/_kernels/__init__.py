"""Fused GPU kernels of the losses (Triton, optional: CUDA only) beside their PyTorch reference paths."""
from __future__ import annotations

import functools
import importlib.util


@functools.lru_cache(maxsize=None)
def triton_available() -> bool:
    """Whether Triton can be imported (it ships with PyTorch's CUDA wheels)."""
    return importlib.util.find_spec("triton") is not None
