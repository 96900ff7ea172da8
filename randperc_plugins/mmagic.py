"""MMagic adapter: the core losses in mmagic's loss API, registered in ``mmagic.registry.MODELS``.

Importing this module registers six classes. Configs name them by full dotted path
(``type='randperc_plugins.mmagic.AddPatchMMDLoss'``): mmengine imports the module on build, so no
``custom_imports`` is needed.

* :class:`RandomCNNPerceptualLoss` and :class:`PatchMMDLoss`: mmagic's pixel-loss contract,
  ``forward(pred, target, weight=None)`` on RGB in ``[0, 1]`` with ``loss_weight``, ``reduction`` and
  ``sample_wise`` (as mmagic's ``L1Loss``), returning one tensor.
* :class:`AddRandomCNNPerceptualLoss` and :class:`AddPatchMMDLoss`: the one-line form for an editor's
  ``pixel_loss``. mmagic's SR editors (every ``BaseEditModel``: EDSR, MSRResNet, RDN, SRCNN, SwinIR,
  ...) call only ``self.pixel_loss(pred, gt)`` and expect one tensor, so the added term is summed into
  the pixel loss. Written over a baseline's ``pixel_loss`` dict, mmengine merges the baseline's keys
  (``loss_weight``, ``reduction``, ...) into it; these keys go to the baseline loss (``base_type``,
  ``L1Loss`` by default), the perceptual term is configured by ``perceptual=dict(...)``. Each term is
  published to mmengine's message hub under its own name (``loss_pix`` and ``loss_gpl`` /
  ``loss_patch_mmd``, see :mod:`randperc_plugins.openmmlab`), so the training log shows both.
* :class:`GANRandomCNNPerceptualLoss` and :class:`GANPatchMMDLoss`: for the ``perceptual_loss`` slot
  of mmagic's GAN editors (SRGAN, ESRGAN), which unpack ``(percep, style)``: they return
  ``(loss, None)``, so mmagic logs the term as ``loss_perceptual`` and adds no style term.

Example (one line in a config that inherits an mmagic SR baseline)::

    _base_ = 'mmagic::edsr/edsr_x4c64b16_1xb16-300k_div2k.py'
    model = dict(pixel_loss=dict(type='randperc_plugins.mmagic.AddRandomCNNPerceptualLoss'))

and in a GAN config (mmagic's VGG loss replaced, so its VGG keys are deleted)::

    model = dict(perceptual_loss=dict(_delete_=True, type='randperc_plugins.mmagic.GANPatchMMDLoss'))

Range check: the first call of each loss reads the minimum and maximum of ``pred`` and ``target`` and
whether they are finite (one host synchronisation, at the first iteration only) and warns once if a
value lies far outside ``[0, 1]`` (a model or preprocessor working in ``[0, 255]`` or ``[-1, 1]``): the
defaults and the calibrated weights assume ``[0, 1]``. Doing it at every call would stall a GPU at every
step; ``validate_args=True`` checks at every call and raises (for debugging; docs/losses.md, "What is checked,
and when").
"""
from __future__ import annotations

import warnings
from typing import Optional, Tuple

import torch
from mmagic.registry import MODELS
from torch import Tensor, nn

from ._adapter import PerceptualTerm, check_loss_name
from .losses.tasks import restoration_inputs
from .losses.utils import UNIT_RANGE_TOLERANCE, check_bool
from .openmmlab import build_baseline_loss, build_perceptual_term, log_loss_term

__all__ = ["RandomCNNPerceptualLoss", "PatchMMDLoss", "AddRandomCNNPerceptualLoss", "AddPatchMMDLoss",
           "GANRandomCNNPerceptualLoss", "GANPatchMMDLoss"]

#: Values outside this interval mean the images are not in [0, 1] (the task layer's bound).
RANGE_TOLERANCE = UNIT_RANGE_TOLERANCE


def _pixel_mask(weight: Optional[Tensor], pred: Tensor) -> Optional[Tensor]:
    """mmagic's element-wise ``weight`` ``(N, C, H, W)`` or ``(N, 1, H, W)`` as a per-pixel mask."""
    if weight is None:
        return None
    if not isinstance(weight, Tensor):
        raise TypeError(f"`weight` must be a torch.Tensor or None, got {type(weight).__name__}")
    if weight.dim() == 4 and weight.shape[1] == pred.shape[1] and weight.shape[1] > 1:
        # The perceptual losses compare whole pixels: a channel-wise weight becomes its channel mean.
        weight = weight.to(pred.dtype).mean(dim=1, keepdim=True)
    return weight


class _MMagicPerceptualLoss(PerceptualTerm):
    """mmagic's pixel-loss contract around one core loss, with the restoration defaults."""

    task = "restoration"

    def __init__(self, loss_weight: Optional[float] = None, reduction: str = "mean",
                 sample_wise: bool = False, loss_name: Optional[str] = None,
                 validate_args: bool = False, **core_settings) -> None:
        super().__init__(loss_weight=loss_weight, loss_name=loss_name, reduction=reduction,
                         validate_args=validate_args, **core_settings)
        self.sample_wise = check_bool(sample_wise, "sample_wise")
        self._checked = False

    def _check_values(self, pred: Tensor, target: Tensor) -> None:
        # One host read for both tensors: finiteness and range.
        stats = torch.stack([t.detach().float().aminmax()[i] for t in (pred, target) for i in (0, 1)]
                            + [torch.isfinite(pred).all().float(), torch.isfinite(target).all().float()])
        p_min, p_max, t_min, t_max, p_finite, t_finite = stats.tolist()
        for name, finite in (("pred", p_finite), ("target", t_finite)):
            if not finite:
                raise ValueError(f"`{name}` must be finite, but it holds NaN or Inf")
        low, high = RANGE_TOLERANCE
        outside = [f"`{name}` in [{lo:.4g}, {hi:.4g}]" for name, lo, hi in
                   (("pred", p_min, p_max), ("target", t_min, t_max)) if lo < low or hi > high]
        if outside:
            warnings.warn(f"{type(self).__name__} expects RGB images in [0, 1], got "
                          f"{' and '.join(outside)}: its defaults and loss_weight assume [0, 1] (check the "
                          f"data preprocessor's mean and std). This is checked once.", stacklevel=3)

    def forward(self, pred: Tensor, target: Tensor, weight: Optional[Tensor] = None,
                **kwargs) -> Tensor:
        """Loss of ``pred`` against ``target``, both ``(N, C, H, W)`` in ``[0, 1]``, or ``(N, T, C, H,
        W)`` videos (each frame compared as an image).

        ``weight`` is mmagic's optional element-wise weight ``(N, C, H, W)`` or ``(N, 1, H, W)`` (a
        channel-wise weight is averaged over channels: the losses compare whole pixels); 0 leaves a
        pixel out. Returns a scalar, or ``(N,)`` with ``reduction='none'``.
        """
        frames = 1
        if pred.dim() == 5:  # video editors (BasicVSR, ...): (N, T, C, H, W), frames as samples
            frames = pred.shape[1]
            pred, target = pred.flatten(0, 1), target.flatten(0, 1)
            weight = None if weight is None or weight.dim() != 5 else weight.flatten(0, 1)
        # no value check here on the training path (each is a host read); the range once, below
        pred, target = restoration_inputs(pred, target, validate_args=self.validate_args)
        if not self.validate_args and not self._checked:  # with validate_args: checked just above
            self._check_values(pred, target)
            self._checked = True
        mask = _pixel_mask(weight, pred)
        per_sample = self.core(pred, target, weight=mask)
        if self.reduction == "none":
            loss = per_sample.view(-1, frames).mean(1)  # per sample (a video: its frames' mean)
        elif self.reduction == "sum":
            loss = per_sample.sum()
        elif mask is None or self.sample_wise:
            loss = per_sample.mean()
        else:
            # Like mmagic's masked mean without sample_wise: samples count by their weighted area.
            area = mask.to(per_sample.dtype).flatten(1).sum(1)
            loss = (per_sample * area).sum() / area.sum().clamp_min(1e-12)
        return self.loss_weight * loss


@MODELS.register_module()
class RandomCNNPerceptualLoss(_MMagicPerceptualLoss):
    """Generic Perceptual Loss (a frozen random CNN) as an mmagic pixel loss, logged as ``loss_gpl``.

    Keyword arguments other than ``loss_weight``, ``reduction``, ``sample_wise``, ``loss_name`` and
    ``validate_args`` configure the core :class:`randperc_plugins.losses.RandomCNNPerceptualLoss`
    (network, layers, ``max_size``, ``seed``); the restoration defaults are
    ``task_defaults('restoration', 'random_cnn')``, ``loss_weight`` included (calibrated there).

    Example:
        >>> loss = RandomCNNPerceptualLoss()
        >>> pred = torch.rand(2, 3, 32, 32, requires_grad=True)
        >>> loss(pred, torch.rand(2, 3, 32, 32)).backward()
        >>> pred.grad.shape, len(loss.state_dict())
        (torch.Size([2, 3, 32, 32]), 0)
    """

    core_loss = "random_cnn"
    default_loss_name = "loss_gpl"


@MODELS.register_module()
class PatchMMDLoss(_MMagicPerceptualLoss):
    """Patch-MMD (Amir & Weiss) as an mmagic pixel loss, logged as ``loss_patch_mmd``.

    Keyword arguments other than ``loss_weight``, ``reduction``, ``sample_wise``, ``loss_name`` and
    ``validate_args`` configure the core :class:`randperc_plugins.losses.PatchMMDLoss`; the restoration
    defaults are ``task_defaults('restoration', 'patch_mmd')``.

    Example:
        >>> loss = PatchMMDLoss(reduction='none')
        >>> loss(torch.rand(2, 3, 24, 24), torch.rand(2, 3, 24, 24)).shape
        torch.Size([2])
    """

    core_loss = "patch_mmd"
    default_loss_name = "loss_patch_mmd"


class _AddToPixelLoss(nn.Module):
    """``baseline pixel loss + perceptual loss`` built from one dict, so that a config merges into it.

    Neither child holds a parameter or a persistent buffer, so checkpoints keep the baseline's keys.
    """

    perceptual_cls: type = nn.Module

    def __init__(self, base_type: str = "L1Loss", perceptual: Optional[dict] = None,
                 base_loss_name: str = "loss_pix", **base_kwargs) -> None:
        super().__init__()
        if "base_name" in base_kwargs:  # the spelling of release 0.2
            warnings.warn("`base_name` is deprecated: write `base_loss_name` (as in the mmdet adapter)",
                          DeprecationWarning, stacklevel=2)
            base_loss_name = base_kwargs.pop("base_name")
        self.base_loss_name = check_loss_name(base_loss_name)
        self.base = build_baseline_loss(MODELS, base_type, base_kwargs, "pixel loss")
        self.perceptual = build_perceptual_term(self.perceptual_cls, perceptual, self.base_loss_name,
                                                "pixel_loss")

    def forward(self, pred: Tensor, target: Tensor, weight: Optional[Tensor] = None,
                **kwargs) -> Tensor:
        """The sum of both terms (scalars), each also logged under its own name."""
        base = self.base(pred, target, weight, **kwargs)
        term = self.perceptual(pred, target, weight)
        if base.dim() != 0 or term.dim() != 0:
            raise ValueError(f"`reduction` must be 'mean' or 'sum' in both losses of {type(self).__name__} "
                             f"(their sum is the editor's one loss), got shapes {tuple(base.shape)} and "
                             f"{tuple(term.shape)}")
        log_loss_term(self.base_loss_name, base)
        log_loss_term(self.perceptual.loss_name, term)
        return base + term


@MODELS.register_module()
class AddRandomCNNPerceptualLoss(_AddToPixelLoss):
    """The baseline pixel loss plus :class:`RandomCNNPerceptualLoss` (``perceptual=dict(...)``).

    Example:
        >>> loss = AddRandomCNNPerceptualLoss(loss_weight=1.0, reduction='mean')  # the baseline's L1Loss
        >>> float(loss(torch.ones(1, 3, 16, 16), torch.ones(1, 3, 16, 16)))
        0.0
    """

    perceptual_cls = RandomCNNPerceptualLoss


@MODELS.register_module()
class AddPatchMMDLoss(_AddToPixelLoss):
    """The baseline pixel loss plus :class:`PatchMMDLoss` (``perceptual=dict(...)``)."""

    perceptual_cls = PatchMMDLoss


class _PerceptualStylePair:
    """Return ``(loss, None)``: the ``(percep, style)`` pair of mmagic's GAN editors' ``perceptual_loss``."""

    def forward(self, pred: Tensor, target: Tensor, weight: Optional[Tensor] = None,
                **kwargs) -> Tuple[Tensor, None]:
        return super().forward(pred, target, weight), None  # type: ignore[misc]


@MODELS.register_module()
class GANRandomCNNPerceptualLoss(_PerceptualStylePair, RandomCNNPerceptualLoss):
    """:class:`RandomCNNPerceptualLoss` for SRGAN/ESRGAN's ``perceptual_loss``: returns ``(loss, None)``."""


@MODELS.register_module()
class GANPatchMMDLoss(_PerceptualStylePair, PatchMMDLoss):
    """:class:`PatchMMDLoss` for SRGAN/ESRGAN's ``perceptual_loss``: returns ``(loss, None)``."""
