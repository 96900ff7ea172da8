"""Task inputs of the offline analyses: SR predictions of real photographs and segmentation logits.

Both are predictions of a chosen quality against their ground truth, as a network at a point of its
training would give them, so that a loss and its gradient can be measured without training:

* super-resolution: centre crops of scikit-image's shipped photographs (RGB in [0, 1]); the prediction
  is the bicubic upsampling of their bicubic ``scale`` x downsampling (an untrained SR network,
  quality 0), moved the fraction ``quality`` of the way towards the ground truth;
* segmentation: label maps of the generated scenes of :mod:`experiments.datasets.seg_scenes`;
  logits ``quality * one_hot(label) + 2 * smooth noise`` (quality 0: an untrained head; 6: close to
  converged, cross-entropy about 0.2 with 19 classes);
* instance masks: 28x28 ROI targets of the toy COCO dataset's shapes, drawn at ROI scale; logits
  ``quality * (2 * target - 1) + 2 * smooth noise`` (one foreground channel, as a mask head gives).

Used by ``tools/calibrate_loss_weight.py`` (:mod:`experiments.calibration`) and :mod:`experiments.analysis.layer_shares`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..datasets.seg_scenes import _draw_sample, _draw_thin_scene
from ..datasets.sr_photos import skimage_photos

#: The photographs the SR analyses crop (scikit-image's, shipped in its wheel).
SR_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
#: Kinds of segmentation scenes: ``'shapes'`` (rectangles and discs, a void band; ``make_seg_dataset``)
#: and ``'thin'`` (regions, 1-3 px lines and small blobs; the demo's ``make_thin_scenes_dataset``).
SCENE_KINDS = ("shapes", "thin")


def photo_crops(size, names: Sequence[str] = SR_PHOTOS) -> torch.Tensor:
    """Centre crops ``(len(names), 3, H, W)`` in [0, 1] of scikit-image's shipped RGB photographs.

    Example:
        >>> photo_crops((32, 48)).shape
        torch.Size([4, 3, 32, 48])
    """
    h, w = size
    crops = []
    for name, img in skimage_photos(names).items():
        top, left = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
        if top < 0 or left < 0:
            raise ValueError(f"`size` must fit in the photograph {name!r} {img.shape[:2]}, got {tuple(size)}")
        crops.append(torch.from_numpy(np.ascontiguousarray(img[top:top + h, left:left + w])))
    return torch.stack(crops).permute(0, 3, 1, 2).float() / 255


def bicubic_prediction(gt: torch.Tensor, scale: int) -> torch.Tensor:
    """The bicubic upsampling of ``gt``'s antialiased bicubic ``scale`` x downsampling, in [0, 1]."""
    h, w = gt.shape[-2:]
    lq = F.interpolate(gt, size=(h // scale, w // scale), mode="bicubic", antialias=True,
                       align_corners=False)
    return F.interpolate(lq, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)


def sr_prediction(gt: torch.Tensor, bicubic: torch.Tensor, quality: float) -> torch.Tensor:
    """``bicubic`` moved the fraction ``quality`` of the way to ``gt`` (a leaf that requires grad)."""
    return (bicubic + quality * (gt - bicubic)).requires_grad_()


def scene_labels(kind: str, size, batch: int, num_classes: int, seed: int = 0) -> torch.Tensor:
    """``(batch, H, W)`` int64 label maps of generated scenes (255 = void, in ``'shapes'`` only).

    ``'shapes'`` uses at most ``min(num_classes, 6)`` classes; ``'thin'`` has its 4 classes
    (``THIN_SCENE_CLASSES``) whatever ``num_classes``.

    Example:
        >>> scene_labels("thin", (32, 40), batch=2, num_classes=4).shape
        torch.Size([2, 32, 40])
    """
    if kind not in SCENE_KINDS:
        raise ValueError(f"`kind` must be one of {SCENE_KINDS}, got {kind!r}")
    h, w = size
    rng = np.random.default_rng(seed)
    maps = []
    for _ in range(batch):
        if kind == "shapes":
            label = _draw_sample(rng, max(h, w), min(num_classes, 6))[1]
        else:
            label = _draw_thin_scene(rng, max(h, w))[1]
        maps.append(torch.from_numpy(np.ascontiguousarray(label[:h, :w])))
    return torch.stack(maps).long()


def one_hot_labels(label: torch.Tensor, num_classes: int, ignore_index: int = 255) -> torch.Tensor:
    """``(N, K, H, W)`` float one-hot of ``label``, ignored pixels counted as class 0."""
    return F.one_hot(torch.where(label == ignore_index, 0, label), num_classes).permute(0, 3, 1, 2).float()


def noisy_logits(one_hot: torch.Tensor, quality: float, generator: torch.Generator) -> torch.Tensor:
    """``quality * one_hot + 2 * noise`` bilinearly upsampled from 1/16 of the size (a leaf that
    requires grad); draws one noise tensor from ``generator``."""
    n, k, h, w = one_hot.shape
    noise = torch.randn(n, k, max(1, h // 16), max(1, w // 16), generator=generator)
    return (quality * one_hot + 2 * F.interpolate(noise, size=(h, w), mode="bilinear")).requires_grad_()


#: The side of a Mask R-CNN mask head's ROI masks (mmdet's and detectron2's default).
ROI_SIZE = 28


def roi_targets(num_rois: int, seed: int = 0, size: int = ROI_SIZE) -> torch.Tensor:
    """``(R, size, size)`` binary ROI targets: the coco_shapes shapes, drawn at ROI scale.

    Example:
        >>> roi_targets(3).shape
        torch.Size([3, 28, 28])
    """
    from ..datasets.coco_shapes import CATEGORIES, _random_polygon, _rasterise

    rng = np.random.default_rng(seed)
    masks = []
    while len(masks) < num_rois:
        category_id = int(rng.integers(1, len(CATEGORIES) + 1))
        centre = rng.uniform(size * 0.4, size * 0.6, 2)
        # An ROI is fitted to its instance: shapes fill about the crop, as mmdet's mask targets do.
        polygon = np.clip(_random_polygon(rng, category_id, size * 3, centre), 0, size - 1)
        mask = _rasterise(polygon, size)
        if mask.any():
            masks.append(torch.from_numpy(mask))
    return torch.stack(masks).float()


def roi_logits(target: torch.Tensor, quality: float, generator: torch.Generator) -> torch.Tensor:
    """``(R, 1, h, w)`` mask logits ``quality * (2 * target - 1) + 2 * noise``, the noise bilinearly
    upsampled from a quarter of the size (a leaf that requires grad); ``target`` is ``(R, h, w)``."""
    r, h, w = target.shape
    noise = torch.randn(r, 1, max(1, h // 4), max(1, w // 4), generator=generator)
    return (quality * (2 * target[:, None] - 1)
            + 2 * F.interpolate(noise, size=(h, w), mode="bilinear")).requires_grad_()
