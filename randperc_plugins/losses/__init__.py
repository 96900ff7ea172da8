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

#: The core loss modules by their one name (the key of ``tasks.TASK_DEFAULTS``, of the adapters'
#: ``core_loss`` and of the tools' ``--loss`` choices).
CORE_LOSSES = {"random_cnn": RandomCNNPerceptualLoss, "patch_mmd": PatchMMDLoss}


def build_core_loss(name: str, **settings):
    """The core loss module ``name`` (a key of :data:`CORE_LOSSES`) built with ``settings``.

    Example:
        >>> build_core_loss("patch_mmd", patch_size=3).spec.patch_size
        3
    """
    if name not in CORE_LOSSES:
        raise ValueError(f"`name` must be one of {tuple(CORE_LOSSES)}, got {name!r}")
    return CORE_LOSSES[name](**settings)


__all__ = ["CORE_LOSSES", "build_core_loss", "RandomCNNPerceptualLoss", "RandomCNNSpec", "random_cnn_distance",
           "random_cnn_perceptual_loss", "random_cnn_weights", "PatchMMDLoss", "PatchMMDSpec",
           "patch_mmd", "patch_mmd_loss", "extract_patches", "tasks"]
