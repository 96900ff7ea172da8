"""The demo tasks as the ablation trains them: the demo's model, data and settings, one config line per arm.

Every arm of a task trains through the demo's machinery (``demo.segmentation.prepare`` /
``demo.super_resolution.prepare``, ``demo.runs.train_all``) with the same seeds, data and iterations;
an arm's line is the one line of the framework's docs page with ``perceptual=dict(...)``: its overrides
and its weight.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Tuple

from ..demo import segmentation, super_resolution
from .arms import AblationArm

__all__ = ["Stage", "STAGES", "config_line"]


@dataclass(frozen=True)
class Stage:
    baseline: str  # the baseline arm's name (the demo's)
    adapter: str  # module of the one-line composites
    slot: str  # the config line around ``dict(type=..., perceptual=...)``, with ``{loss}`` for it
    headline_metrics: Tuple[str, ...]  # metrics ablation.md shows (the CSV holds all)
    default: object  # the demo's settings (seeds, iterations, ...)
    quick: object
    prepare: Callable  # (work_root, settings, {arm: config line}) -> (jobs, work dirs per arm)
    seconds_per_run: float  # measured by the demo on 2 shared cores, per run of `reference_iters`
    reference_iters: int


STAGES: Dict[str, Stage] = {
    "segmentation": Stage(
        baseline="ce", adapter="randperc_plugins.mmseg",
        slot="model = dict(decode_head=dict(loss_decode={loss}))",
        headline_metrics=("mIoU", "IoU.line", "IoU.blob"),
        default=segmentation.SegSettings(seeds=3, iters=100, val_interval=50, num_train=64, num_val=16),
        quick=segmentation.SegSettings(seeds=3, iters=20, val_interval=10, num_train=16, num_val=4,
                                       log_interval=5),
        prepare=segmentation.prepare, seconds_per_run=45.0, reference_iters=100),
    "super_resolution": Stage(
        baseline="l1", adapter="randperc_plugins.mmagic",
        slot="model = dict(pixel_loss={loss})",
        headline_metrics=("PSNR", "SSIM"),
        default=super_resolution.SRSettings(seeds=3, iters=300, val_interval=100, log_interval=20),
        quick=super_resolution.SRSettings(seeds=3, iters=10, val_interval=5, log_interval=5),
        prepare=super_resolution.prepare, seconds_per_run=40.0, reference_iters=300),
}

_COMPOSITES = {"random_cnn": "AddRandomCNNPerceptualLoss", "patch_mmd": "AddPatchMMDLoss"}


def config_line(task: str, arm: AblationArm, loss_weight: float) -> str:
    """The arm's one config line: the composite with the arm's overrides and ``loss_weight``."""
    stage = STAGES[task]
    perceptual = {k: v for k, v in arm.settings.items() if k != "loss_weight"}
    perceptual["loss_weight"] = float(loss_weight)
    loss = f"dict(type='{stage.adapter}.{_COMPOSITES[arm.loss]}', perceptual={perceptual!r})"
    return stage.slot.format(loss=loss)
