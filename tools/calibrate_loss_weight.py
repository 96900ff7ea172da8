"""Suggest a loss weight: the added term's gradient against the baseline loss's (segmentation, SR, masks).

    python tools/calibrate_loss_weight.py {random_cnn,patch_mmd} --num-classes 19 --size 512 1024 \\
        [--target-ratio 0.33] [--loss-options key=value ...]
    python tools/calibrate_loss_weight.py {random_cnn,patch_mmd} --task instance_masks [--num-rois 64] \\
        [--upsample 1 2 4] [--target-ratio 0.33] [--loss-options key=value ...]
    python tools/calibrate_loss_weight.py {random_cnn,patch_mmd} --task restoration --scale 4 --size 96 96 \\
        [--target-ratio 0.33] [--loss-options key=value ...]

Super-resolution (``--task restoration``): ground truth is a batch of crops of real photographs (scikit-image's
shipped ``astronaut``, ``chelsea``, ``coffee``, ``rocket``), RGB in [0, 1]. The prediction is the
bicubic upsampling of their bicubic ``--scale`` x downsampling (what an untrained SR network gives,
``q = 0``), and that prediction moved half-way (``q = 0.5``) and 80% of the way (``q = 0.8``) towards
the ground truth (a network nearing convergence). For each the tool prints L1 (mmagic's pixel loss),
the term, and the ratio of their gradient norms on the prediction; the suggested ``loss_weight``
makes the term's gradient ``--target-ratio`` times L1's at the last quality.

Instance masks (``--task instance_masks``, mmdet's and detectron2's mask heads): 28x28 ROI targets of
discs, rotated boxes, triangles and bars 2-3 pixels wide, logits ``q * (2 target - 1) + smooth noise``
at the same three qualities (the weight is suggested at q = 3, mask BCE about 0.1); the baseline is the
mask binary cross-entropy (mmdet's ``use_mask=True`` ``CrossEntropyLoss``, averaged over the ROI
pixels). ``--upsample`` also prints, per upsampling factor
of the 28x28 masks, how the term answers to a one-pixel boundary shift relative to a uniform loss of
confidence, and which share of its gradient falls within a pixel of the boundary.

Segmentation:
Label maps are toy scenes (experiments/datasets/seg_scenes.py: shapes on a background, a void band). Logits are drawn at
three qualities: ``q * one_hot(label) + smooth noise`` for q = 0 (an untrained head), 3 and 6 (close to
converged, cross-entropy about 0.2 with 19 classes). For each the tool prints both losses and the ratio
of their gradient norms on the logits, and suggests the ``loss_weight`` that makes the added term's
gradient ``--target-ratio`` times cross-entropy's at q = 6. The shipped configs use such weights, so the
baseline loss still leads while the prediction is poor, and the perceptual term weighs in as it improves.
"""
from __future__ import annotations

import argparse
import os
import sys

# experiments/ is research code beside the package, not installed: import it from this checkout
# (the repository root, the parent of tools/).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from randperc_plugins.losses import names  # noqa: E402
from experiments.calibration import (QUALITIES, SR_QUALITIES, calibrate, calibrate_instance_masks,  # noqa: E402
                                     calibrate_sr, upsampling_effect)


def main(argv=None):
    from mmengine.config import DictAction

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("loss", type=names.loss_name, choices=names.LOSSES,
                        help="random_cnn or patch_mmd (earlier spellings gpl, patch-mmd are accepted)")
    parser.add_argument("--num-classes", type=int, default=19)
    parser.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"),
                        help="label map (segmentation, default 512 1024) or ground-truth crop (restoration, default 96 96)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--target-ratio", type=float, default=0.33)
    parser.add_argument("--loss-options", nargs="+", action=DictAction, default={})
    parser.add_argument("--task", type=names.task_name, choices=names.TASKS, default="segmentation",
                        help="earlier spellings sr, instance-masks are accepted")
    parser.add_argument("--scale", type=int, default=4, help="SR scale factor (--task restoration)")
    parser.add_argument("--num-rois", type=int, default=64, help="instance masks: ROIs in the batch")
    parser.add_argument("--upsample", type=int, nargs="*", default=[],
                        help="instance masks: upsampling factors of the 28x28 masks to compare")
    args = parser.parse_args(argv)
    if args.task == "restoration":
        rows = calibrate_sr(args.loss, args.scale, args.size or (96, 96), args.loss_options)
        print("| quality | L1 | loss | gradient-norm ratio |\n|---|---|---|---|")
        for r in rows:
            print(f"| {r['quality']:.1f} | {r['l1']:.4f} | {r['loss']:.4g} | {r['grad_ratio']:.4g} |")
        print(f"suggested loss_weight: {args.target_ratio / rows[-1]['grad_ratio']:.3g} "
              f"(gradient {args.target_ratio} x L1's at quality {SR_QUALITIES[-1]})")
        return rows
    if args.task == "instance_masks":
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
    return rows


if __name__ == "__main__":
    main()
