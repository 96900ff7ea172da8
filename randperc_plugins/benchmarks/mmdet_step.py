"""Mask R-CNN R50-FPN train step with and without each perceptual loss, as ratios measured in one process.

    python tools/benchmark.py mmdet-step [--device cuda|cpu] [--size H W] [--batch N] [--repeat R]

Defaults: batch 2 at 800x1344 on a GPU (COCO's 1333x800 training scale, padded to 32); batch 1 at
320x416 on a CPU, where the full shape takes minutes per step. Each image holds ``--instances``
ground-truth instances (32 by default; :func:`randperc_plugins.benchmarks._framework_models.det_batch`).
The untrained RPN of a benchmark proposes few boxes that overlap them, but mmdet's sampler adds the
ground truths to the proposals, so the mask head sees about that many positive ROIs per image: the
added term's cost grows with them (a trained Mask R-CNN on COCO samples up to 128 per image; the
table states the count measured). Each variant is mmdet's mask
cross-entropy plus the added term, exactly as the one-line config builds it
(``AddRandomCNNPerceptualLoss`` / ``AddPatchMMDLoss`` at their default weights).
"""
from __future__ import annotations

import argparse
import functools
import os

import torch

from . import _framework_models as fm
from .common import format_table, step_rows

BASE_LOSS = dict(type="CrossEntropyLoss", use_mask=True, loss_weight=1.0)
VARIANTS = {
    "baseline (mask cross-entropy)": BASE_LOSS,
    "+ random-CNN (loss_mask_gpl)": dict(BASE_LOSS, type="randperc_plugins.mmdet.AddRandomCNNPerceptualLoss"),
    "+ patch-MMD (loss_mask_patch_mmd)": dict(BASE_LOSS, type="randperc_plugins.mmdet.AddPatchMMDLoss"),
}


def _count_positive_rois(model, data) -> int:
    """Positive ROIs the mask head sees in one step (what the added term's cost scales with)."""
    seen = []
    head = model.roi_head.mask_head
    hook = head.register_forward_hook(lambda module, args, out: seen.append(out.shape[0]))
    try:
        model.train()
        model(data["inputs"], data["data_samples"], mode="loss")
    finally:
        hook.remove()
    return sum(seen)


def run(device: torch.device, size, batch: int, repeat: int = 3, num_instances: int = 32):
    """Rows of step time and peak memory per variant, with ratios to the baseline.

    The variants' steps are timed in turn (baseline, random-CNN, patch-MMD, baseline, ...) and the
    median of each is kept, so that a change in the machine's load affects all of them alike.
    """
    steps, rois = {}, {}
    for name, loss in VARIANTS.items():
        model = fm.build_mask_rcnn(mask_loss=loss).to(device)
        data = fm.to_device(fm.det_batch(model, size=size, batch=batch, num_instances=num_instances), device)
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
        steps[name] = functools.partial(fm.train_step, model, data, optimizer)
        steps[name]()  # warm-up
        rois[name] = _count_positive_rois(model, data)
    rows = step_rows(steps, device, repeat)
    for row in rows:
        row["positive ROIs"] = rois[row["variant"]]
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"))
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--instances", type=int, default=32, help="ground-truth instances per image")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    size = tuple(args.size) if args.size else ((800, 1344) if on_gpu else (320, 416))
    batch = args.batch or (2 if on_gpu else 1)
    load = os.getloadavg()[0]
    rows = run(device, size, batch, args.repeat, args.instances)
    print(f"Mask R-CNN R50-FPN train step, batch {batch} at {size[0]}x{size[1]}, {args.instances} "
          f"instances per image, {device.type}, "
          f"{torch.get_num_threads()} threads, load average {load:.1f} at start / "
          f"{os.getloadavg()[0]:.1f} at end on {os.cpu_count()} cores")
    print(format_table(rows, ["variant", "positive ROIs", "step s", "ratio to baseline", "peak MiB",
                              "memory ratio"]))


if __name__ == "__main__":
    main()
