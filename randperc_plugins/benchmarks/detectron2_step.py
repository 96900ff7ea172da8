"""Detectron2 Mask R-CNN R50-FPN train step with and without each perceptual mask loss, as ratios.

    python tools/benchmark.py detectron2-step [--device cuda|cpu] [--size H W] [--batch N]
                                              [--instances K] [--rois R] [--repeat N]

The model is detectron2's model-zoo ``COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml`` (random
weights, nothing downloaded), the variants its mask head swapped by the one line
(``MaskRCNNConvUpsampleHeadWithGPL`` / ``...WithPatchMMD``). A step is forward + backward inside an
``EventStorage`` on a batch of images with ``K`` polygon instances each (COCO averages about 7).
Defaults: on a GPU, 2 images at 800x1216 (COCO's training scale) with the config's 512 sampled ROIs per
image; on a CPU, 2 images at 320x320 with 128 ROIs, where the full shape takes minutes per step.
"""
from __future__ import annotations

import argparse
import functools

import torch

from . import _detectron2_models as dm
from .common import STEP_COLUMNS, format_table, step_rows

CONFIG = "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml"
VARIANTS = {
    "baseline (loss_mask)": None,
    "+ random-CNN (loss_mask_gpl)": "gpl",
    "+ patch-MMD (loss_mask_patch_mmd)": "patch_mmd",
}


def run(device: torch.device, size, batch: int, instances: int, rois: int, repeat: int = 3):
    """Rows of step time and peak memory per variant, with ratios to the baseline; variants timed in
    turn (baseline, random-CNN, patch-MMD, baseline, ...), the median of each kept."""
    steps = {}
    data = dm.d2_batch(size=size, num_images=batch, num_instances=instances)
    for name, loss in VARIANTS.items():
        cfg = dm.model_zoo_config(CONFIG, mask_head=loss)
        cfg.MODEL.DEVICE = device.type
        if rois:
            dm.few_rois(cfg, rois)
        torch.manual_seed(0)
        model = dm.build_model(cfg)
        steps[name] = functools.partial(dm.d2_train_step, model, data)
        steps[name]()  # warm-up
        model.zero_grad(set_to_none=True)
    return step_rows(steps, device, repeat)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"))
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--instances", type=int, default=7, help="instances per image")
    parser.add_argument("--rois", type=int, default=None,
                        help="ROIs sampled per image (default: the config's 512 on a GPU, 128 on a CPU)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    size = tuple(args.size) if args.size else ((800, 1216) if gpu else (320, 320))
    rois = args.rois if args.rois is not None else (0 if gpu else 128)
    rows = run(device, size, args.batch, args.instances, rois, args.repeat)
    print(f"Mask R-CNN R50-FPN (detectron2) train step, {args.batch} images at {size[0]}x{size[1]}, "
          f"{args.instances} instances each, {rois or 512} ROIs per image, {device.type}, "
          f"{torch.get_num_threads()} threads")
    print(format_table(rows, STEP_COLUMNS))


if __name__ == "__main__":
    main()
