"""Framework-free losses: they import torch only.

Both losses have one call shape, ``(pred, target, weight=None, *, ...)``, in three forms:

* Generic Perceptual Loss (Liu et al., CVPR 2021), prediction and target compared through a frozen
  random CNN: :func:`random_cnn_distance` (the measure, per sample), :func:`random_cnn_perceptual_loss`
  (the loss, reduced and weighted), :class:`RandomCNNPerceptualLoss` (the module).
* Patch-MMD (Amir & Weiss, CVPR 2021), the MMD between the patch distributions of two images, exact in
  linear memory or with random features: :func:`patch_mmd` (the measure, MMD² per sample),
  :func:`patch_mmd_loss` (the loss), :class:`PatchMMDLoss` (the module).
* :mod:`randperc_plugins.losses.tasks`: what each task (segmentation, instance masks, restoration) hands
  them, and their per-task defaults.
"""
from . import tasks
from .patch_mmd import PatchMMDLoss, PatchMMDSpec, extract_patches, patch_mmd, patch_mmd_loss
from .random_cnn import (RandomCNNPerceptualLoss, RandomCNNSpec, random_cnn_distance,
                         random_cnn_perceptual_loss, random_cnn_weights)

__all__ = ["RandomCNNPerceptualLoss", "RandomCNNSpec", "random_cnn_distance",
           "random_cnn_perceptual_loss", "random_cnn_weights", "PatchMMDLoss", "PatchMMDSpec",
           "patch_mmd", "patch_mmd_loss", "extract_patches", "tasks"]
