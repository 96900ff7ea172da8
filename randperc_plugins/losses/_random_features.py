"""Random Fourier features of a sum of Gaussian kernels (Rahimi and Recht, NeurIPS 2007), drawn from
seeded CPU generators, and the MMD² of two patch sets from their feature means. Imports torch only."""
from __future__ import annotations

import functools
import math
from typing import Dict, List, NamedTuple, Sequence, Tuple

import torch
from torch import Tensor

from ._kernel_sums import _blocks, _combine
from ._utils import seeded_generator


def _orthogonal_gaussian(dim: int, count: int, generator: torch.Generator) -> Tensor:
    """``count`` columns, each marginally ``N(0, I_dim)``, orthogonal within blocks of ``dim``.

    Orthogonal random features (Yu et al., "Orthogonal Random Features", NeurIPS 2016): a Haar
    orthogonal matrix (QR of a Gaussian one, signs fixed) whose columns are rescaled by independent
    chi-distributed norms. Each column keeps the Gaussian distribution, so every feature stays unbiased,
    while the orthogonality lowers the variance of their average; measured here, about a sixth of the
    variance of i.i.d. frequencies for the wider default bandwidths.
    """
    blocks = []
    for _ in range(-(-count // dim)):
        g = torch.randn(dim, dim, generator=generator, dtype=torch.float64)
        q, r = torch.linalg.qr(g)
        diag = torch.diagonal(r)
        q = q * torch.where(diag < 0, -1.0, 1.0)  # signs fixed: Haar-distributed q
        norms = torch.randn(dim, dim, generator=generator, dtype=torch.float64).norm(dim=0)
        blocks.append(q * norms)
    return torch.cat(blocks, dim=1)[:, :count].to(torch.float32)


#: A bandwidth whose ratio to a wider one is an integer up to this shares that one's frequency
#: directions (see :func:`_frequency_groups`).
_MAX_HARMONIC = 16


class _Features(NamedTuple):
    """Random frequencies of a sum of Gaussian kernels, grouped by shared directions.

    ``W`` holds ``count`` base frequencies per group, ``(d, groups * count)``; ``terms`` gives, per
    bandwidth in the order of ``sigmas``, ``(group, multiple, scale)``: its frequencies are
    ``multiple`` times the group's, and its features ``scale * [cos, sin]``."""

    W: Tensor
    terms: Tuple[Tuple[int, int, float], ...]
    count: int


def _frequency_groups(sigmas: Sequence[float]) -> List[Tuple[float, List[Tuple[int, int]]]]:
    """Group bandwidths whose ratio to a wider one is an integer ``m <= _MAX_HARMONIC``.

    A frequency of bandwidth ``sigma / m`` is distributed as ``m`` times one of bandwidth
    ``sigma``, and ``cos(m t), sin(m t)`` follow from ``cos t, sin t`` by a few products, so such a
    group needs one product with the patches and one cos/sin for all its bandwidths (the default
    bandwidths are 1, 2, 4 and 10 times narrower than the widest: one group). Each bandwidth's
    estimate stays unbiased; measured on natural images, sharing the directions leaves the error
    per frequency about unchanged. Returns ``[(base_sigma, [(sigma_index, m), ...]), ...]``.
    """
    groups: List[Tuple[float, List[Tuple[int, int]]]] = []
    for i in sorted(range(len(sigmas)), key=lambda i: -sigmas[i]):
        for base, members in groups:
            ratio = base / sigmas[i]
            m = round(ratio)
            if 1 <= m <= _MAX_HARMONIC and abs(ratio - m) <= 1e-6 * ratio:
                members.append((i, m))
                break
        else:
            groups.append((sigmas[i], [(i, 1)]))
    return groups


def _draw_features(dim: int, num_features: int, sigmas: Tuple[float, ...], weights: Tuple[float, ...],
                   generator: torch.Generator, device: torch.device, dtype: torch.dtype) -> _Features:
    """``ceil(num_features / 2)`` frequencies per group of bandwidths (a cos and a sin feature each,
    so ``num_features`` features per bandwidth), drawn on the CPU from ``generator`` (so identical on
    every device and process)."""
    count = -(-num_features // 2)
    ws, terms = [], [None] * len(sigmas)
    for g, (base, members) in enumerate(_frequency_groups(sigmas)):
        ws.append(_orthogonal_gaussian(dim, count, generator) / base)
        for i, m in members:
            terms[i] = (g, m, math.sqrt(weights[i] / count))
    W = torch.cat(ws, dim=1).to(device=device, dtype=dtype)
    return _Features(W, tuple(terms), count)  # type: ignore[arg-type]


@functools.lru_cache(maxsize=16)
def _fixed_features(dim: int, num_features: int, sigmas, weights, seed: int, device: torch.device,
                    dtype: torch.dtype) -> _Features:
    """The features drawn from ``seed``, drawn once per set of arguments (and device)."""
    return _draw_features(dim, num_features, sigmas, weights, seeded_generator(seed), device, dtype)


def _harmonics(u: Tensor, multiples: Sequence[int]) -> List[Tuple[Tensor, Tensor]]:
    """``[(cos(m u), sin(m u)) for m in multiples]`` (``multiples`` ascending).

    Where ``m / 2`` is already there, the double-angle formulas give ``m`` in two elementwise passes;
    otherwise ``m u`` is formed and its cos and sin taken. Passes over these tensors, more than the
    products with ``d``, are what the random features cost on the CPU (measured), hence also the
    fused ``addcmul`` and the contiguous results (trigonometric functions writing into strided
    views ran 4x slower)."""
    done: Dict[int, Tuple[Tensor, Tensor]] = {}
    out = []
    for m in multiples:
        half = done.get(m // 2) if m % 2 == 0 else None
        if half is not None:
            pc, ps = half
            pair = (torch.addcmul(_scalar(-1.0, u), pc, pc, value=2.0),  # cos 2t = 2 cos^2 t - 1
                    torch.addcmul(_scalar(0.0, u), pc, ps, value=2.0))  # sin 2t = 2 sin t cos t
        else:
            t = u if m == 1 else u * m
            pair = (torch.cos(t), torch.sin(t))
        done[m] = pair
        out.append(pair)
    return out


def _scalar(value: float, like: Tensor) -> Tensor:
    return torch.tensor(value, dtype=like.dtype, device=like.device)


def _group_members(features: _Features) -> List[List[Tuple[int, int, float]]]:
    """Per group, its bandwidths as ``(sigma_index, multiple, scale)``, by ascending multiple."""
    groups: List[List[Tuple[int, int, float]]] = [[] for _ in range(features.W.shape[1] // features.count)]
    for i, (g, m, scale) in enumerate(features.terms):
        groups[g].append((i, m, scale))
    return [sorted(members, key=lambda t: t[1]) for members in groups]


class _FeatureMean(torch.autograd.Function):
    """``mu = sum_i a_i z(p_i)`` for ``P (N, L, d)`` and weights ``a (N, L)``, where ``z(p)`` holds, per
    bandwidth ``s``, ``scale_s * [cos(m_s p W_g), sin(m_s p W_g)]`` (``W_g`` its group's base
    frequencies); output ``(N, S * 2F)``. Patches are taken in chunks and the backward pass recomputes
    the features, so memory stays ``O(N L d + N S F + chunk S F)``. A cos/sin pair per frequency,
    rather than one cosine with a random phase, halves the products with ``d`` for the same number
    of features and makes ``|z(p)|^2 = sum_s w_s`` exactly, the kernel's diagonal."""

    @staticmethod
    def forward(ctx, P: Tensor, a: Tensor, features: _Features,  # type: ignore[override]
                chunk: int, weighted: bool) -> Tensor:
        W, F_ = features.W, features.count
        groups = _group_members(features)
        n = P.shape[0]
        with torch.autocast(P.device.type, enabled=False):
            mu = P.new_zeros((n, len(features.terms), 2, F_))
            for s, e in _blocks(P.shape[1], chunk):
                u = torch.matmul(P[:, s:e], W)
                w = a[:, s:e].unsqueeze(1)
                for g, members in enumerate(groups):
                    harm = _harmonics(u[..., g * F_:(g + 1) * F_], [m for _, m, _ in members])
                    for (i, _, _), (cm, sm) in zip(members, harm):
                        mu[:, i, 0] += torch.bmm(w, cm).squeeze(1)
                        mu[:, i, 1] += torch.bmm(w, sm).squeeze(1)
            for i, (_, _, scale) in enumerate(features.terms):
                mu[:, i].mul_(scale)
        ctx.save_for_backward(P, a)
        ctx.features, ctx.chunk, ctx.weighted = features, chunk, weighted
        return mu.flatten(1)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        P, a = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None
        features = ctx.features
        W, F_ = features.W, features.count
        groups = _group_members(features)
        n = P.shape[0]
        with torch.autocast(P.device.type, enabled=False):
            grad = grad.to(P.dtype).view(n, len(features.terms), 2, F_)
            # d/dt [cos(m t), sin(m t)] = m [-sin(m t), cos(m t)]
            g_cos = [(grad[:, i, 0] * (-m * scale)).unsqueeze(1) for i, (_, m, scale) in
                     enumerate(features.terms)]
            g_sin = [(grad[:, i, 1] * (m * scale)).unsqueeze(1) for i, (_, m, scale) in
                     enumerate(features.terms)]
            dP = torch.empty_like(P)
            for s, e in _blocks(P.shape[1], ctx.chunk):
                u = torch.matmul(P[:, s:e], W)
                for g, members in enumerate(groups):
                    ug = u[..., g * F_:(g + 1) * F_]
                    harm = _harmonics(ug, [m for _, m, _ in members])
                    dt = None  # d loss / d(p W_g), built in the first cos tensor
                    for (i, _, _), (cm, sm) in zip(members, harm):
                        dt = cm.mul_(g_sin[i]) if dt is None else dt.addcmul_(cm, g_sin[i])
                        dt.addcmul_(sm, g_cos[i])
                    if len(groups) == 1:
                        u = dt
                    else:
                        ug.copy_(dt)  # u is not needed any more: reuse it
                dP[:, s:e] = torch.matmul(u, W.t())
                if ctx.weighted:  # known from the call (a mask was given), not read from `a`
                    dP[:, s:e].mul_(a[:, s:e].unsqueeze(2))
        return dP, None, None, None, None


def _mmd_random_features(P: Tensor, Q: Tensor, a: Tensor, b: Tensor, features, estimator: str,
                         weights: Tuple[float, ...], weighted: bool, per_sigma: bool = False):
    """MMD² ``(N,)`` from random features; with ``per_sigma`` one ``(N,)`` per bandwidth instead
    (the features of each bandwidth are a block of the feature mean, so the split is free)."""
    # about 2^19 values per feature tensor of a chunk, so they stay in cache (fastest on the CPU)
    chunk = max(1, (1 << 19) // max(1, P.shape[0] * features.W.shape[1]))
    mp = _FeatureMean.apply(P, a.detach(), features, chunk, weighted)
    mq = _FeatureMean.apply(Q, b.detach(), features, chunk, weighted)
    mp, mq = mp.to(torch.float64), mq.to(torch.float64)
    a64, b64 = a.detach().to(torch.float64), b.detach().to(torch.float64)
    if not per_sigma:
        s_pp, s_qq, s_pq = mp.pow(2).sum(1), mq.pow(2).sum(1), (mp * mq).sum(1)
        w = float(sum(weights))
        return _combine(s_pp, s_qq, s_pq, a64, b64, estimator, w * a64.pow(2).sum(1),
                        w * b64.pow(2).sum(1)).to(P.dtype)
    n, count = mp.shape[0], len(weights)
    mp, mq = mp.view(n, count, -1), mq.view(n, count, -1)
    s_pp, s_qq, s_pq = mp.pow(2).sum(2), mq.pow(2).sum(2), (mp * mq).sum(2)
    return [_combine(s_pp[:, i], s_qq[:, i], s_pq[:, i], a64, b64, estimator, w * a64.pow(2).sum(1),
                     w * b64.pow(2).sum(1)).to(P.dtype)
            for i, w in enumerate(weights)]
