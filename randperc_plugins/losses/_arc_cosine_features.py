r"""Random features of the arc-cosine kernel (``kernel='random_cnn'``): a finite random ReLU network on
the patches, the very network whose infinite-width limit the kernel is. Imports torch only.

For a patch :math:`p \in \mathbb R^d`, :math:`z(p) = \mathrm{relu}(W_L^\top \cdots
\mathrm{relu}(W_1^\top p)) / \sqrt{F}` with :math:`W_1 \in \mathbb R^{d \times F}`, :math:`W_l \in
\mathbb R^{F \times F}`, entries :math:`\mathcal N(0, 2/\mathrm{fan\_in})` (Kaiming), no bias: on the
patches of an image at stride 1 this is the 3x3 (or ``k x k``) convolution followed by 1x1
convolutions, and the mean of :math:`z` over the patches is the network's global average pooling.
:math:`z(p) \cdot z(q) \to K(p, q)` as ``F`` grows (:class:`~._patch_kernels.ArcCosineKernel`), with
:math:`E\,|z(p)|^2 = |p|^2/d` exactly at every width; the error of :math:`z(p) \cdot z(q)` falls as
:math:`1/\sqrt F` (plus an :math:`O(1/F)` bias for ``depth > 1``).
"""
from __future__ import annotations

import functools
import math
from typing import Optional, Tuple

import torch
from torch import Tensor

from ._kernel_sums import _blocks, _combine
from ._random_features import feature_chunk
from .utils import host_to_device, no_autocast, seeded_generator


def _draw_cnn_weights(dim: int, width: int, depth: int, generator: torch.Generator,
                      device: torch.device, dtype: torch.dtype) -> Tuple[Tensor, ...]:
    """``depth`` matrices, ``(dim, width)`` then ``(width, width)``, entries ``N(0, 2 / fan_in)``,
    drawn on the CPU from ``generator`` (so identical on every device and process)."""
    layers = []
    fan_in = dim
    for _ in range(depth):
        w = torch.randn(fan_in, width, generator=generator, dtype=torch.float64)
        layers.append(host_to_device(w.mul_(math.sqrt(2.0 / fan_in)).to(dtype), device))
        fan_in = width
    return tuple(layers)


@functools.lru_cache(maxsize=8)
def _fixed_cnn_weights(dim: int, width: int, depth: int, seed: int, device: torch.device,
                       dtype: torch.dtype) -> Tuple[Tensor, ...]:
    """The weights drawn from ``seed``, drawn once per set of arguments (and device)."""
    return _draw_cnn_weights(dim, width, depth, seeded_generator(seed), device, dtype)


def _activations(x: Tensor, layers: Tuple[Tensor, ...]):
    out = []
    for w in layers:
        x = torch.relu(torch.matmul(x, w))
        out.append(x)
    return out


class _CNNFeatureMean(torch.autograd.Function):
    """``mu = sum_i a_i z(p_i) * sqrt(F)`` for ``P (N, L, d)`` and weights ``a (N, L)``; output
    ``(N, F)``. Patches are taken in chunks and the backward pass recomputes each chunk's
    activations, so memory stays ``O(N L d + N chunk F depth)``."""

    @staticmethod
    def forward(ctx, P: Tensor, a: Tensor, layers: Tuple[Tensor, ...],  # type: ignore[override]
                chunk: int, weighted: bool) -> Tensor:
        with no_autocast(P.device):
            mu = P.new_zeros((P.shape[0], layers[-1].shape[1]))
            for s, e in _blocks(P.shape[1], chunk):
                z = _activations(P[:, s:e], layers)[-1]
                mu += torch.bmm(a[:, s:e].unsqueeze(1), z).squeeze(1)
        ctx.save_for_backward(P, a)
        ctx.layers, ctx.chunk, ctx.weighted = layers, chunk, weighted
        return mu

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        P, a = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None
        layers = ctx.layers
        with no_autocast(P.device):
            grad = grad.to(P.dtype).unsqueeze(1)
            dP = torch.empty_like(P)
            for s, e in _blocks(P.shape[1], ctx.chunk):
                acts = _activations(P[:, s:e], layers)
                g = None
                for w, h in zip(reversed(layers), reversed(acts)):
                    g = (grad if g is None else g).expand_as(h) * (h > 0)  # relu' (0 at 0)
                    g = torch.matmul(g, w.t())
                dP[:, s:e] = g
                if ctx.weighted:  # known from the call (a mask was given), not read from `a`
                    dP[:, s:e].mul_(a[:, s:e].unsqueeze(2))
        return dP, None, None, None, None


def _mmd_random_cnn(P: Tensor, Q: Tensor, a: Tensor, b: Tensor, layers: Tuple[Tensor, ...],
                    estimator: str, weighted: bool, kernel) -> Tensor:
    """MMD² ``(N,)`` from the features of the random network ``layers``; the unbiased estimator
    leaves out the kernel's exact diagonal (``kernel.diagonal_sums``, :math:`|p|^2/d`), the
    expectation of :math:`|z(p)|^2` over the draw, so it stays unbiased over the draw."""
    width = layers[-1].shape[1]
    # as many values per activation tensor of a chunk as for the Fourier features
    chunk = feature_chunk(P.shape[0], width, P.device)
    mp = _CNNFeatureMean.apply(P, a.detach(), layers, chunk, weighted).to(torch.float64)
    mq = _CNNFeatureMean.apply(Q, b.detach(), layers, chunk, weighted).to(torch.float64)
    a64, b64 = a.detach().to(torch.float64), b.detach().to(torch.float64)
    s_pp, s_qq, s_pq = mp.pow(2).sum(1), mq.pow(2).sum(1), (mp * mq).sum(1)
    diag_p: Optional[Tensor] = None
    diag_q: Optional[Tensor] = None
    if estimator == "unbiased":
        diag_p, diag_q = kernel.diagonal_sums(P, a64), kernel.diagonal_sums(Q, b64)
    out = _combine(s_pp / width, s_qq / width, s_pq / width, a64, b64, estimator, diag_p, diag_q)
    return out.to(P.dtype)
