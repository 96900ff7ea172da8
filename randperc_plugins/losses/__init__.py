"""Framework-free losses: they import torch only.

* :class:`RandomCNNPerceptualLoss` / :func:`random_cnn_perceptual_loss`: Generic Perceptual Loss
  (Liu et al., CVPR 2021), prediction and target compared through a frozen random CNN.
* :class:`PatchMMDLoss` / :func:`patch_mmd`: the MMD between the patch distributions of two images
  (Amir & Weiss, CVPR 2021), exact in linear memory or with random features.
"""
from .patch_mmd import PatchMMDLoss, extract_patches, patch_mmd
from .random_cnn import (RandomCNNPerceptualLoss, RandomCNNSpec, random_cnn_perceptual_loss,
                         random_cnn_weights)

__all__ = ["RandomCNNPerceptualLoss", "RandomCNNSpec", "random_cnn_perceptual_loss",
           "random_cnn_weights", "PatchMMDLoss", "patch_mmd", "extract_patches"]
