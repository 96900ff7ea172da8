"""Patch sets of Patch-MMD: the patches of an image, their validity under a pixel mask, the image
pyramid, the ``max_size`` resize and the ``max_patches`` subsets. Imports torch only."""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ._utils import area_resize, reduced_size

__all__ = ["extract_patches"]


def extract_patches(x: Tensor, patch_size: int, stride: int = 1,
                    mask: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """All ``patch_size x patch_size`` patches of ``x`` at ``stride``, flattened, and their validity.

    Args:
        x: images ``(N, C, H, W)``.
        patch_size: side ``k`` of the square patches.
        stride: step between patches.
        mask: optional pixel weights ``(N, 1, H, W)``; a patch that touches a pixel of weight 0 is
            not valid.

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
        masked = (mask.detach() == 0).to(patches.dtype)
        touched = F.max_pool2d(masked, kernel_size=patch_size, stride=stride)
        valid = (1.0 - touched).reshape(n, -1)
    return patches, valid


def _downsample(x: Tensor, mask: Optional[Tensor]) -> Tuple[Tensor, Optional[Tensor]]:
    """One pyramid step: 2x2 average pooling; a coarse pixel is valid only if its 4 pixels are."""
    x = F.avg_pool2d(x, 2)
    if mask is not None:
        mask = 1.0 - F.max_pool2d((mask == 0).to(x.dtype), 2)
    return x, mask


def _subset_indices(length: int, max_patches: Optional[int], generator: torch.Generator,
                    device: torch.device) -> Optional[Tensor]:
    if max_patches is None or length <= max_patches:
        return None
    return torch.randperm(length, generator=generator)[:max_patches].to(device)


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
