"""MMDetection adapter: the core losses on Mask R-CNN's mask head, registered in ``mmdet.registry.MODELS``.

Importing this module registers four classes. Configs may also name them by full dotted path
(``type='randperc_plugins.mmdet.AddRandomCNNPerceptualLoss'``): mmengine imports the module on build, so
no ``custom_imports`` is needed.

mmdet's ``FCNMaskHead`` (and the heads built on it: Cascade Mask R-CNN, HTC, ...) calls its
``loss_mask`` module as ``loss_mask(mask_preds, mask_targets, labels)``: the ROI mask logits ``(R, K,
28, 28)`` (``K = 1`` when class-agnostic), the 28x28 targets ``(R, 28, 28)`` and the ground-truth class
of each positive ROI. It logs what comes back as ``loss_mask``.

* :class:`RandomCNNPerceptualLoss` (``loss_mask_gpl``) and :class:`PatchMMDLoss` (``loss_mask_patch_mmd``):
  one term each, in that call's form. For each positive ROI the sigmoid of its ground-truth class's
  mask logits is compared with its target (:func:`randperc_plugins.losses.tasks.instance_mask_inputs`),
  one ROI being one sample; ``reduction='mean'`` averages over the ROIs.
* :class:`AddRandomCNNPerceptualLoss` and :class:`AddPatchMMDLoss`: the one-line form. Written over the
  mask head's ``loss_mask`` dict, mmengine merges the baseline's keys (``use_mask=True``,
  ``loss_weight``) into it; they go to the baseline loss (``base_type``, mmdet's ``CrossEntropyLoss`` by
  default) and the perceptual term is added to it. The sum is what mmdet logs as ``loss_mask``; each
  part is also logged under its own name (``loss_mask_ce`` and the term's ``loss_name``) through
  :func:`randperc_plugins.openmmlab.log_loss_term`, without patching mmdet.

The 28x28 ROI masks go through the losses as they are, not upsampled (why, with the measurements:
docs/mmdet.md, "Masks at 28x28").

A batch without positive ROIs (``R = 0``) gives a finite 0 with a gradient; mmdet itself does not call
``loss_mask`` then. The loss modules own no parameter and no persistent buffer, so a checkpoint keeps
the baseline's keys and loads into it with ``strict=True``.

Bad input (mismatched shapes or ROI counts, labels outside the head's classes) raises an error naming
the argument. The label range is read (a host read) only with ``validate_args=True``, as in every
adapter; without it an ROI whose label is no channel contributes 0.

Example (one line in a config that inherits an mmdet baseline)::

    _base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
    model = dict(roi_head=dict(mask_head=dict(loss_mask=dict(
        type='randperc_plugins.mmdet.AddRandomCNNPerceptualLoss'))))
"""
from __future__ import annotations

from typing import Optional

from mmdet.registry import MODELS
from torch import Tensor, nn

from ._adapter import PerceptualTerm, check_distinct_loss_names, check_loss_name, reduce_per_sample_loss
from .losses.tasks import instance_mask_inputs, per_roi_in_buckets
from .losses.utils import check_reduction
from .openmmlab import build_baseline_loss, build_perceptual_term, log_loss_term

__all__ = ["RandomCNNPerceptualLoss", "PatchMMDLoss", "AddRandomCNNPerceptualLoss", "AddPatchMMDLoss"]


class _MMDetMaskPerceptualLoss(PerceptualTerm):
    """mmdet's mask-loss call around one core loss, which sees one ROI per sample."""

    task = "instance_masks"

    def forward(self, mask_logits: Tensor, mask_targets: Tensor, labels: Tensor,
                weight: Optional[Tensor] = None, avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None, **kwargs) -> Tensor:
        """Loss of the ROI mask logits ``(R, K, h, w)`` against the targets ``(R, h, w)``.

        ``labels`` ``(R,)`` picks each ROI's channel (ignored when ``K = 1``). ``weight`` is an optional
        per-ROI weight ``(R,)``; ``avg_factor`` replaces ``R`` as the divisor of ``reduction='mean'``.
        Returns a scalar, or ``(R,)`` with ``reduction='none'``.
        """
        reduction = check_reduction(reduction_override or self.reduction)
        probability, target = instance_mask_inputs(mask_logits, mask_targets, labels,
                                                   validate_args=self.validate_args)
        num_rois = probability.shape[0]
        if weight is not None and tuple(weight.shape) != (num_rois,):
            raise ValueError(f"`weight` must hold one weight per ROI ({num_rois},), "
                             f"got shape {tuple(weight.shape)}")
        if num_rois == 0:
            # No positive ROI: a zero that still reaches the mask head's parameters (as mmdet's sum()).
            per_roi = probability.sum((1, 2, 3)) * 0
            zero = mask_logits.sum() * 0
            return zero.to(probability.dtype) if reduction != "none" else per_roi
        per_roi = per_roi_in_buckets(self.core, probability, target)
        return self.loss_weight * reduce_per_sample_loss(per_roi, reduction, weight, avg_factor)


@MODELS.register_module()
class RandomCNNPerceptualLoss(_MMDetMaskPerceptualLoss):
    """Generic Perceptual Loss (a frozen random CNN) on ROI masks, logged as ``loss_mask_gpl``.

    Keyword arguments other than ``loss_weight``, ``loss_name``, ``reduction`` and ``validate_args``
    configure the core :class:`randperc_plugins.losses.RandomCNNPerceptualLoss`; the defaults are
    ``TASK_DEFAULTS['instance_masks']['random_cnn']`` (the calibrated ``loss_weight`` and why: see
    :mod:`randperc_plugins.losses.tasks`).

    Example:
        >>> import torch
        >>> loss = RandomCNNPerceptualLoss()
        >>> logits = torch.randn(4, 80, 28, 28, requires_grad=True)
        >>> value = loss(logits, (torch.rand(4, 28, 28) > 0.5).float(), torch.tensor([0, 3, 3, 79]))
        >>> value.backward()
        >>> value.shape, len(loss.state_dict())
        (torch.Size([]), 0)
    """

    core_loss = "random_cnn"
    default_loss_name = "loss_mask_gpl"


@MODELS.register_module()
class PatchMMDLoss(_MMDetMaskPerceptualLoss):
    """Patch-MMD (Amir & Weiss) on ROI masks, logged as ``loss_mask_patch_mmd``.

    Keyword arguments other than ``loss_weight``, ``loss_name``, ``reduction`` and ``validate_args``
    configure the core :class:`randperc_plugins.losses.PatchMMDLoss`; the defaults are
    ``TASK_DEFAULTS['instance_masks']['patch_mmd']`` (see :mod:`randperc_plugins.losses.tasks`).

    Example:
        >>> import torch
        >>> loss = PatchMMDLoss()
        >>> logits = torch.randn(4, 1, 28, 28, requires_grad=True)  # a class-agnostic head
        >>> loss(logits, (torch.rand(4, 28, 28) > 0.5).float(), torch.zeros(4, dtype=torch.long)).backward()
    """

    core_loss = "patch_mmd"
    default_loss_name = "loss_mask_patch_mmd"


class _AddToMaskLoss(nn.Module):
    """The baseline mask loss plus a perceptual term, built from one dict so that a config merges into it.

    ``base`` is built from ``base_type`` and every key the config does not name here (mmdet's
    ``use_mask=True``, ``loss_weight``); ``perceptual`` from the ``perceptual`` dict. The call returns
    their sum, which mmdet logs as ``loss_mask``; the two parts are logged as ``base_loss_name`` and the
    term's ``loss_name``. Neither child holds a parameter or a persistent buffer, so checkpoints keep
    the baseline's keys.
    """

    perceptual_cls: type = nn.Module

    def __init__(self, base_type: str = "CrossEntropyLoss", perceptual: Optional[dict] = None,
                 base_loss_name: str = "loss_mask_ce", **base_kwargs) -> None:
        super().__init__()
        self.base_loss_name = check_loss_name(base_loss_name)
        self.base = build_baseline_loss(MODELS, base_type, base_kwargs, "mask loss")
        if base_type.split(".")[-1] == "CrossEntropyLoss" and not base_kwargs.get("use_mask"):
            # the baseline's keys are gone (`_delete_=True`): cross-entropy on class indices would
            # fail deep inside with "expected scalar type Long but found Float"
            raise ValueError(f"the baseline mask loss needs `use_mask=True` (FCNMaskHead's "
                             f"loss_mask=dict(type='CrossEntropyLoss', use_mask=True, loss_weight=1.0)); "
                             f"write loss_mask=dict(type='{type(self).__module__}.{type(self).__name__}', "
                             f"use_mask=True, loss_weight=1.0), or merge into the baseline's loss_mask "
                             f"without `_delete_`")
        self.perceptual = build_perceptual_term(self.perceptual_cls, perceptual,
                                                self.base_loss_name, "loss_mask")
        # mmdet logs the sum of both parts as `loss_mask`: the term may not take that name either
        check_distinct_loss_names(self.perceptual.loss_name, ("loss_mask", self.base_loss_name),
                                  type(self).__name__)

    def forward(self, mask_logits: Tensor, mask_targets: Tensor, labels: Tensor, *args, **kwargs) -> Tensor:
        base = self.base(mask_logits, mask_targets, labels, *args, **kwargs)
        term = self.perceptual(mask_logits, mask_targets, labels,
                               reduction_override=kwargs.get("reduction_override"))
        if self.training:
            log_loss_term(self.base_loss_name, base)
            log_loss_term(self.perceptual.loss_name, term)
        return base + term


@MODELS.register_module()
class AddRandomCNNPerceptualLoss(_AddToMaskLoss):
    """mmdet's mask loss plus :class:`RandomCNNPerceptualLoss` (``perceptual=dict(...)``).

    Example:
        >>> import torch
        >>> loss = AddRandomCNNPerceptualLoss(use_mask=True, loss_weight=1.0)  # as merged over mmdet's
        >>> logits = torch.randn(2, 80, 28, 28, requires_grad=True)
        >>> loss(logits, (torch.rand(2, 28, 28) > 0.5).float(), torch.tensor([1, 7])).backward()
    """

    perceptual_cls = RandomCNNPerceptualLoss


@MODELS.register_module()
class AddPatchMMDLoss(_AddToMaskLoss):
    """mmdet's mask loss plus :class:`PatchMMDLoss` (``perceptual=dict(...)``)."""

    perceptual_cls = PatchMMDLoss
