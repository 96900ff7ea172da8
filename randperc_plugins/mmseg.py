"""MMSegmentation adapter: the core losses in mmseg's loss API, registered in ``mmseg.registry.MODELS``.

Importing this module registers four classes. Configs may also name them by full dotted path
(``type='randperc_plugins.mmseg.PatchMMDLoss'``): mmengine imports the module on build, so no
``custom_imports`` is needed.

* :class:`RandomCNNPerceptualLoss` (``loss_gpl``) and :class:`PatchMMDLoss` (``loss_patch_mmd``): one loss
  term each, ``forward(cls_score, label, weight=None, ignore_index=255, ...)`` like mmseg's
  ``CrossEntropyLoss``. Logits become softmax probabilities and are compared with the one-hot label;
  pixels equal to ``ignore_index`` (255 is also mmseg's padding value) are masked, so they get no
  gradient.
* :class:`AddRandomCNNPerceptualLoss` and :class:`AddPatchMMDLoss`: the one-line form. Written over a
  baseline's ``loss_decode`` dict, mmengine merges the baseline's keys (``use_sigmoid``,
  ``class_weight``, ``loss_weight``, ...) into it; these keys go to the baseline loss (``base_type``,
  ``CrossEntropyLoss`` by default), and the perceptual term is added beside it with its own name, so
  both are logged and summed as if ``loss_decode`` were the list ``[baseline, perceptual]``.

Example (one line in a config that inherits an mmseg baseline)::

    _base_ = 'mmseg::pspnet/pspnet_r50-d8_4xb2-80k_cityscapes-512x1024.py'
    model = dict(decode_head=dict(loss_decode=dict(type='randperc_plugins.mmseg.AddRandomCNNPerceptualLoss')))
"""
from __future__ import annotations

from typing import Optional

from mmseg.registry import MODELS
from torch import Tensor, nn

from ._adapter import PerceptualTerm, reduce_per_sample_loss
from .losses import tasks
from .losses.utils import check_reduction
from .openmmlab import build_baseline_loss, build_perceptual_term

__all__ = ["RandomCNNPerceptualLoss", "PatchMMDLoss", "AddRandomCNNPerceptualLoss", "AddPatchMMDLoss"]


class _MMSegPerceptualLoss(PerceptualTerm):
    """mmseg's loss contract around one core loss: translation of the call and of the names only.

    The segmentation facts (softmax against one-hot, the ignore mask, the calibrated weights) live in
    :mod:`randperc_plugins.losses.tasks`; the settings in :class:`randperc_plugins._adapter.PerceptualTerm`.
    ``validate_args`` is off by default: the value checks (label range, NaN/Inf) read tensors on the
    host, which would stall the GPU at every training step; set it in a config to debug a dataset.
    """

    task = "segmentation"

    def forward(self, cls_score: Tensor, label: Tensor, weight: Optional[Tensor] = None,
                avg_factor: Optional[float] = None, reduction_override: Optional[str] = None,
                ignore_index: Optional[int] = 255, **kwargs) -> Tensor:
        """Loss of logits ``cls_score`` ``(N, C, H, W)`` against ``label`` ``(N, H, W)``.

        ``weight`` is an optional per-pixel weight (mmseg's ``seg_weight`` from a pixel sampler).
        ``avg_factor`` is refused: in mmseg's ``weight_reduce_loss`` it divides a sum of per-element
        losses by their count, and these losses have one value per image, not per element (mmseg's
        decode heads never pass it).
        """
        if avg_factor is not None:
            raise ValueError(f"`avg_factor` is not supported by {type(self).__name__} (got "
                             f"{avg_factor!r}): mmseg divides a sum of per-pixel losses by it, and "
                             f"this loss has one value per image; use `reduction` instead")
        reduction = check_reduction(reduction_override or self.reduction)
        probabilities, one_hot, mask = tasks.segmentation_inputs(
            cls_score, label, ignore_index=ignore_index, weight=weight,
            validate_args=self.validate_args)
        per_sample = self.core(probabilities, one_hot, mask)
        return self.loss_weight * reduce_per_sample_loss(per_sample, reduction)


@MODELS.register_module()
class RandomCNNPerceptualLoss(_MMSegPerceptualLoss):
    """Generic Perceptual Loss (a frozen random CNN) as an mmseg loss, logged as ``loss_gpl``.

    Keyword arguments other than ``loss_weight``, ``loss_name``, ``reduction`` and ``validate_args``
    configure the core :class:`randperc_plugins.losses.RandomCNNPerceptualLoss` (network, layers, ``max_size``, ``seed``);
    its defaults (VGG-19-shaped network, loss at most 256 pixels on the longer side) fit segmentation.

    ``loss_weight`` defaults to ``task_defaults('segmentation', 'random_cnn')``'s 0.8: with 19 classes
    (Cityscapes) this makes the term's gradient on the logits about a third of cross-entropy's for a
    nearly converged prediction, and under a tenth for an untrained one
    (``tools/calibrate_loss_weight.py random_cnn --num-classes 19``). The term shrinks as the class count
    grows; for 150 classes (ADE20K) the same balance needs about 5. Release 0.2's term (no layer
    balance, weight 5.0): ``balance='none', loss_weight=5.0``.
    """

    core_loss = "random_cnn"
    default_loss_name = "loss_gpl"


@MODELS.register_module()
class PatchMMDLoss(_MMSegPerceptualLoss):
    """Patch-MMD (Amir & Weiss) as an mmseg loss, logged as ``loss_patch_mmd``.

    Keyword arguments other than ``loss_weight``, ``loss_name``, ``reduction`` and ``validate_args``
    configure the core :class:`randperc_plugins.losses.PatchMMDLoss`. Segmentation defaults
    (``task_defaults('segmentation', 'patch_mmd')``) differ from the core's (which suit RGB images):
    ``patch_size=3`` (a C-class probability map makes patches of ``9 C`` values), ``max_size=128``
    (the map is area-resized so that its longer side is at most 128 pixels: about 8k patches for a
    512x1024 crop) and ``method='auto'`` (random features at that size). Our choices, measured with
    ``tools/calibrate_loss_weight.py`` and ``tools/benchmark.py mmseg-step``.

    ``loss_weight`` defaults to 0.4: with 19 classes the term's gradient on the logits is then about a
    third of cross-entropy's for a nearly converged prediction (``tools/calibrate_loss_weight.py
    patch-mmd --num-classes 19``); for 150 classes the same balance needs about 1.2.
    """

    core_loss = "patch_mmd"
    default_loss_name = "loss_patch_mmd"


class _AddToBaseLoss(nn.ModuleList):
    """``[baseline loss, perceptual loss]`` built from one dict, so that a config merges into it.

    mmseg's decode head iterates ``loss_decode`` when it is an ``nn.ModuleList`` and logs each term under
    its own ``loss_name``: being a ``ModuleList`` is what makes the added term a separate log entry.
    Neither child holds a parameter or a persistent buffer, so checkpoints keep the baseline's keys.
    """

    perceptual_cls: type = nn.Module

    def __init__(self, base_type: str = "CrossEntropyLoss", perceptual: Optional[dict] = None,
                 **base_kwargs) -> None:
        base = build_baseline_loss(MODELS, base_type, base_kwargs, "loss")
        super().__init__([base, build_perceptual_term(self.perceptual_cls, perceptual,
                                                      getattr(base, "loss_name", None),
                                                      "loss_decode")])


@MODELS.register_module()
class AddRandomCNNPerceptualLoss(_AddToBaseLoss):
    """The baseline decode loss plus :class:`RandomCNNPerceptualLoss` (``perceptual=dict(...)``)."""

    perceptual_cls = RandomCNNPerceptualLoss


@MODELS.register_module()
class AddPatchMMDLoss(_AddToBaseLoss):
    """The baseline decode loss plus :class:`PatchMMDLoss` (``perceptual=dict(...)``)."""

    perceptual_cls = PatchMMDLoss
