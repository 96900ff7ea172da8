"""Benchmarks of the losses and of the frameworks' train steps with them (``tools/benchmark.py``).

Each subcommand is a module of this package with a ``main(argv)``; results are ratios between cases
measured in the same process (:mod:`.common`), never absolute times to compare across machines.
"""
from __future__ import annotations

import importlib

#: ``tools/benchmark.py`` subcommand -> module of this package, and what it measures.
SUBCOMMANDS = {
    "random-cnn": ("random_cnn", "random-CNN loss against the PSPNet-R50 and EDSR steps and mmagic's VGG loss"),
    "patch-mmd": ("patch_mmd", "exact blocked patch-MMD against dense, geomloss and random features"),
    "patch-mmd-exact": ("patch_mmd_exact", "exact patch-MMD on whole images: fused kernels per precision, blocks, geomloss"),
    "patch-mmd-windows": ("patch_mmd_windows", "patch-MMD over 32x32 windows against the whole image (SR batch)"),
    "mmseg-step": ("mmseg_step", "PSPNet-R50 train step with and without each loss (one-line configs)"),
    "mmagic-step": ("mmagic_step", "EDSR x2 train step with each loss (one-line configs) and with mmagic's VGG loss"),
    "mmdet-step": ("mmdet_step", "Mask R-CNN R50-FPN train step with and without each loss (one-line configs)"),
    "detectron2-step": ("detectron2_step",
                        "detectron2 Mask R-CNN R50-FPN train step with and without each mask loss"),
    "gpu": ("gpu", "every task default on one GPU: each model's step alone and with each loss, the "
                   "losses alone (--cpu-flops: the same in FLOPs on the CPU)"),
}


def load(name: str):
    """The module of subcommand ``name``."""
    return importlib.import_module(f"{__name__}.{SUBCOMMANDS[name][0]}")
