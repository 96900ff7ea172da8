"""Training-free perceptual losses for dense prediction and image synthesis.

The core losses (``randperc_plugins.losses``) import torch only. Framework adapters register them
where they are imported: ``randperc_plugins.mmseg`` (MMSegmentation). ``python -m randperc_plugins.configs``
lists, locates and copies the shipped configs.
"""
from .losses import (PatchMMDLoss, RandomCNNPerceptualLoss, patch_mmd,
                     random_cnn_perceptual_loss)

# The one place of the version (semantic versioning): setup.cfg reads it, CHANGELOG.md describes it.
__version__ = "0.2.0"
__all__ = ["RandomCNNPerceptualLoss", "random_cnn_perceptual_loss", "PatchMMDLoss", "patch_mmd",
           "__version__"]
