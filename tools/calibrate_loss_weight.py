"""Suggest a segmentation loss weight: the added term's gradient on the logits against cross-entropy's.

    python tools/calibrate_loss_weight.py {gpl,patch-mmd} --num-classes 19 --size 512 1024 \\
        [--target-ratio 0.33] [--loss-options key=value ...]

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
        probs, target, mask = segmentation_inputs(logits, label, ignore_index=255)
        value = loss(probs, target, mask)
        (g_loss,) = torch.autograd.grad(value, logits)
        rows.append(dict(quality=q, ce=ce.item(), loss=value.item(),
                         grad_ratio=(g_loss.norm() / g_ce.norm()).item()))
    return rows


def main(argv=None):
    from mmengine.config import DictAction

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("loss", choices=["gpl", "patch-mmd"])
    parser.add_argument("--num-classes", type=int, default=19)
    parser.add_argument("--size", type=int, nargs=2, default=(512, 1024), metavar=("H", "W"))
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--target-ratio", type=float, default=0.33)
    parser.add_argument("--loss-options", nargs="+", action=DictAction, default={})
    args = parser.parse_args(argv)
    rows = calibrate(args.loss, args.num_classes, args.size, args.batch, args.loss_options)
    print("| quality | cross-entropy | loss | gradient-norm ratio |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['quality']:.0f} | {r['ce']:.3f} | {r['loss']:.4g} | {r['grad_ratio']:.4g} |")
    print(f"suggested loss_weight: {args.target_ratio / rows[-1]['grad_ratio']:.3g} "
          f"(gradient {args.target_ratio} x cross-entropy's at quality {QUALITIES[-1]:.0f})")


if __name__ == "__main__":
    main()
