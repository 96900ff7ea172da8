"""Detectron2 adapter: Mask R-CNN mask heads that add a perceptual term to detectron2's own mask loss.

Importing this module registers two heads in detectron2's ``ROI_MASK_HEAD_REGISTRY``:

* :class:`MaskRCNNConvUpsampleHeadWithGPL`: detectron2's ``MaskRCNNConvUpsampleHead`` plus the Generic
  Perceptual Loss (a frozen random CNN), logged as ``loss_mask_gpl``;
* :class:`MaskRCNNConvUpsampleHeadWithPatchMMD`: the same head plus Patch-MMD, logged as
  ``loss_mask_patch_mmd``.

Both keep the baseline's layers, its ``mask_rcnn_loss`` (logged as ``loss_mask``, weighted by the head's
``loss_weight``) and its inference. The added term compares the sigmoid of the ground-truth class's
28x28 mask logits with the ROI mask target that detectron2 crops from the ground truth
(:func:`randperc_plugins.losses.tasks.instance_mask_inputs`).

One line selects either head:

* LazyConfig (every other argument of the baseline head is kept)::

      model.roi_heads.mask_head._target_ = "randperc_plugins.detectron2.MaskRCNNConvUpsampleHeadWithGPL"

* YAML (with ``import randperc_plugins.detectron2`` in the training script, which registers the heads;
  ``add_randperc_config(cfg)`` adds the optional ``MODEL.ROI_MASK_HEAD.RANDPERC`` keys)::

      MODEL:
        ROI_MASK_HEAD:
          NAME: "MaskRCNNConvUpsampleHeadWithGPL"

The loss's random network is held outside the head's ``nn.Module`` tree: detectron2's
``MaskRCNNConvUpsampleHead`` is an ``nn.Sequential`` whose ``layers()`` runs every child, so a child
loss module would be run as a layer. Being outside, it is never in ``state_dict()`` (a checkpoint loads
into the baseline model with no missing or unexpected keys), never wrapped or synchronised by DDP, and
its weights come from a local generator seeded with ``seed``: identical on every rank although
detectron2 seeds each rank differently, and the global RNG stream of the baseline stays untouched.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
from detectron2.config import CfgNode, configurable
from detectron2.layers import cat
from detectron2.modeling.roi_heads.mask_head import (ROI_MASK_HEAD_REGISTRY, MaskRCNNConvUpsampleHead,
                                                     mask_rcnn_inference, mask_rcnn_loss)
from detectron2.structures import Instances
from torch import Tensor, nn

from ._adapter import check_distinct_loss_names, check_perceptual, reduce_per_sample_loss, term_settings
from .losses import build_core_loss
from .losses.tasks import instance_mask_inputs, per_roi_in_buckets

__all__ = ["MaskRCNNConvUpsampleHeadWithGPL", "MaskRCNNConvUpsampleHeadWithPatchMMD",
           "add_randperc_config", "roi_mask_targets"]


def add_randperc_config(cfg: CfgNode) -> CfgNode:
    """Add the perceptual mask-loss keys ``MODEL.ROI_MASK_HEAD.RANDPERC`` to a detectron2 ``cfg``.

    * ``LOSS_WEIGHT`` (float, default ``-1.0``): weight of the added term (a finite number >= 0); -1
      means the task default (``task_defaults('instance_masks', ...)['loss_weight']``, else 1.0),
      any other negative value is an error.
    * ``SEED`` (int, default 0): seed of the random network / random features.
    * ``OPTIONS`` (a node that accepts new keys, default empty): further keyword arguments of the core
      loss, lower-cased (e.g. ``OPTIONS: {PATCH_SIZE: 5}`` gives ``patch_size=5``).

    The heads also build from a config without these keys (with the defaults). Returns ``cfg``.

    Example:
        >>> from detectron2.config import get_cfg
        >>> cfg = add_randperc_config(get_cfg())
        >>> cfg.MODEL.ROI_MASK_HEAD.RANDPERC.SEED
        0
    """
    if not isinstance(cfg, CfgNode):
        raise TypeError(f"`cfg` must be a detectron2 CfgNode (from get_cfg()), got {type(cfg).__name__}")
    node = CfgNode()
    node.LOSS_WEIGHT = -1.0
    node.SEED = 0
    node.OPTIONS = CfgNode(new_allowed=True)
    was_frozen = cfg.is_frozen()
    cfg.defrost()
    cfg.MODEL.ROI_MASK_HEAD.RANDPERC = node
    if was_frozen:
        cfg.freeze()
    return cfg


def roi_mask_targets(instances: List[Instances], mask_side_len: int, device: torch.device,
                     class_agnostic: bool) -> Tuple[Tensor, Tensor]:
    """The ROI mask targets ``(R, M, M)`` and ground-truth classes ``(R,)`` as ``mask_rcnn_loss`` builds them.

    Each image's ground-truth masks are cropped to its proposal boxes and resized to ``M`` (detectron2's
    ``gt_masks.crop_and_resize``). Images without instances contribute nothing; no instance at all gives
    empty tensors. For a class-agnostic head the classes are zeros.
    """
    masks, classes = [], []
    for per_image in instances:
        if len(per_image) == 0:
            continue
        masks.append(per_image.gt_masks.crop_and_resize(per_image.proposal_boxes.tensor,
                                                        mask_side_len).to(device=device))
        if class_agnostic:
            classes.append(torch.zeros(len(per_image), dtype=torch.int64, device=device))
        else:
            classes.append(per_image.gt_classes.to(device=device, dtype=torch.int64))
    if not masks:
        return (torch.zeros(0, mask_side_len, mask_side_len, device=device),
                torch.zeros(0, dtype=torch.int64, device=device))
    return cat(masks, dim=0).to(torch.float32), cat(classes, dim=0)


class _MaskRCNNConvUpsampleHeadWithPerceptual(MaskRCNNConvUpsampleHead):
    """Detectron2's conv-upsample mask head plus one perceptual term (the core loss ``core_loss``) on
    its mask logits."""

    core_loss = ""       # key of the core loss in TASK_DEFAULTS (and losses.CORE_LOSSES)
    loss_key = "loss_mask"

    @configurable
    def __init__(self, input_shape, *, num_classes, conv_dims, conv_norm="",
                 perceptual: Optional[dict] = None, **kwargs) -> None:
        """
        Args:
            input_shape, num_classes, conv_dims, conv_norm, loss_weight, vis_period: as
                ``MaskRCNNConvUpsampleHead`` (``loss_weight`` weighs detectron2's ``loss_mask``).
            perceptual: keyword arguments of the core loss, merged over the task defaults
                (``task_defaults('instance_masks', ...)``); ``loss_weight`` in it weighs the added term
                (a finite number >= 0; 0 skips its computation: the result is then the baseline's, bit
                for bit; in a LazyConfig or in Python a negative weight is an error, only the YAML key
                ``LOSS_WEIGHT`` reads -1 as "the task default"); ``reduction`` (``'mean'``, the default,
                over the foreground ROIs, or ``'sum'``) and ``loss_name`` (the term's key, default
                ``loss_mask_gpl`` / ``loss_mask_patch_mmd``) are the head's.
        """
        super().__init__(input_shape, num_classes=num_classes, conv_dims=conv_dims,
                         conv_norm=conv_norm, **kwargs)
        owner = type(self).__name__
        settings = term_settings("instance_masks", self.core_loss, check_perceptual(perceptual, owner),
                                 self.loss_key, weight_name="perceptual['loss_weight']")
        self.loss_key = check_distinct_loss_names(settings.loss_name, ("loss_mask",), owner)
        self.perceptual_weight = settings.loss_weight
        # Per ROI from the core; the head reduces over the ROIs itself (see perceptual_mask_loss):
        # 'mean' (detectron2's mask loss is a mean over the ROIs) or 'sum'
        self.perceptual_reduction = settings.reduction
        if self.perceptual_reduction == "none":
            raise ValueError("`perceptual['reduction']` must be 'mean' or 'sum': the head returns one "
                             "scalar per loss, got 'none'")
        # the core's value checks read tensors on the host: off unless asked for (then the task layer's too)
        self.validate_args = settings.validate_args
        # Not a child module: `layers()` runs every child of this nn.Sequential, and state_dict()
        # and DDP see only children. Its buffers follow the logits' device on the first call.
        object.__setattr__(self, "_perceptual_loss", self._build_core(settings.core))

    def _build_core(self, settings: dict) -> nn.Module:
        return build_core_loss(self.core_loss, **settings)

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        node = getattr(cfg.MODEL.ROI_MASK_HEAD, "RANDPERC", None)
        perceptual: dict = {}
        if node is not None:
            perceptual = {str(k).lower(): v for k, v in dict(node.OPTIONS).items()}
            perceptual["seed"] = int(node.SEED)
            # -1 (the key's default) means the task default; any other value is checked by the head
            if node.LOSS_WEIGHT != -1:
                perceptual["loss_weight"] = node.LOSS_WEIGHT
        ret["perceptual"] = perceptual
        return ret

    @property
    def perceptual_loss(self) -> nn.Module:
        """The core loss (outside the module tree; see the module docstring)."""
        return self._perceptual_loss

    def forward(self, x, instances: List[Instances]):
        x = self.layers(x)
        if not self.training:
            mask_rcnn_inference(x, instances)
            return instances
        return {"loss_mask": mask_rcnn_loss(x, instances, self.vis_period) * self.loss_weight,
                self.loss_key: self.perceptual_mask_loss(x, instances)}

    def perceptual_mask_loss(self, mask_logits: Tensor, instances: List[Instances]) -> Tensor:
        """The weighted perceptual term of ``mask_logits`` ``(R, K, M, M)`` against the ROI targets.

        No foreground ROI gives a 0 that still has a gradient (as detectron2's ``mask_rcnn_loss``).
        """
        if self.perceptual_weight == 0.0:
            return mask_logits.sum() * 0.0
        targets, classes = roi_mask_targets(instances, mask_logits.shape[2], mask_logits.device,
                                            class_agnostic=mask_logits.shape[1] == 1)
        probability, target = instance_mask_inputs(mask_logits, targets, classes,
                                                   validate_args=self.validate_args)
        loss_fn = self._perceptual_loss
        # move the random weights (non-persistent buffers) once, to wherever the head runs
        if any(b.device != mask_logits.device for b in loss_fn.buffers()):
            loss_fn.to(mask_logits.device)
        per_roi = per_roi_in_buckets(loss_fn, probability, target)
        return self.perceptual_weight * reduce_per_sample_loss(per_roi, self.perceptual_reduction)


@ROI_MASK_HEAD_REGISTRY.register()
class MaskRCNNConvUpsampleHeadWithGPL(_MaskRCNNConvUpsampleHeadWithPerceptual):
    """``MaskRCNNConvUpsampleHead`` plus the Generic Perceptual Loss on the masks, as ``loss_mask_gpl``.

    The term is :class:`randperc_plugins.losses.RandomCNNPerceptualLoss` (one input channel, the
    foreground probability; weights drawn at construction from a local generator seeded with ``seed``),
    averaged over the foreground ROIs. ``perceptual`` takes any of its arguments.

    Example:
        >>> from detectron2.layers import ShapeSpec
        >>> head = MaskRCNNConvUpsampleHeadWithGPL(ShapeSpec(channels=8, width=14, height=14),
        ...                                        num_classes=3, conv_dims=[8, 8])
        >>> sorted(head.state_dict()) == sorted(MaskRCNNConvUpsampleHead(
        ...     ShapeSpec(channels=8, width=14, height=14), num_classes=3, conv_dims=[8, 8]).state_dict())
        True
    """

    core_loss = "random_cnn"
    loss_key = "loss_mask_gpl"

    def _build_core(self, settings: dict) -> nn.Module:
        # one channel: the ground-truth class's foreground probability; weights drawn now, not lazily
        return build_core_loss(self.core_loss, in_channels=1, **settings)


@ROI_MASK_HEAD_REGISTRY.register()
class MaskRCNNConvUpsampleHeadWithPatchMMD(_MaskRCNNConvUpsampleHeadWithPerceptual):
    """``MaskRCNNConvUpsampleHead`` plus Patch-MMD on the masks, as ``loss_mask_patch_mmd``.

    The term is :class:`randperc_plugins.losses.PatchMMDLoss` between the patches of each ROI's
    foreground probability and of its target, averaged over the foreground ROIs. ``perceptual`` takes
    any of its arguments.
    """

    core_loss = "patch_mmd"
    loss_key = "loss_mask_patch_mmd"
