"""Equal gradient share: each arm's ``loss_weight`` so that its term's gradient, against the task's
baseline loss, is what the reference arm's is at its calibrated default weight.

A variant changes the term's scale (``init='kaiming'`` or deeper layers make the random-CNN term much
larger; one bandwidth changes patch-MMD's), so at the reference's weight it would also change how much
the term weighs against cross-entropy / L1. The share is measured where ``tools/calibrate_loss_weight.py``
calibrates the defaults (:mod:`experiments.calibration`: nearly converged predictions, the last
quality), at the demo task's own class count and crop size:

    weight(arm) = weight(reference) * ratio(reference) / ratio(arm)

with ``ratio`` the gradient-norm ratio term / baseline at weight 1.
"""
from __future__ import annotations

from typing import Dict, Sequence

from randperc_plugins.losses import PatchMMDLoss, RandomCNNPerceptualLoss

from .. import calibration
from ..datasets.seg_scenes import THIN_SCENE_CLASSES
from .arms import AblationArm

__all__ = ["CALIBRATION_POINTS", "gradient_ratio", "calibrated_weights"]

#: Where each demo task is calibrated: its class count and crop (segmentation: the 64x64 thin scenes;
#: super-resolution: the 48x48 ground-truth crops at x2).
CALIBRATION_POINTS = {
    "segmentation": dict(num_classes=len(THIN_SCENE_CLASSES), size=(64, 64)),
    "super_resolution": dict(scale=2, size=(48, 48)),
}


def gradient_ratio(task: str, loss: str, settings: dict) -> float:
    """Gradient-norm ratio of the core ``loss`` built from ``settings`` (at weight 1) to the task's
    baseline loss, at the calibration point (``calibration``'s last quality)."""
    cls = RandomCNNPerceptualLoss if loss == "random_cnn" else PatchMMDLoss
    core = cls(**{**settings, "loss_weight": 1.0, "reduction": "mean"})
    point = CALIBRATION_POINTS[task]
    if task == "segmentation":
        rows = calibration.segmentation_rows(core, point["num_classes"], point["size"])
    else:
        rows = calibration.sr_rows(core, point["scale"], point["size"])
    return rows[-1]["grad_ratio"]


def calibrated_weights(task: str, arms: Sequence[AblationArm]) -> Dict[str, float]:
    """``{arm name: loss_weight}`` for arms of one loss, the reference first: the reference keeps its
    task default, an arm that sets ``loss_weight`` keeps it, every other arm gets the weight that gives
    its term the reference's gradient share."""
    reference = arms[0]
    if not reference.is_reference:
        raise ValueError(f"the first arm must be the loss's reference (no overrides), got "
                         f"`{reference.name}` with {reference.describe()}")
    base_weight = float(reference.resolved["loss_weight"])
    weights = {reference.name: base_weight}
    base_ratio = None
    for arm in arms[1:]:
        if arm.fixed_weight is not None:
            weights[arm.name] = float(arm.fixed_weight)
            continue
        if base_ratio is None:
            base_ratio = gradient_ratio(task, reference.loss, reference.resolved)
        ratio = gradient_ratio(task, arm.loss, arm.resolved)
        if not ratio > 0:
            raise ValueError(f"ablation arm `{arm.name}` ({arm.describe()}): its term has no gradient at "
                             f"the calibration point (ratio {ratio!r}); give it a `loss_weight`")
        weights[arm.name] = base_weight * base_ratio / ratio
    return weights
