"""Gradient-share calibration of a perceptual term against a task's baseline loss.

The measurements behind ``tools/calibrate_loss_weight.py`` (its docstring describes the inputs of each
task) and behind the ablation's equal-gradient-share weights (:mod:`experiments.ablation`): each
``*_rows`` function returns, for predictions of growing quality, the baseline loss, the term and the
ratio of their gradient norms on what the network outputs (logits or the restored image).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .analysis.task_inputs import (ROI_SIZE, SR_PHOTOS, bicubic_prediction, noisy_logits, one_hot_labels,
                                   photo_crops, roi_logits, roi_targets, scene_labels, sr_prediction)

QUALITIES = (0.0, 3.0, 6.0)
SR_QUALITIES = (0.0, 0.5, 0.8)


def _loss(kind: str, options: dict, task: str = "segmentation"):
    """The core loss with ``task``'s defaults of ``tasks`` but weight 1 (the weight is what this tool
    suggests); ``options`` override them."""
    from randperc_plugins.losses import build_core_loss, names, tasks

    name = names.loss_name(kind)
    return build_core_loss(name, **{**tasks.task_defaults(task, name), **options, "loss_weight": 1.0})


def calibrate(kind: str, num_classes: int, size, batch: int = 2, options=None, seed: int = 0):
    """Rows ``{quality, ce, loss, grad_ratio}`` for logits of growing quality."""
    return segmentation_rows(_loss(kind, options or {}), num_classes, size, batch, seed)


def segmentation_rows(loss, num_classes: int, size, batch: int = 2, seed: int = 0):
    """Rows ``{quality, ce, loss, grad_ratio}`` of ``loss`` (a core loss module, called on softmax
    probabilities, one-hot label and ignore mask) against cross-entropy, for logits of growing quality
    (``QUALITIES``) on toy label maps of ``size`` ``(H, W)``."""
    from randperc_plugins.losses.tasks import segmentation_inputs

    label = scene_labels("shapes", size, batch, num_classes, seed)
    one_hot = one_hot_labels(label, num_classes)
    g = torch.Generator().manual_seed(seed)
    rows = []
    for q in QUALITIES:
        logits = noisy_logits(one_hot, q, g)
        ce = F.cross_entropy(logits, label, ignore_index=255)
        (g_ce,) = torch.autograd.grad(ce, logits)
        probs, target, mask = segmentation_inputs(logits, label, ignore_index=255)
        value = loss(probs, target, mask)
        (g_loss,) = torch.autograd.grad(value, logits)
        rows.append(dict(quality=q, ce=ce.item(), loss=value.item(),
                         grad_ratio=(g_loss.norm() / g_ce.norm()).item()))
    return rows


def calibrate_instance_masks(kind: str, num_rois: int = 64, options=None, seed: int = 0):
    """Rows ``{quality, ce, loss, grad_ratio}`` of the term against mmdet's mask BCE on ROI logits."""
    target = roi_targets(num_rois, seed)
    g = torch.Generator().manual_seed(seed)
    loss = _loss(kind, options or {}, "instance_masks")
    rows = []
    for q in QUALITIES:
        logits = roi_logits(target, q, g)
        ce = F.binary_cross_entropy_with_logits(logits, target[:, None])  # mmdet's mask_cross_entropy
        (g_ce,) = torch.autograd.grad(ce, logits)
        value = loss(torch.sigmoid(logits), target[:, None])
        (g_loss,) = torch.autograd.grad(value, logits)
        rows.append(dict(quality=q, ce=ce.item(), loss=value.item(),
                         grad_ratio=(g_loss.norm() / g_ce.norm()).item()))
    return rows


def upsampling_effect(kind: str, factors=(1, 2, 4), options=None):
    """Rows ``{factor, shift_vs_offset, boundary_grad_share}`` for a disc, a thin bar and a box (28x28).

    ``shift_vs_offset``: the term's increase when the predicted boundary moves by one pixel, divided by
    its increase when the prediction loses confidence uniformly (0.05/0.95 -> 0.2/0.8): how much it
    looks at where the boundary is. ``boundary_grad_share``: the share of the gradient on the logits of
    a blurred prediction that falls within one pixel of the boundary (20% of the pixels).
    """
    n = ROI_SIZE
    yy, xx = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    c = (n - 1) / 2
    target = torch.stack([((yy - c) ** 2 + (xx - c) ** 2 <= (n / 3) ** 2),
                          (yy - xx).abs() <= 1,
                          (yy >= 5) & (yy < n - 6) & (xx >= 3) & (xx < n - 3)])[:, None].double()
    exact = 0.05 + 0.9 * target
    shifted = 0.05 + 0.9 * torch.roll(target, 1, dims=-1)
    unsure = 0.2 + 0.6 * target
    blurred = F.avg_pool2d(F.pad(target, (2, 2, 2, 2), mode="replicate"), 5, 1).clamp(0.02, 0.98)
    band = (F.max_pool2d(target, 3, 1, 1) + F.max_pool2d(-target, 3, 1, 1)) > 0
    loss = _loss(kind, {"reduction": "none", **(options or {})}, "instance_masks").double()
    rows = []
    for factor in factors:
        def up(x):
            return x if factor == 1 else F.interpolate(x, scale_factor=factor, mode="bilinear")

        def rise(pred):
            return (loss(up(pred), up(target)) - loss(up(exact), up(target))).detach()

        logits = torch.logit(blurred).requires_grad_()
        (grad,) = torch.autograd.grad(loss(up(torch.sigmoid(logits)), up(target)).sum(), logits)
        share = (grad.abs() * band).sum((1, 2, 3)) / grad.abs().sum((1, 2, 3))
        rows.append(dict(factor=factor, shift_vs_offset=(rise(shifted) / rise(unsure)).tolist(),
                         boundary_grad_share=share.tolist()))
    return rows


def calibrate_sr(kind: str, scale: int, size, options=None):
    """Rows ``{quality, l1, loss, grad_ratio}`` for SR predictions of growing quality (``--task restoration``)."""
    return sr_rows(_loss(kind, options or {}, "restoration"), scale, size)


def sr_rows(loss, scale: int, size):
    """Rows ``{quality, l1, loss, grad_ratio}`` of ``loss`` (a core loss module) against L1, for SR
    predictions of growing quality (``SR_QUALITIES``) of ``size`` ``(H, W)`` crops of the photographs
    at ``scale``."""
    gt = photo_crops(size)
    bicubic = bicubic_prediction(gt, scale)
    rows = []
    for q in SR_QUALITIES:
        pred = sr_prediction(gt, bicubic, q)
        l1 = F.l1_loss(pred, gt)
        (g_l1,) = torch.autograd.grad(l1, pred)
        value = loss(pred, gt)
        (g_loss,) = torch.autograd.grad(value, pred)
        rows.append(dict(quality=q, l1=l1.item(), loss=value.item(),
                         grad_ratio=(g_loss.norm() / g_l1.norm()).item()))
    return rows
