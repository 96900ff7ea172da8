"""What each task hands the perceptual losses: the framework-neutral layer between an adapter and the core.

Every adapter translates its framework's call into one of these, then calls a core loss on
``(pred, target, weight)``; nothing here knows a framework. Imports torch only.

* :func:`segmentation_inputs`: logits ``(N, C, H, W)`` and an integer label map with an ignore value
  -> class probabilities, one-hot target and a pixel mask (mmseg's decode heads; any semantic head).
* :func:`instance_mask_inputs`: ROI mask logits ``(R, K, h, w)`` (or one class-agnostic channel), the ROI
  mask targets ``(R, h, w)`` and the ground-truth class of each ROI -> the foreground probability of that
  class and its target, both ``(R, 1, h, w)`` (mmdet's ``FCNMaskHead``, detectron2's mask head).
* :func:`restoration_inputs`: a restored image and its ground truth, RGB in ``[0, 1]`` (mmagic's editors).
* :func:`task_defaults`: the core losses' settings per task (with the calibrated ``loss_weight``).

Value checks that read a tensor on the host (a label range) run only with ``validate_args=True``: each
is a host synchronisation, which stalls a GPU in the training path, where adapters pass ``False``.
"""
from __future__ import annotations

import copy
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor

from .utils import (UNIT_RANGE_TOLERANCE, as_weight_mask, check_image_pair, check_values,
                     compute_dtype)
from . import names
from .random_cnn import VGG19_HALF_WIDTHS, VGG19_QUARTER_WIDTHS, VGG19_WIDTHS

__all__ = ["segmentation_inputs", "instance_mask_inputs", "restoration_inputs", "task_defaults",
           "per_roi_in_buckets", "ROI_BUCKET", "TASK_DEFAULTS", "RELEASED_TASK_DEFAULTS"]

#: ROI batches are padded to a multiple of this many ROIs on CUDA (:func:`per_roi_in_buckets`).
ROI_BUCKET = 64

#: Settings of the core losses per task, as keyword arguments of :class:`RandomCNNPerceptualLoss`
#: (``"random_cnn"``) and :class:`PatchMMDLoss` (``"patch_mmd"``). Each ``loss_weight`` makes the
#: term's gradient a stated fraction of the baseline loss's (``tools/calibrate_loss_weight.py``).
TASK_DEFAULTS: Dict[str, Dict[str, dict]] = {
    # 19 classes (Cityscapes), nearly converged logits: the term's gradient on the logits is about a
    # third of cross-entropy's at these weights (`calibrate_loss_weight.py {random_cnn,patch_mmd}
    # --num-classes 19`: 0.81 and 0.4); 150 classes (ADE20K) need about 4.9 and 1.2. The random-CNN
    # loss with the core's layer balance `balance='init'` (release 0.2: none, weight 5.0): on the
    # demo's thin-structure task it beat the unbalanced loss in line IoU by +4.91 [+0.65, +9.17] and
    # cross-entropy alone in mIoU by +1.36 [+0.21, +2.51] (6 seeds; docs/ablation.md). Patch-MMD on
    # C-class maps: 3x3 patches (9 C values each), maps area-resized to at most 128 pixels (about 8k
    # patches for a 512x1024 crop), random features at that size.
    "segmentation": {
        "random_cnn": dict(loss_weight=0.8),
        "patch_mmd": dict(loss_weight=0.4, patch_size=3, max_size=128, method="auto"),
    },
    # RGB in [0, 1]. At these weights the term's gradient on the prediction is about a third of L1's
    # (mmagic's pixel loss) for a bicubic prediction moved 80% of the way to the ground truth, on
    # 96x96 crops of four photographs (ratios 0.331-0.337 for the random CNN at x2 96x96 to x4 196x196;
    # 0.33-0.37 for patch-MMD: `calibrate_loss_weight.py {random_cnn,patch_mmd} --task restoration --scale S`). The
    # random-CNN loss with the core's `balance='init'` (release 0.2: none, weight 1.0): on the demo's
    # SR task it made no significant difference (PSNR -0.29 [-1.97, +1.38], 6 seeds), so the balance
    # that segmentation's evidence supports, and that makes every compared layer count, applies here
    # too. The network is VGG-19's first three stages at half width: forward and backward on 16x3x96x96
    # it costs 50 GFLOP, 0.14 of the VGG-19 loss SR configs use (197 GFLOP, 0.57, at full width, release
    # 0.3); on the demo's SR task it did not differ from the full width (docs/ablation.md), and at
    # equal gradient share it takes the same weight (0.0996). Patch-MMD: random features above a few
    # hundred patches (a 96x96 crop has
    # 8100 7x7 patches: 14x faster than exact, loss within about 1%; docs/benchmarks.md), and each
    # patch's per-channel mean removed (`normalize='channel_mean'`): the one setting the ablation on
    # the demo's super-resolution task found significantly better than the earlier default (SSIM
    # +0.0255 [+0.010, +0.041] over 3 seeds; docs/ablation.md). Release 0.2 had `normalize='none'`.
    "restoration": {
        "random_cnn": dict(loss_weight=0.1, widths=VGG19_HALF_WIDTHS),
        "patch_mmd": dict(loss_weight=0.1, method="auto", normalize="channel_mean"),
    },
    # 28x28 ROI masks of one foreground probability, compared as they are (not upsampled: upsampling
    # makes the term look less at where the boundary is, for 4x-16x the cost; see the mmdet adapter).
    # At these weights the term's gradient on the mask logits is about a third of the mask BCE's when
    # that BCE is about 0.1 (`calibrate_loss_weight.py {random_cnn,patch_mmd} --task instance_masks`: gradient-
    # norm ratios 1.96 and 1.24 at weight 1). Core defaults otherwise (the random-CNN loss with the
    # core's `balance='init'`, not measured in training on this task; release 0.2: none, weight 1.2).
    # The random CNN is VGG-19's first three stages at a quarter width (a mask has one channel and 784
    # pixels): 17 GFLOP forward and backward at 256 ROIs, 0.7% of a Mask R-CNN R50-FPN train step at
    # 2x800x1333, against 267 GFLOP (10.6%) at full width (release 0.2); its gradient, boundary
    # sensitivity and layer shares match the full width's (docs/ablation.md; `tools/mask_networks.py`).
    # On CUDA the adapters pad ROI batches to a multiple of `ROI_BUCKET` (`per_roi_in_buckets`).
    "instance_masks": {
        "random_cnn": dict(loss_weight=0.17, widths=VGG19_QUARTER_WIDTHS),
        "patch_mmd": dict(loss_weight=0.27),
    },
}


#: The per-task settings of earlier releases, by release, so that a configuration written for one can
#: reproduce it: each entry states every setting that has changed since (a config line can pass them
#: to the adapter, e.g. ``perceptual=dict(normalize='none')`` for release 0.2's restoration patch-MMD,
#: ``perceptual=dict(balance='none', loss_weight=5.0, autocast=False)`` for its segmentation random-CNN
#: loss). ``autocast=False`` keeps the random network in float32 under autocast, as 0.2 did; the full
#: VGG-19 widths (``VGG19_WIDTHS``) are 0.2's network for restoration and instance masks.
RELEASED_TASK_DEFAULTS: Dict[str, Dict[str, Dict[str, dict]]] = {
    "0.2": {
        "segmentation": {
            "random_cnn": dict(loss_weight=5.0, balance="none", autocast=False),
            "patch_mmd": copy.deepcopy(TASK_DEFAULTS["segmentation"]["patch_mmd"]),
        },
        "restoration": {
            "random_cnn": dict(loss_weight=1.0, balance="none", widths=VGG19_WIDTHS, autocast=False),
            "patch_mmd": dict(loss_weight=0.1, method="auto", normalize="none"),
        },
        "instance_masks": {
            "random_cnn": dict(loss_weight=1.2, balance="none", widths=VGG19_WIDTHS, autocast=False),
            "patch_mmd": copy.deepcopy(TASK_DEFAULTS["instance_masks"]["patch_mmd"]),
        },
    },
}


def task_defaults(task: str, loss: str, release: Optional[str] = None) -> dict:
    """A copy of the settings of core loss ``loss`` (``'random_cnn'`` or ``'patch_mmd'``) for ``task``:
    the current ones, or those of an earlier ``release`` (:data:`RELEASED_TASK_DEFAULTS`).

    Example:
        >>> task_defaults("segmentation", "patch_mmd")["patch_size"]
        3
        >>> task_defaults("restoration", "patch_mmd", release="0.2")["normalize"]
        'none'
        >>> task_defaults("segmentation", "random_cnn", release="0.2")
        {'loss_weight': 5.0, 'balance': 'none', 'autocast': False}
    """
    if release is not None and release not in RELEASED_TASK_DEFAULTS:
        raise ValueError(f"`release` must be None or one of {tuple(RELEASED_TASK_DEFAULTS)}, got {release!r}")
    table = TASK_DEFAULTS if release is None else RELEASED_TASK_DEFAULTS[release]
    return copy.deepcopy(table[names.task_name(task)][names.loss_name(loss)])


def _describe(t) -> str:
    return f"dtype {t.dtype}, shape {tuple(t.shape)}" if isinstance(t, Tensor) else type(t).__name__


def segmentation_inputs(logits: Tensor, label: Tensor, *, ignore_index: Optional[int] = 255,
                        weight: Optional[Tensor] = None,
                        validate_args: bool = True) -> Tuple[Tensor, Tensor, Tensor]:
    """Segmentation logits and an integer label map as the perceptual losses compare them.

    Args:
        logits: ``(N, C, H, W)`` raw scores. With ``C > 1`` they become softmax probabilities; with
            ``C == 1`` (binary segmentation) a sigmoid foreground probability.
        label: ``(N, H, W)`` (or ``(N, 1, H, W)``) integer class indices at the logits' resolution;
            ``ignore_index`` marks void and padding pixels.
        ignore_index: label value to leave out, or ``None``. Negative labels are left out too.
        weight: optional per-pixel weight ``(N, H, W)`` or ``(N, 1, H, W)``, multiplied into the mask.
        validate_args: check that every kept label is a class of ``logits`` (a host read).

    Returns:
        ``(probabilities, one_hot, mask)``: two ``(N, C, H, W)`` tensors in float32 (float64 for float64
        logits) and an ``(N, 1, H, W)`` mask that is 0 on ignored pixels.

    Raises:
        TypeError: if ``logits`` is not floating point or ``label`` is.
        ValueError: if the shapes disagree, or (with ``validate_args``) a kept label lies outside
            ``[0, C)`` (``[0, 2)`` for one channel).

    Example:
        >>> logits = torch.randn(2, 4, 8, 8)
        >>> label = torch.randint(0, 4, (2, 8, 8))
        >>> label[:, 0] = 255
        >>> probs, one_hot, mask = segmentation_inputs(logits, label)
        >>> probs.shape, one_hot.shape, mask.shape, float(mask.mean())
        (torch.Size([2, 4, 8, 8]), torch.Size([2, 4, 8, 8]), torch.Size([2, 1, 8, 8]), 0.875)
    """
    if not isinstance(logits, Tensor) or not logits.is_floating_point() or logits.dim() != 4:
        raise TypeError(f"`logits` must be floating-point logits of shape (N, C, H, W), "
                        f"got {_describe(logits)}")
    if not isinstance(label, Tensor):
        raise TypeError(f"`label` must be a torch.Tensor of class indices, got {type(label).__name__}")
    if label.dim() == 4 and label.shape[1] == 1:
        label = label[:, 0]
    n, c, h, w = logits.shape
    if label.shape != (n, h, w):
        raise ValueError(f"`label` must have shape ({n}, {h}, {w}) to match `logits` "
                         f"{tuple(logits.shape)}, got {tuple(label.shape)}")
    if label.is_floating_point():
        raise TypeError(f"`label` must hold integer class indices, got dtype {label.dtype}")
    valid = label >= 0
    if ignore_index is not None:
        valid &= label != ignore_index
    num_classes = max(c, 2)
    if validate_args:
        check_values({"logits": logits})
        kept_max = int(torch.where(valid, label, torch.zeros_like(label)).max()) if label.numel() else 0
        if kept_max >= num_classes:
            raise ValueError(f"`label` holds class {kept_max}, but `logits` has {c} channels "
                             f"(ignore_index={ignore_index})")
    # without validation a label that is no class of the logits is ignored like a void pixel (not
    # clamped into a wrong target)
    valid &= label < num_classes
    dtype = compute_dtype(logits)
    clean = torch.where(valid, label, torch.zeros_like(label)).long()
    if c == 1:
        probabilities = torch.sigmoid(logits.to(dtype))
        one_hot = clean.unsqueeze(1).to(dtype)
    else:
        probabilities = torch.softmax(logits.to(dtype), dim=1)
        one_hot = torch.nn.functional.one_hot(clean, c).permute(0, 3, 1, 2).to(dtype)
    mask = valid.unsqueeze(1).to(dtype)
    if weight is not None:
        mask = mask * as_weight_mask(weight, probabilities, "weight", validate_args)
    return probabilities, one_hot, mask


def instance_mask_inputs(mask_logits: Tensor, mask_targets: Tensor, labels: Tensor, *,
                         validate_args: bool = True) -> Tuple[Tensor, Tensor]:
    """ROI mask logits of the ground-truth class and the ROI mask targets, as the losses compare them.

    Args:
        mask_logits: ``(R, K, h, w)`` per-class mask logits of ``R`` positive ROIs, or ``(R, 1, h, w)``
            for a class-agnostic head (then ``labels`` are ignored).
        mask_targets: ``(R, h, w)`` (or ``(R, 1, h, w)``) targets in ``[0, 1]`` (binary masks cropped
            and resized to the ROI).
        labels: ``(R,)`` integer class of each ROI's ground truth.
        validate_args: check that every label is a channel of ``mask_logits`` (a host read).

    Returns:
        ``(probability, target)``, both ``(R, 1, h, w)`` in float32 (float64 for float64 logits): the
        sigmoid of the ROI's ground-truth class channel, and its target. ``R = 0`` gives empty tensors,
        on which the core losses return a 0 with a gradient.

    Raises:
        TypeError: if ``mask_logits`` is not floating point or ``labels`` is.
        ValueError: if the ROI counts or mask sizes disagree, or (with ``validate_args``) a label is
            not a channel of ``mask_logits`` or a target lies outside ``[0, 1]`` (``{0, 255}``
            masks).

    Example:
        >>> logits = torch.randn(3, 80, 28, 28)
        >>> targets = (torch.rand(3, 28, 28) > 0.5).float()
        >>> prob, target = instance_mask_inputs(logits, targets, torch.tensor([0, 5, 79]))
        >>> prob.shape, target.shape
        (torch.Size([3, 1, 28, 28]), torch.Size([3, 1, 28, 28]))
    """
    if not isinstance(mask_logits, Tensor) or not mask_logits.is_floating_point() \
            or mask_logits.dim() != 4:
        raise TypeError(f"`mask_logits` must be floating-point logits of shape (R, K, h, w), "
                        f"got {_describe(mask_logits)}")
    if not isinstance(mask_targets, Tensor):
        raise TypeError(f"`mask_targets` must be a torch.Tensor, got {type(mask_targets).__name__}")
    if not isinstance(labels, Tensor) or labels.is_floating_point():
        raise TypeError(f"`labels` must be an integer tensor of shape (R,), got {_describe(labels)}")
    r, k, h, w = mask_logits.shape
    if mask_targets.dim() == 4 and mask_targets.shape[1] == 1:
        mask_targets = mask_targets[:, 0]
    if mask_targets.shape != (r, h, w):
        raise ValueError(f"`mask_targets` must have shape ({r}, {h}, {w}) to match `mask_logits` "
                         f"{tuple(mask_logits.shape)}, got {tuple(mask_targets.shape)}")
    labels = labels.reshape(-1)
    if k > 1 and labels.shape[0] != r:
        raise ValueError(f"`labels` must hold one class per ROI ({r}), got shape {tuple(labels.shape)}")
    if validate_args:
        check_values({"mask_logits": mask_logits, "mask_targets": mask_targets})
    if validate_args and r > 0:
        # one host read for the label range and the targets' range
        stats = [mask_targets.detach().float().amin(), mask_targets.detach().float().amax()]
        if k > 1:
            stats += [labels.detach().float().amin(), labels.detach().float().amax()]
        values = torch.stack(stats).tolist()
        if not (0.0 <= values[0] and values[1] <= 1.0):
            raise ValueError(f"`mask_targets` must be foreground fractions in [0, 1] (binary masks as 0 "
                             f"and 1), got values in [{values[0]:g}, {values[1]:g}]: scale {{0, 255}} "
                             f"masks by 1/255")
        if k > 1 and (values[2] < 0 or values[3] >= k):
            raise ValueError(f"`labels` must be classes in [0, {k}) of `mask_logits`, got values in "
                             f"[{int(values[2])}, {int(values[3])}]")
    dtype = compute_dtype(mask_logits)
    target = mask_targets.to(dtype).unsqueeze(1)
    if k == 1:
        return torch.sigmoid(mask_logits.to(dtype)), target
    index = labels.long().clamp(0, k - 1).view(r, 1, 1, 1).expand(r, 1, h, w)
    probability = torch.sigmoid(mask_logits.gather(1, index).to(dtype))
    # without validation an ROI whose class is no channel compares its target with itself: it
    # contributes 0 and no gradient, instead of another class's mask
    known = ((labels >= 0) & (labels < k)).view(r, 1, 1, 1)
    return torch.where(known, probability, target.detach()), target


def per_roi_in_buckets(loss_fn, probability: Tensor, target: Tensor,
                       bucket: Optional[int] = None) -> Tensor:
    """``loss_fn(probability, target)`` per ROI ``(R,)``, with the ROI batch padded to a multiple of
    ``bucket`` (default :data:`ROI_BUCKET` on CUDA, none elsewhere).

    The number of positive ROIs changes at every step; with ``torch.backends.cudnn.benchmark`` on,
    cuDNN tunes a convolution again for every new batch size (a 3.3x slower Mask R-CNN step measured
    on an H200 with the random-CNN loss). Padded ROIs are zero masks whose values are dropped: the
    losses compare each ROI on its own, so the result is the unpadded one. The padding is computed
    from the shape (a Python int): no host read.

    Example:
        >>> from randperc_plugins.losses import PatchMMDLoss
        >>> loss = PatchMMDLoss(reduction="none")
        >>> prob, target = torch.rand(5, 1, 28, 28), torch.rand(5, 1, 28, 28)
        >>> per_roi_in_buckets(loss, prob, target, bucket=8).shape
        torch.Size([5])
    """
    if bucket is None:
        bucket = ROI_BUCKET if probability.is_cuda else 1
    rois = probability.shape[0]
    padded = -(-rois // bucket) * bucket if rois else 0
    if padded == rois:
        return loss_fn(probability, target)
    extra = (padded - rois,) + tuple(probability.shape[1:])
    probability = torch.cat((probability, probability.new_zeros(extra)))
    target = torch.cat((target, target.new_zeros(extra)))
    return loss_fn(probability, target)[:rois]


def restoration_inputs(pred: Tensor, target: Tensor, *,
                       validate_args: bool = True) -> Tuple[Tensor, Tensor]:
    """A restored image and its ground truth, ``(N, C, H, W)`` floating point of the same shape.

    Returned unchanged after the checks; the core losses' defaults assume RGB in ``[0, 1]``.
    With ``validate_args`` (one host read) both must also be finite and inside ``[-0.5, 1.5]``
    (``UNIT_RANGE_TOLERANCE``: an output may overshoot ``[0, 1]`` a little; ``[0, 255]`` or ``[-1, 1]``
    images are refused, with the range seen).

    Raises:
        TypeError: if either is not a floating-point tensor.
        ValueError: if either is not 4-D or their shapes differ, or (with ``validate_args``) either
            holds NaN or Inf or lies outside ``[-0.5, 1.5]``.

    Example:
        >>> pred, target = restoration_inputs(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
        >>> pred.shape
        torch.Size([1, 3, 8, 8])
    """
    check_image_pair(pred, target, validate_args=False)
    if validate_args:
        check_values({"pred": pred, "target": target}, UNIT_RANGE_TOLERANCE,
                     expected="the restoration defaults and calibrated weights assume RGB in [0, 1] "
                              "(check the data preprocessor's mean and std, e.g. std=[255, 255, 255])")
    return pred, target
