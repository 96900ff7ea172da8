"""What every framework adapter shares: one perceptual term built from a task's defaults, its weight,
its reduction, its validation switch and the name it is logged under.

An adapter module (``mmseg.py``, ``mmagic.py``, ``mmdet.py``, ``detectron2.py``) holds only its
framework's call signature and registry; it translates the call into a task
(:mod:`randperc_plugins.losses.tasks`), runs the core loss built here, and reduces with
:func:`reduce_per_sample_loss`. Imports torch and the core only (no framework).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, Optional

import torch
from torch import Tensor, nn

from .losses import build_core_loss
from .losses.tasks import task_defaults
from .losses.utils import check_loss_weight, check_reduction, check_validate_args, reduce_per_sample

__all__ = ["TermSettings", "term_settings", "PerceptualTerm", "reduce_per_sample_loss",
           "check_loss_name", "check_distinct_loss_names", "check_perceptual"]


def check_loss_name(loss_name) -> str:
    """Return ``loss_name`` if it is a string containing ``'loss'``; raise ``ValueError`` otherwise.

    mmengine's ``parse_losses`` back-propagates only the entries whose key contains ``'loss'`` (any
    other name would be logged and silently never trained), and detectron2's trainers log every entry.
    """
    if not isinstance(loss_name, str) or "loss" not in loss_name:
        raise ValueError(f"`loss_name` must contain 'loss' (OpenMMLab back-propagates only such terms), "
                         f"got {loss_name!r}")
    return loss_name


def check_distinct_loss_names(term_name: str, taken: Iterable[Optional[str]], owner: str) -> str:
    """``term_name`` if it differs from every name in ``taken`` (the baseline's logged losses): a term
    logged under the baseline's name would be merged into the baseline's entry.

    Raises:
        ValueError: naming the clash and what to write instead.
    """
    taken = tuple(t for t in taken if t)
    if term_name in taken:
        raise ValueError(f"`perceptual['loss_name']`={term_name!r} is the baseline loss's own name in "
                         f"{owner} ({', '.join(map(repr, taken))}): the two terms would be logged, and "
                         f"summed, as one; choose another name containing 'loss', e.g. "
                         f"perceptual=dict(loss_name='{term_name}_perceptual')")
    return term_name


def check_perceptual(perceptual, owner: str, config_key: Optional[str] = None) -> dict:
    """The ``perceptual`` argument of an adapter: a dict of the term's settings (or None, for the
    defaults), returned as a new dict; ``config_key`` is the config key the adapter sits in (for the
    message).

    Raises:
        TypeError: if it is anything else (e.g. the string ``'patch_size=3'``), saying what to write.
    """
    if perceptual is None:
        return {}
    if not isinstance(perceptual, dict):
        example = (f"{config_key}=dict(type=..., perceptual=dict(loss_weight=0.5))" if config_key
                   else "perceptual=dict(patch_size=3, loss_weight=0.5)")
        raise TypeError(f"`perceptual` must be a dict of the perceptual term's settings, e.g. {example} "
                        f"(in {owner}); got {type(perceptual).__name__} {perceptual!r}")
    return dict(perceptual)


@dataclass(frozen=True)
class TermSettings:
    """A perceptual term's settings, split into the adapter's and the core loss's."""

    loss_weight: float
    loss_name: str
    reduction: str
    validate_args: bool
    core: Dict[str, object]  #: keyword arguments of the core loss (``reduction='none'`` included)


def term_settings(task: str, core_loss: str, settings: dict, default_loss_name: str,
                  weight_name: str = "loss_weight") -> TermSettings:
    """Split ``settings`` (a user's, over ``task_defaults(task, core_loss)``) into the adapter's part
    (weight, name, reduction, validation; ``None`` or absent means the default) and the core loss's.

    The core always returns per-sample values (``reduction='none'``): the adapter reduces them the way
    its framework does. ``validate_args`` is off unless asked for: its value checks read tensors on
    the host, which would stall a GPU at every training step.

    Example:
        >>> s = term_settings("instance_masks", "patch_mmd", {"patch_size": 3}, "loss_mask_patch_mmd")
        >>> s.loss_name, s.core["patch_size"], s.core["reduction"]
        ('loss_mask_patch_mmd', 3, 'none')
    """
    defaults = task_defaults(task, core_loss)
    settings = {k: v for k, v in settings.items() if v is not None or k not in
                ("loss_weight", "loss_name", "reduction", "validate_args")}
    default_weight = defaults.pop("loss_weight", 1.0)
    loss_weight = settings.pop("loss_weight", default_weight)
    validate_args = check_validate_args(settings.pop("validate_args", False))
    return TermSettings(
        loss_weight=check_loss_weight(loss_weight, weight_name),
        loss_name=check_loss_name(settings.pop("loss_name", default_loss_name)),
        reduction=check_reduction(settings.pop("reduction", "mean")),
        validate_args=validate_args,
        core={**defaults, **settings, "reduction": "none", "validate_args": validate_args})


def reduce_per_sample_loss(per_sample: Tensor, reduction: str, weight: Optional[Tensor] = None,
                           avg_factor: Optional[float] = None) -> Tensor:
    """Reduce ``per_sample`` ``(N,)`` as OpenMMLab's ``weight_reduce_loss`` does: times ``weight``
    ``(N,)`` if given, then ``'none'``, ``'sum'``, or ``'mean'`` (the sum over ``avg_factor`` when it is
    given; an empty batch gives 0 with a gradient, not the NaN of an empty mean). No host read: the
    batch size is a shape."""
    if weight is not None:
        per_sample = per_sample * weight.to(per_sample.dtype)
    if reduction == "mean" and avg_factor is not None:
        # an avg_factor of 0 (no positive sample) gives 0, not Inf
        return per_sample.sum() / (avg_factor + torch.finfo(torch.float32).eps)
    return reduce_per_sample(per_sample, reduction)


class PerceptualTerm(nn.Module):
    """A framework's loss module around one core loss: the settings of :func:`term_settings`, the core
    in ``self.core`` (no parameter, no persistent buffer: checkpoints keep the baseline's keys).

    Subclasses set ``task`` and ``core_loss`` (keys of ``tasks.TASK_DEFAULTS``) and
    ``default_loss_name``, and write ``forward`` in their framework's signature.
    """

    task: str = ""
    core_loss: str = ""
    default_loss_name: str = "loss"

    def __init__(self, loss_weight: Optional[float] = None, loss_name: Optional[str] = None,
                 reduction: str = "mean", validate_args: bool = False, **core_settings) -> None:
        super().__init__()
        settings = term_settings(self.task, self.core_loss,
                                 dict(core_settings, loss_weight=loss_weight, loss_name=loss_name,
                                      reduction=reduction, validate_args=validate_args),
                                 self.default_loss_name)
        self.loss_weight = settings.loss_weight
        self.reduction = settings.reduction
        self.validate_args = settings.validate_args
        self._loss_name = settings.loss_name
        self.core = build_core_loss(self.core_loss, **settings.core)

    @property
    def loss_name(self) -> str:
        """The key under which the framework logs (and sums) this term."""
        return self._loss_name
