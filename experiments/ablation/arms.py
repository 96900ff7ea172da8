"""Ablation arms: a name, a core loss and the settings that override the task's defaults.

``ABLATIONS[task][loss]`` maps each variant's name to its settings, as keyword arguments of the core loss
(:class:`~randperc_plugins.losses.RandomCNNPerceptualLoss` for ``'random_cnn'``,
:class:`~randperc_plugins.losses.PatchMMDLoss` for ``'patch_mmd'``) that override
``task_defaults(task, loss)``. A new core setting is one more entry here. Each loss's reference arm, its
current default (no override), is added in front of its variants. A ``loss_weight`` among the settings is
used as it is; otherwise the arm's weight is calibrated (:mod:`.weights`).
"""
from __future__ import annotations

import dataclasses
import inspect
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from randperc_plugins.losses import PatchMMDLoss, RandomCNNPerceptualLoss
from randperc_plugins.losses.patch_mmd import PatchMMDSpec
from randperc_plugins.losses.random_cnn import VGG19_WIDTHS
from randperc_plugins.losses.tasks import task_defaults

__all__ = ["LOSSES", "ABLATIONS", "AblationArm", "reference_arm", "arms_of", "select_arms",
           "check_settings"]

#: Core loss key (as in ``TASK_DEFAULTS``) -> the reference arm's name (the demo's short name of the term).
LOSSES = {"random_cnn": "gpl", "patch_mmd": "patch_mmd"}

#: The ablation task's key in ``TASK_DEFAULTS``.
TASK_SETTINGS_KEY = {"segmentation": "segmentation", "super_resolution": "restoration"}

_DEEPER_LAYERS = ("relu1_2", "relu2_2", "relu3_4", "relu4_4")
# The default divides each layer's term by its gain at initialisation (`balance='init'`), so every
# compared layer counts whatever the init: under it 'gpl' and 'kaiming' give the same loss, and a deeper
# layer weighs as much as the others. The unbalanced loss (release 0.2's default) is the arm
# `gpl_balance_none`; with it the init matters ('gpl' shrinks relu3_4 to 0.1% of the loss), so
# `gpl_kaiming` is Kaiming's init unbalanced.
_GPL_VARIANTS = {
    "gpl_balance_none": {"balance": "none"},
    "gpl_kaiming": {"init": "kaiming", "balance": "none"},
    "gpl_deeper": {"layers": _DEEPER_LAYERS},
    "gpl_balance_target": {"balance": "target"},
    "gpl_mse": {"distance": "mse"},
}

# Patch-MMD's kernel of the random CNN is tried at depth 2: at the default depth 7 one forward and
# backward pass on the segmentation demo's batch took 5.6 s against 0.26 s for the Gaussian default
# (1.5 s against 0.12 s on the SR batch), too slow to train with on the CPU; depth 2 took 1.0 s / 0.5 s.
#: Variants per task and core loss: name -> settings overriding the task's defaults. Patch-MMD's
#: ``method='exact'`` is not among them: it is not affordable at the demos' sizes on the CPU (computing
#: the calibration's three forward and backward passes took 68 s exact against 11 s with the default
#: 'auto' for the 48x48 SR crops, 50 s against 4 s for the 64x64 segmentation maps, on 2 shared cores).
ABLATIONS: Dict[str, Dict[str, Dict[str, dict]]] = {
    "segmentation": {
        "random_cnn": _GPL_VARIANTS,
        "patch_mmd": {  # the segmentation default is 3x3 patches
            "patch_mmd_windows": {"window_size": 32, "window_stride": 16},
            "patch_mmd_channel_mean": {"normalize": "channel_mean"},
            "patch_mmd_random_cnn": {"kernel": "random_cnn", "depth": 2},
            "patch_mmd_p5": {"patch_size": 5},
            "patch_mmd_1sigma": {"sigmas": (round(0.06 * 3 * 3, 12),)},
        },
    },
    "super_resolution": {
        # the default network is VGG-19's first three stages at half width (a quarter of the cost);
        # release 0.2's full width is this arm (`gpl_half_width` against it at commit 8b39a6f)
        "random_cnn": {**_GPL_VARIANTS, "gpl_full_width": {"widths": VGG19_WIDTHS}},
        "patch_mmd": {  # the restoration default is the core's 7x7 patches
            "patch_mmd_windows": {"window_size": 32, "window_stride": 16},
            "patch_mmd_channel_mean": {"normalize": "channel_mean"},
            "patch_mmd_random_cnn": {"kernel": "random_cnn", "depth": 2},
            "patch_mmd_p3": {"patch_size": 3},
            "patch_mmd_1sigma": {"sigmas": (round(0.06 * 7 * 7, 12),)},
        },
    },
}

_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class AblationArm:
    """One arm: ``settings`` are the overrides, ``resolved`` the task defaults with them applied."""

    name: str
    loss: str  # 'random_cnn' or 'patch_mmd'
    settings: dict = field(default_factory=dict)
    resolved: dict = field(default_factory=dict)

    @property
    def is_reference(self) -> bool:
        return not self.settings

    @property
    def fixed_weight(self) -> Optional[float]:
        """The ``loss_weight`` the arm sets itself (no calibration), or None."""
        return self.settings.get("loss_weight")

    def describe(self) -> str:
        """The overrides as ``key=value`` (``default`` for the reference arm)."""
        return ", ".join(f"{k}={v!r}" for k, v in self.settings.items()) or "default"


def _accepted_settings(loss: str) -> set:
    cls = RandomCNNPerceptualLoss if loss == "random_cnn" else PatchMMDLoss
    names = {p.name for p in inspect.signature(cls.__init__).parameters.values()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - {"self"}
    if loss == "patch_mmd":  # PatchMMDLoss takes the spec's fields as **settings
        names |= {f.name for f in dataclasses.fields(PatchMMDSpec)}
    return names


def check_settings(arm: AblationArm) -> None:
    """Build the core loss of ``arm`` once; raise a ValueError naming the arm and the setting when a
    setting is unknown or refused."""
    known = _accepted_settings(arm.loss)
    unknown = sorted(set(arm.settings) - known)
    if unknown:
        raise ValueError(f"ablation arm `{arm.name}` ({arm.loss}): unknown setting(s) "
                         f"{', '.join(f'`{k}`' for k in unknown)}; expected keyword arguments of the core "
                         f"loss: {', '.join(sorted(known))}")
    cls = RandomCNNPerceptualLoss if arm.loss == "random_cnn" else PatchMMDLoss
    try:
        cls(**arm.resolved)
    except (TypeError, ValueError) as err:
        raise ValueError(f"ablation arm `{arm.name}` ({arm.loss}) with {arm.describe()}: {err}") from None


def reference_arm(task: str, loss: str) -> AblationArm:
    """The loss's current default for ``task``."""
    return AblationArm(LOSSES[loss], loss, {}, task_defaults(TASK_SETTINGS_KEY[task], loss))


def arms_of(task: str, loss: str, ablations: Optional[Dict] = None) -> List[AblationArm]:
    """The reference arm of ``loss`` and its variants for ``task``, each resolved over the task's
    defaults and checked by building its core loss."""
    if task not in TASK_SETTINGS_KEY:
        raise ValueError(f"`task` must be one of {tuple(TASK_SETTINGS_KEY)}, got {task!r}")
    if loss not in LOSSES:
        raise ValueError(f"`loss` must be one of {tuple(LOSSES)}, got {loss!r}")
    table = ABLATIONS if ablations is None else ablations
    reference = reference_arm(task, loss)
    arms = [reference]
    for name, settings in table.get(task, {}).get(loss, {}).items():
        if not _NAME.match(name) or name == reference.name:
            raise ValueError(f"ablation arm name {name!r}: expected letters, digits, '_' or '-' (it names "
                             f"a config file and a work dir), other than the reference arm "
                             f"{reference.name!r}")
        if not isinstance(settings, dict) or not settings:
            raise ValueError(f"ablation arm `{name}` ({loss}): settings must be a non-empty dict of "
                             f"overrides, got {settings!r}")
        arms.append(AblationArm(name, loss, dict(settings), {**reference.resolved, **settings}))
    for arm in arms:
        check_settings(arm)
    return arms


def select_arms(task: str, losses: Sequence[str], names: Optional[Sequence[str]] = None,
                quick: bool = False, ablations: Optional[Dict] = None) -> Dict[str, List[AblationArm]]:
    """``{loss: [reference, variants...]}`` for ``losses``: every variant, those named in ``names``, or
    with ``quick`` only the first variant of the first loss. Each loss keeps its reference arm."""
    chosen = {loss: arms_of(task, loss, ablations) for loss in losses}
    if names:
        known = {arm.name for arms in chosen.values() for arm in arms}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(f"`--arms` names {unknown}, which are not arms of {task} for "
                             f"{', '.join(losses)}; expected some of {sorted(known)}")
        chosen = {loss: [arms[0]] + [a for a in arms[1:] if a.name in names] for loss, arms in chosen.items()}
        chosen = {loss: arms for loss, arms in chosen.items() if len(arms) > 1 or arms[0].name in names}
    if quick:
        first = next(iter(chosen))
        chosen = {first: chosen[first][:2]}
    return chosen
