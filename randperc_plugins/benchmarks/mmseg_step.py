"""PSPNet-R50 train step with and without each perceptual loss, as ratios measured in one process.

    python tools/benchmark.py mmseg-step [--device cuda|cpu] [--size H W] [--batch N] [--repeat R]

Defaults: batch 2 at 512x1024 on a GPU (the Cityscapes training shape); batch 2 at 256x512 on a CPU,
where the full shape takes minutes per step. Each variant is the baseline decode loss plus the added
term, exactly as the one-line config builds it (``AddRandomCNNPerceptualLoss`` / ``AddPatchMMDLoss``).
"""
from __future__ import annotations

import argparse
import functools

import torch

from . import _framework_models as fm
from .common import STEP_COLUMNS, format_table, step_rows

BASE_LOSS = dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0)
VARIANTS = {
    "baseline (cross-entropy)": BASE_LOSS,
    "+ random-CNN (loss_gpl)": dict(BASE_LOSS, type="randperc_plugins.mmseg.AddRandomCNNPerceptualLoss"),
    "+ patch-MMD (loss_patch_mmd)": dict(BASE_LOSS, type="randperc_plugins.mmseg.AddPatchMMDLoss"),
}


def run(device: torch.device, size, batch: int, repeat: int = 2):
    """Rows of step time and peak memory per variant, with ratios to the baseline.

    The variants' steps are timed in turn (baseline, random-CNN, patch-MMD, baseline, ...) and the
    median of each is kept, so that a change in the machine's load affects all of them alike.
    """
    steps = {}
    for name, loss in VARIANTS.items():
        model = fm.build_pspnet_r50(size=size, decode_loss=loss).to(device)
        data = fm.to_device(fm.seg_batch(model, size=size, batch=batch), device)
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
        steps[name] = functools.partial(fm.train_step, model, data, optimizer)
        steps[name]()  # warm-up
    return step_rows(steps, device, repeat)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"))
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    size = tuple(args.size) if args.size else ((512, 1024) if device.type == "cuda" else (256, 512))
    rows = run(device, size, args.batch, args.repeat)
    print(f"PSPNet-R50-D8 train step, batch {args.batch} at {size[0]}x{size[1]}, {device.type}, "
          f"{torch.get_num_threads()} threads")
    print(format_table(rows, STEP_COLUMNS))


if __name__ == "__main__":
    main()
