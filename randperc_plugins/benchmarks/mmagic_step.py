"""EDSR train step with and without each perceptual loss, and with mmagic's VGG-19 loss, in one process.

    python tools/benchmark.py mmagic-step [--device cuda|cpu] [--lq-size S] [--batch N] [--scale 2]
                                          [--repeat R]

Defaults: mmagic's EDSR x2 (c64b16) config's training shape on a GPU, batch 16 of 48x48 inputs (96x96
ground truths); batch 4 of 24x24 inputs on a CPU. Each variant is EDSR's pixel loss as a config builds
it: the baseline ``L1Loss``; the one-line composites ``AddRandomCNNPerceptualLoss`` /
``AddPatchMMDLoss`` at their defaults; and L1 plus mmagic's ``PerceptualLoss`` (VGG-19 to relu5_4 with
``layer_weights={'34': 1.0}``, as its SRGAN/ESRGAN configs use it) with random weights, since none can
be downloaded: the cost SR users already pay for a perceptual term. The steps are timed in turn and
reported as ratios to the baseline step, with each added term's cost (step minus baseline step) over
the VGG loss's. On a loaded machine the step differences drown in noise, so a second table times the
pixel losses alone (forward and backward on the step's output shape), in turn, as ratios to the VGG
variant: the cost each adds, measured directly.
"""
from __future__ import annotations

import argparse
import functools

import torch
from torch import nn

from . import _framework_models as fm
from .common import format_table, mib, peak_memory_call, time_in_turns
from .random_cnn import _vgg_perceptual_loss

BASE_LOSS = dict(type="L1Loss", loss_weight=1.0, reduction="mean")
VGG = "+ mmagic VGG-19 PerceptualLoss"
VARIANTS = {
    "baseline (L1)": BASE_LOSS,
    "+ random-CNN (loss_gpl)": dict(BASE_LOSS, type="randperc_plugins.mmagic.AddRandomCNNPerceptualLoss"),
    "+ patch-MMD (loss_patch_mmd)": dict(BASE_LOSS, type="randperc_plugins.mmagic.AddPatchMMDLoss"),
    VGG: BASE_LOSS,
}


class _L1PlusPerceptual(nn.Module):
    """``l1(pred, gt) + percep`` of a ``(percep, style)`` perceptual loss: a VGG term on ``pixel_loss``."""

    def __init__(self, l1: nn.Module, perceptual: nn.Module) -> None:
        super().__init__()
        self.l1, self.perceptual = l1, perceptual

    def forward(self, pred, target, weight=None, **kwargs):
        return self.l1(pred, target) + self.perceptual(pred, target)[0]


def _loss_call(loss: nn.Module, pred: torch.Tensor, target: torch.Tensor):
    def call():
        pred.grad = None
        loss(pred, target).backward()
    return call


def run(device: torch.device, lq_size: int, batch: int, scale: int = 2, repeat: int = 3):
    """Rows of step time and peak memory per variant, with ratios to the baseline and to the VGG term;
    then rows of each pixel loss timed alone (``table='loss'``)."""
    steps, losses = {}, {}
    g = torch.Generator().manual_seed(0)
    side = lq_size * scale
    target = torch.rand(batch, 3, side, side, generator=g).to(device)
    pred = (target + 0.05 * torch.randn(batch, 3, side, side, generator=g).to(device)).requires_grad_()
    for name, loss in VARIANTS.items():
        model = fm.build_edsr(pixel_loss=loss, scale=scale)
        if name == VGG:
            vgg = _vgg_perceptual_loss(torch.device("cpu"))
            if vgg is None:
                continue
            model.pixel_loss = _L1PlusPerceptual(model.pixel_loss, vgg)
        model = model.to(device)
        data = fm.to_device(fm.sr_batch(model, lq_size=lq_size, batch=batch, scale=scale), device)
        optimizer = torch.optim.Adam(model.generator.parameters(), lr=1e-4)
        steps[name] = functools.partial(fm.train_step, model, data, optimizer)
        steps[name]()  # warm-up (draws the random network on the first call)
        losses[name] = _loss_call(model.pixel_loss, pred, target)
        losses[name]()
    times = time_in_turns(steps, device, repeat)
    loss_times = time_in_turns(losses, device, repeat)
    base_time = times["baseline (L1)"]
    vgg_cost = times[VGG] - base_time if VGG in times else None
    rows, base_mem = [], None
    for name, step in steps.items():
        seconds = times[name]
        peak = peak_memory_call(step, device)
        base_mem = peak if base_mem is None else base_mem
        cost = seconds - base_time
        rows.append({"variant": name, "step s": seconds, "ratio to baseline": seconds / base_time,
                     "added cost / VGG's": None if not vgg_cost or name.startswith("baseline")
                     else cost / vgg_cost,
                     "peak MiB": mib(peak),
                     "memory ratio": None if not (peak and base_mem) else peak / base_mem})
    for name, seconds in loss_times.items():
        rows.append({"table": "loss", "variant": name, "loss s": seconds,
                     "ratio to L1": seconds / loss_times["baseline (L1)"],
                     "ratio to L1 + VGG": seconds / loss_times[VGG] if VGG in loss_times else None})
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--lq-size", type=int, default=None, help="input crop (48 on a GPU, 24 on a CPU)")
    parser.add_argument("--batch", type=int, default=None, help="16 on a GPU, 4 on a CPU")
    parser.add_argument("--scale", type=int, default=2, choices=(2, 3, 4))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    lq_size = args.lq_size or (48 if gpu else 24)
    batch = args.batch or (16 if gpu else 4)
    rows = run(device, lq_size, batch, args.scale, args.repeat)
    print(f"EDSR x{args.scale} train step, batch {batch} of {lq_size}x{lq_size} inputs "
          f"({lq_size * args.scale}x{lq_size * args.scale} ground truths), {device.type}, "
          f"{torch.get_num_threads()} threads")
    print(format_table([r for r in rows if "table" not in r],
                       ["variant", "step s", "ratio to baseline", "added cost / VGG's", "peak MiB",
                        "memory ratio"]))
    print("\npixel loss alone (forward + backward) on the step's output shape")
    print(format_table([r for r in rows if r.get("table") == "loss"],
                       ["variant", "loss s", "ratio to L1", "ratio to L1 + VGG"]))


if __name__ == "__main__":
    main()
