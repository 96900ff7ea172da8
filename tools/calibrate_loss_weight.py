"""Suggest a loss weight: the added term's gradient against the baseline loss's (segmentation, SR, masks).

    python tools/calibrate_loss_weight.py {gpl,patch-mmd} --num-classes 19 --size 512 1024 \\
        [--target-ratio 0.33] [--loss-options key=value ...]
    python tools/calibrate_loss_weight.py {gpl,patch-mmd} --task instance-masks [--num-rois 64] \\
        [--upsample 1 2 4] [--target-ratio 0.33] [--loss-options key=value ...]
    python tools/calibrate_loss_weight.py {gpl,patch-mmd} --task sr --scale 4 --size 96 96 \\
        [--target-ratio 0.33] [--loss-options key=value ...]

Super-resolution (``--task sr``): ground truth is a batch of crops of real photographs (scikit-image's
shipped ``astronaut``, ``chelsea``, ``coffee``, ``rocket``), RGB in [0, 1]. The prediction is the
bicubic upsampling of their bicubic ``--scale`` x downsampling (what an untrained SR network gives,
``q = 0``), and that prediction moved half-way (``q = 0.5``) and 80% of the way (``q = 0.8``) towards
the ground truth (a network nearing convergence). For each the tool prints L1 (mmagic's pixel loss),
the term, and the ratio of their gradient norms on the prediction; the suggested ``loss_weight``
makes the term's gradient ``--target-ratio`` times L1's at the last quality.

Instance masks (``--task instance-masks``, mmdet's and detectron2's mask heads): 28x28 ROI targets of
discs, rotated boxes, triangles and bars 2-3 pixels wide, logits ``q * (2 target - 1) + smooth noise``
at the same three qualities (the weight is suggested at q = 3, mask BCE about 0.1); the baseline is the
mask binary cross-entropy (mmdet's ``use_mask=True`` ``CrossEntropyLoss``, averaged over the ROI
pixels). ``--upsample`` also prints, per upsampling factor
of the 28x28 masks, how the term answers to a one-pixel boundary shift relative to a uniform loss of
confidence, and which share of its gradient falls within a pixel of the boundary.

Segmentation:
Label maps are toy scenes (randperc_plugins/datasets/seg_scenes.py: shapes on a background, a void band). Logits are drawn at
three qualities: ``q * one_hot(label) + smooth noise`` for q = 0 (an untrained head), 3 and 6 (close to
converged, cross-entropy about 0.2 with 19 classes). For each the tool prints both losses and the ratio
of their gradient norms on the logits, and suggests the ``loss_weight`` that makes the added term's
gradient ``--target-ratio`` times cross-entropy's at q = 6. The shipped configs use such weights, so the
baseline loss still leads while the prediction is poor, and the perceptual term weighs in as it improves.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from randperc_plugins.analysis.task_inputs import (bicubic_prediction, noisy_logits, one_hot_labels,
                                                   photo_crops, scene_labels, sr_prediction)

QUALITIES = (0.0, 3.0, 6.0)
ROI_SIZE = 28
SR_QUALITIES = (0.0, 0.5, 0.8)


def _loss(kind: str, options: dict):
    """The core loss with the segmentation defaults of ``tasks`` but weight 1 (the weight is what
    this tool suggests); ``options`` override them."""
    from randperc_plugins.losses import PatchMMDLoss, RandomCNNPerceptualLoss, tasks

    name = "random_cnn" if kind == "gpl" else "patch_mmd"
    settings = {**tasks.task_defaults("segmentation", name), "loss_weight": 1.0, **options}
    return (RandomCNNPerceptualLoss if kind == "gpl" else PatchMMDLoss)(**settings)


def calibrate(kind: str, num_classes: int, size, batch: int = 2, options=None, seed: int = 0):
    """Rows ``{quality, ce, loss, grad_ratio}`` for logits of growing quality."""
    from randperc_plugins.losses.tasks import segmentation_inputs

    label = scene_labels("shapes", size, batch, num_classes, seed)
    one_hot = one_hot_labels(label, num_classes)
    g = torch.Generator().manual_seed(seed)
    loss = _loss(kind, options or {})
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


def roi_targets(num_rois: int, seed: int = 0, size: int = ROI_SIZE) -> torch.Tensor:
    """``(R, size, size)`` binary ROI targets: the coco_shapes shapes, drawn at ROI scale."""
    from randperc_plugins.datasets.coco_shapes import CATEGORIES, _random_polygon, _rasterise

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


def calibrate_instance_masks(kind: str, num_rois: int = 64, options=None, seed: int = 0):
    """Rows ``{quality, ce, loss, grad_ratio}`` of the term against mmdet's mask BCE on ROI logits."""
    target = roi_targets(num_rois, seed)
    g = torch.Generator().manual_seed(seed)
    loss = _loss(kind, options or {})
    rows = []
    for q in QUALITIES:
        noise = torch.randn(num_rois, 1, ROI_SIZE // 4, ROI_SIZE // 4, generator=g)
        logits = (q * (2 * target[:, None] - 1)
                  + 2 * F.interpolate(noise, size=(ROI_SIZE, ROI_SIZE), mode="bilinear")).requires_grad_()
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
    loss = _loss(kind, {"reduction": "none", **(options or {})}).double()
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
    """Rows ``{quality, l1, loss, grad_ratio}`` for SR predictions of growing quality (``--task sr``)."""
    from randperc_plugins.losses.tasks import task_defaults

    gt = photo_crops(size)
    bicubic = bicubic_prediction(gt, scale)
    settings = task_defaults("restoration", "random_cnn" if kind == "gpl" else "patch_mmd")
    settings.update(options or {})
    settings["loss_weight"] = 1.0
    loss = _loss(kind, settings)
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


def main(argv=None):
    from mmengine.config import DictAction

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("loss", choices=["gpl", "patch-mmd"])
    parser.add_argument("--num-classes", type=int, default=19)
    parser.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"),
                        help="label map (segmentation, default 512 1024) or ground-truth crop (sr, default 96 96)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--target-ratio", type=float, default=0.33)
    parser.add_argument("--loss-options", nargs="+", action=DictAction, default={})
    parser.add_argument("--task", choices=["segmentation", "instance-masks", "sr"], default="segmentation")
    parser.add_argument("--scale", type=int, default=4, help="SR scale factor (--task sr)")
    parser.add_argument("--num-rois", type=int, default=64, help="instance masks: ROIs in the batch")
    parser.add_argument("--upsample", type=int, nargs="*", default=[],
                        help="instance masks: upsampling factors of the 28x28 masks to compare")
    args = parser.parse_args(argv)
    if args.task == "sr":
        rows = calibrate_sr(args.loss, args.scale, args.size or (96, 96), args.loss_options)
        print("| quality | L1 | loss | gradient-norm ratio |\n|---|---|---|---|")
        for r in rows:
            print(f"| {r['quality']:.1f} | {r['l1']:.4f} | {r['loss']:.4g} | {r['grad_ratio']:.4g} |")
        print(f"suggested loss_weight: {args.target_ratio / rows[-1]['grad_ratio']:.3g} "
              f"(gradient {args.target_ratio} x L1's at quality {SR_QUALITIES[-1]})")
        return rows
    if args.task == "instance-masks":
        rows = calibrate_instance_masks(args.loss, args.num_rois, args.loss_options)
        if args.upsample:
            print("| upsampling | shift / offset (disc, bar, box) | gradient share on the boundary "
                  "(disc, bar, box) |\n|---|---|---|")
            for r in upsampling_effect(args.loss, args.upsample, args.loss_options):
                print(f"| x{r['factor']} | {', '.join(f'{v:.2f}' for v in r['shift_vs_offset'])} | "
                      f"{', '.join(f'{v:.2f}' for v in r['boundary_grad_share'])} |")
    else:
        rows = calibrate(args.loss, args.num_classes, args.size or (512, 1024), args.batch, args.loss_options)
    print("| quality | baseline cross-entropy | loss | gradient-norm ratio |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['quality']:.0f} | {r['ce']:.3f} | {r['loss']:.4g} | {r['grad_ratio']:.4g} |")
    # Segmentation: at quality 6 (cross-entropy about 0.2 with 19 classes, a trained head). Instance
    # masks: at quality 3 (mask BCE about 0.1; a trained Mask R-CNN logs loss_mask about 0.2), since at
    # quality 6 the mask BCE is already under 0.01.
    at = -1 if args.task == "segmentation" else 1
    print(f"suggested loss_weight: {args.target_ratio / rows[at]['grad_ratio']:.3g} "
          f"(gradient {args.target_ratio} x cross-entropy's at quality {QUALITIES[at]:.0f})")


if __name__ == "__main__":
    main()
