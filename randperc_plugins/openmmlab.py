"""What the OpenMMLab adapters (mmseg, mmagic, mmdet) share: logging an added loss term on its own.

MMagic's editors call ``self.pixel_loss(pred, gt)`` and mmdet's mask head ``self.loss_mask(...)``: each
expects one tensor back, so a perceptual term added there is summed into the baseline's term. So that
a user still sees what each term contributes, the composite losses publish each term to mmengine's
:class:`~mmengine.logging.MessageHub` under ``train/<name>``, the key under which mmengine's own
``RuntimeInfoHook`` publishes the losses a model returns; the runner's ``LogProcessor`` then smooths,
prints and writes them (``vis_data/scalars.json``) like any other loss.

Without a host synchronisation: ``MessageHub.update_scalar`` turns a tensor into a Python number with
``.item()``, which would stall the GPU in the middle of the step. A term on the CPU is published at
once (reading it costs nothing); a term on a GPU is copied to pinned host memory without blocking, with
a CUDA event recorded after the copy, and published by a later call once ``event.query()`` (which does
not block) says the copy is done: in practice at the next iteration, since the runner itself reads
every returned loss at the end of each iteration. Such a term is therefore logged one iteration late.

Imports mmengine: only the OpenMMLab adapters use this module.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from mmengine.logging import MessageHub
from torch import Tensor, nn

from ._adapter import check_distinct_loss_names, check_loss_name, check_perceptual

__all__ = ["log_loss_term", "flush_loss_terms", "check_loss_name", "build_baseline_loss", "build_perceptual_term"]

# (name, host copy, event that completes the copy): GPU terms waiting to be published
_pending: List[Tuple[str, Tensor, Optional["torch.cuda.Event"]]] = []


def build_baseline_loss(registry, base_type, base_kwargs: dict, what: str) -> nn.Module:
    """The baseline loss of a "baseline + perceptual" composite: ``registry.build(dict(type=base_type,
    **base_kwargs))``, with ``base_type`` checked (``what`` names the baseline in the message)."""
    if not isinstance(base_type, str):
        raise TypeError(f"`base_type` must be the registered name of the baseline {what}, "
                        f"got {type(base_type).__name__}")
    return registry.build(dict(type=base_type, **base_kwargs))


def build_perceptual_term(perceptual_cls: type, perceptual, base_loss_name: Optional[str],
                          config_key: str) -> nn.Module:
    """The perceptual term of a "baseline + perceptual" composite, from its ``perceptual`` settings;
    ``base_loss_name`` is the name the baseline's term is logged under, ``config_key`` the config key the
    composite sits in (for the message).

    Raises:
        TypeError: if ``perceptual`` is not a dict (``perceptual='patch_size=3'`` must be written
            ``perceptual=dict(patch_size=3)``).
        ValueError: if the term would be logged under the baseline's own name (its value would be
            merged into the baseline's log entry).
    """
    term = perceptual_cls(**check_perceptual(perceptual, perceptual_cls.__name__, config_key))
    check_distinct_loss_names(term.loss_name, (base_loss_name,), perceptual_cls.__name__)
    return term


def log_loss_term(name: str, value: Tensor) -> None:
    """Publish the scalar ``value`` as ``train/<name>`` in the current message hub, without a host sync.

    ``value`` is detached and reduced to its mean (as mmengine's ``parse_losses`` does). On a GPU the
    value appears at a later call (see the module docstring); :func:`flush_loss_terms` publishes every
    finished one now.
    """
    value = value.detach()
    value = value.mean() if value.numel() != 1 else value.reshape(())
    flush_loss_terms(wait=False)
    if value.device.type != "cuda":
        MessageHub.get_current_instance().update_scalar(f"train/{name}", value.float())
        return
    host = torch.empty((), dtype=torch.float32, pin_memory=True)
    host.copy_(value.float(), non_blocking=True)
    event = torch.cuda.Event()
    event.record()
    _pending.append((name, host, event))


def flush_loss_terms(wait: bool = True) -> int:
    """Publish the pending GPU terms whose copy has finished (all of them, waiting, with ``wait``).

    Returns the number published. Terms are published in the order they were logged; a term whose copy
    is unfinished keeps the ones after it pending too, so that a name's history stays in order.
    """
    hub = None
    published = 0
    while _pending:
        name, host, event = _pending[0]
        if event is not None and not event.query():
            if not wait:
                break
            event.synchronize()
        hub = hub or MessageHub.get_current_instance()
        hub.update_scalar(f"train/{name}", host)
        _pending.pop(0)
        published += 1
    return published
