"""Patch sets of Patch-MMD: the patches of an image, their validity under a pixel mask, their
normalisation, the image pyramid, the padding of images smaller than a patch, the local windows, the
``max_size`` resize and the ``max_patches`` subsets. Imports torch only."""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .utils import area_resize, host_to_device, reduced_size

__all__ = ["extract_patches"]


def extract_patches(x: Tensor, patch_size: int, stride: int = 1,
                    mask: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """All ``patch_size x patch_size`` patches of ``x`` at ``stride``, flattened, and their validity.

    Args:
        x: images ``(N, C, H, W)``.
        patch_size: side ``k`` of the square patches.
        stride: step between patches.
        mask: optional pixel weights ``(N, 1, H, W)``; a patch that touches a pixel of weight 0 (or
            less) is not valid.

    Returns:
        ``(patches, valid)``: ``patches`` of shape ``(N, L, C * k * k)`` (channel-major, as
        :func:`torch.nn.functional.unfold`), differentiable w.r.t. ``x``, and ``valid`` of shape
        ``(N, L)`` holding 1.0 for a valid patch and 0.0 otherwise (no gradient), with
        ``L = ((H - k) // stride + 1) * ((W - k) // stride + 1)``.

    Raises:
        ValueError: if ``x`` is smaller than one patch.

    Example:
        >>> p, v = extract_patches(torch.rand(2, 3, 10, 12), patch_size=3, stride=2)
        >>> p.shape, v.shape
        (torch.Size([2, 20, 27]), torch.Size([2, 20]))
    """
    n, c, h, w = x.shape
    if h < patch_size or w < patch_size:
        raise ValueError(f"`x` of spatial size {h}x{w} is smaller than one patch "
                         f"(`patch_size`={patch_size})")
    patches = F.unfold(x, kernel_size=patch_size, stride=stride).transpose(1, 2)
    if mask is None:
        valid = patches.new_ones(patches.shape[:2]).detach()
    else:
        masked = (mask.detach() <= 0).to(patches.dtype)  # weight <= 0: ignored, as the random CNN
        touched = F.max_pool2d(masked, kernel_size=patch_size, stride=stride)
        valid = (1.0 - touched).flatten(1)  # (N, L), also for an empty batch
    return patches, valid


def _downsample(x: Tensor, mask: Optional[Tensor]) -> Tuple[Tensor, Optional[Tensor]]:
    """One pyramid step: 2x2 average pooling; a coarse pixel is valid only if its 4 pixels are.
    A side of 1 pixel is first replicate-padded to 2 (so it stays 1, not 0)."""
    x, mask = _pad_to_size(x, mask, 2)
    x = F.avg_pool2d(x, 2)
    if mask is not None:
        mask = 1.0 - F.max_pool2d((mask <= 0).to(x.dtype), 2)
    return x, mask


def _subset_indices(length: int, max_patches: Optional[int], generator: torch.Generator,
                    device: torch.device) -> Optional[Tensor]:
    if max_patches is None or length <= max_patches:
        return None
    return host_to_device(torch.randperm(length, generator=generator)[:max_patches], device)


def _shrink(x: Tensor, mask: Optional[Tensor], max_size: int) -> Tuple[Tensor, Optional[Tensor]]:
    """Area-resize ``x`` (and its mask) so that the longer side is at most ``max_size``."""
    size = reduced_size(x.shape[-2], x.shape[-1], max_size)
    if size == tuple(x.shape[-2:]):
        return x, mask
    if mask is not None:
        gate = (mask > 0).to(x.dtype)
        x = x * gate  # masked pixels enter no average, so they get exactly zero gradient
        mask = (area_resize(gate, size) > 1 - 1e-6).to(x.dtype)  # valid only if all its pixels are
    return area_resize(x, size), mask


def _pad_to_size(x: Tensor, mask: Optional[Tensor], size: int) -> Tuple[Tensor, Optional[Tensor]]:
    """Replicate-pad ``x`` (and its mask) at the bottom and right to at least ``size x size``; the
    input itself when it is that large. A padded pixel repeats the nearest edge pixel, its value and
    its validity, so an image smaller than one patch gives patches made of its own pixels (and the
    gradient of each padded pixel flows back to the edge pixel it copies)."""
    h, w = x.shape[-2:]
    if h >= size and w >= size:
        return x, mask
    pad = (0, max(0, size - w), 0, max(0, size - h))
    x = F.pad(x, pad, mode="replicate")
    if mask is not None:
        mask = F.pad(mask, pad, mode="replicate")
    return x, mask


def _window_starts(length: int, window: int, stride: int) -> List[int]:
    """Starts of the windows along a side of ``length`` pixels: every ``stride`` pixels while the
    window fits, and one more flush with the far edge when the last one stops short of it; one
    window at 0 when the side is not longer than the window."""
    if length <= window:
        return [0]
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] + window < length:
        starts.append(length - window)
    return starts


def _crop_windows(x: Tensor, mask: Optional[Tensor], window: int,
                  stride: int) -> Tuple[Tensor, Optional[Tensor], int]:
    """The local windows of ``x (N, C, H, W)`` as a batch ``(N * count, C, h, w)`` (sample-major),
    with ``h = min(window, H)``, ``w = min(window, W)`` (see :func:`_window_starts`), the same crops of
    the mask, and ``count``, the number of windows per sample. Differentiable w.r.t. ``x``; built from
    views (no index tensor, so nothing is copied from the host to a GPU)."""
    n, c, height, width = x.shape
    wh, ww = min(window, height), min(window, width)
    if (wh, ww) == (height, width):
        return x, mask, 1

    def crop(t: Tensor) -> Tensor:  # (N, C, H, W) -> (N * count, C, wh, ww)
        t = _windows_along(_windows_along(t, 2, wh, stride), 3, ww, stride)  # (N, C, Wy, Wx, wh, ww)
        return t.permute(0, 2, 3, 1, 4, 5).reshape(-1, t.shape[1], wh, ww)

    out = crop(x)
    return out, (None if mask is None else crop(mask)), out.shape[0] // n


def _windows_along(t: Tensor, dim: int, size: int, stride: int) -> Tensor:
    """``t.unfold(dim, size, stride)`` plus the window flush with the far edge where
    :func:`_window_starts` adds one."""
    length = t.shape[dim]
    out = t.unfold(dim, size, stride)
    if len(_window_starts(length, size, stride)) > out.shape[dim]:
        last = t.narrow(dim, length - size, size).unsqueeze(dim).movedim(dim + 1, -1)
        out = torch.cat([out, last], dim)
    return out


_NORMALIZATIONS = ("none", "mean", "channel_mean")


def _normalize_patches(patches: Tensor, channels: int, normalize: str) -> Tensor:
    """Subtract from each patch ``(N, L, C * k * k)`` (channel-major) its mean over all entries
    (``'mean'``) or, per channel, the mean of that channel's ``k x k`` values (``'channel_mean'``)."""
    if normalize == "none":
        return patches
    if normalize == "mean":
        return patches - patches.mean(-1, keepdim=True)
    per_channel = patches.unflatten(-1, (channels, -1))
    return (per_channel - per_channel.mean(-1, keepdim=True)).flatten(-2)


def _mean_over_windows(values: Tensor, a: Tensor, b: Tensor, count: int) -> Tensor:
    """Per sample, the mean of ``values (N * count,)`` over its windows where both sides keep a valid
    patch (``a``, ``b``: the patch weights ``(N * count, L)``); 0 for a sample without such a window
    (the values of empty windows are 0 with a zero gradient already)."""
    kept = ((a.detach().sum(1) > 0) & (b.detach().sum(1) > 0)).to(values.dtype).view(-1, count)
    return (values.view(-1, count) * kept).sum(1) / kept.sum(1).clamp_min(1.0)
