"""Suggest a loss weight: the added term's gradient against the baseline loss's (segmentation or SR).

    python tools/calibrate_loss_weight.py {gpl,patch-mmd} --num-classes 19 --size 512 1024 \\
        [--target-ratio 0.33] [--loss-options key=value ...]
    python tools/calibrate_loss_weight.py {gpl,patch-mmd} --task sr --scale 4 --size 96 96 \\
        [--target-ratio 0.33] [--loss-options key=value ...]

Super-resolution (``--task sr``): ground truth is a batch of crops of real photographs (scikit-image's
shipped ``astronaut``, ``chelsea``, ``coffee``, ``rocket``), RGB in [0, 1]. The prediction is the
bicubic upsampling of their bicubic ``--scale`` x downsampling (what an untrained SR network gives,
``q = 0``), and that prediction moved half-way (``q = 0.5``) and 80% of the way (``q = 0.8``) towards
the ground truth (a network nearing convergence). For each the tool prints L1 (mmagic's pixel loss),
the term, and the ratio of their gradient norms on the prediction; the suggested ``loss_weight``
makes the term's gradient ``--target-ratio`` times L1's at the last quality.

Segmentation (default):

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

from randperc_plugins.datasets.seg_scenes import _draw_sample

QUALITIES = (0.0, 3.0, 6.0)
SR_QUALITIES = (0.0, 0.5, 0.8)
SR_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


def _loss(kind: str, options: dict):
    from randperc_plugins.losses.patch_mmd import PatchMMDLoss
    from randperc_plugins.losses.random_cnn import RandomCNNPerceptualLoss

    return (RandomCNNPerceptualLoss if kind == "gpl" else PatchMMDLoss)(**options)


def calibrate(kind: str, num_classes: int, size, batch: int = 2, options=None, seed: int = 0):
    """Rows ``{quality, ce, loss, grad_ratio}`` for logits of growing quality."""
    from randperc_plugins.losses._utils import probabilities_and_one_hot

    h, w = size
    rng = np.random.default_rng(seed)
    label = torch.stack([torch.from_numpy(_draw_sample(rng, max(h, w), min(num_classes, 6))[1][:h, :w])
                         for _ in range(batch)]).long()
    one_hot = F.one_hot(torch.where(label == 255, 0, label), num_classes).permute(0, 3, 1, 2).float()
    g = torch.Generator().manual_seed(seed)
    loss = _loss(kind, options or {})
    rows = []
    for q in QUALITIES:
        noise = torch.randn(batch, num_classes, max(1, h // 16), max(1, w // 16), generator=g)
        logits = (q * one_hot + 2 * F.interpolate(noise, size=(h, w), mode="bilinear")).requires_grad_()
        ce = F.cross_entropy(logits, label, ignore_index=255)
        (g_ce,) = torch.autograd.grad(ce, logits)
        probs, target, mask = probabilities_and_one_hot(logits, label, 255)
        value = loss(probs, target, weight=mask)
        (g_loss,) = torch.autograd.grad(value, logits)
        rows.append(dict(quality=q, ce=ce.item(), loss=value.item(),
                         grad_ratio=(g_loss.norm() / g_ce.norm()).item()))
    return rows


def photo_crops(size, names=SR_PHOTOS) -> torch.Tensor:
    """Centre crops ``(len(names), 3, H, W)`` in [0, 1] of scikit-image's shipped RGB photographs."""
    from skimage import data

    h, w = size
    crops = []
    for name in names:
        img = getattr(data, name)()
        top, left = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
        if top < 0 or left < 0:
            raise ValueError(f"`size` must fit in the photograph {name!r} {img.shape[:2]}, got {tuple(size)}")
        crops.append(torch.from_numpy(np.ascontiguousarray(img[top:top + h, left:left + w])))
    return torch.stack(crops).permute(0, 3, 1, 2).float() / 255


def calibrate_sr(kind: str, scale: int, size, options=None):
    """Rows ``{quality, l1, loss, grad_ratio}`` for SR predictions of growing quality (``--task sr``)."""
    from randperc_plugins.losses.tasks import task_defaults

    gt = photo_crops(size)
    h, w = gt.shape[-2:]
    lq = F.interpolate(gt, size=(h // scale, w // scale), mode="bicubic", antialias=True,
                       align_corners=False)
    bicubic = F.interpolate(lq, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)
    settings = task_defaults("restoration", "random_cnn" if kind == "gpl" else "patch_mmd")
    settings.update(options or {})
    settings["loss_weight"] = 1.0
    loss = _loss(kind, settings)
    rows = []
    for q in SR_QUALITIES:
        pred = (bicubic + q * (gt - bicubic)).requires_grad_()
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
    parser.add_argument("--task", choices=["seg", "sr"], default="seg")
    parser.add_argument("--num-classes", type=int, default=19)
    parser.add_argument("--scale", type=int, default=4, help="SR scale factor (--task sr)")
    parser.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"),
                        help="label map (seg, default 512 1024) or ground-truth crop (sr, default 96 96)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--target-ratio", type=float, default=0.33)
    parser.add_argument("--loss-options", nargs="+", action=DictAction, default={})
    args = parser.parse_args(argv)
    if args.task == "sr":
        rows = calibrate_sr(args.loss, args.scale, args.size or (96, 96), args.loss_options)
        print("| quality | L1 | loss | gradient-norm ratio |\n|---|---|---|---|")
        for r in rows:
            print(f"| {r['quality']:.1f} | {r['l1']:.4f} | {r['loss']:.4g} | {r['grad_ratio']:.4g} |")
        print(f"suggested loss_weight: {args.target_ratio / rows[-1]['grad_ratio']:.3g} "
              f"(gradient {args.target_ratio} x L1's at quality {SR_QUALITIES[-1]})")
        return rows
    args.size = args.size or (512, 1024)
    rows = calibrate(args.loss, args.num_classes, args.size, args.batch, args.loss_options)
    print("| quality | cross-entropy | loss | gradient-norm ratio |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['quality']:.0f} | {r['ce']:.3f} | {r['loss']:.4g} | {r['grad_ratio']:.4g} |")
    print(f"suggested loss_weight: {args.target_ratio / rows[-1]['grad_ratio']:.3g} "
          f"(gradient {args.target_ratio} x cross-entropy's at quality {QUALITIES[-1]:.0f})")


if __name__ == "__main__":
    main()
