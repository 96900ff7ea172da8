"""Random Fourier features of a sum of Gaussian kernels (Rahimi and Recht, NeurIPS 2007), drawn from
seeded CPU generators, and the MMD² of two patch sets from their feature means. Imports torch only."""
from __future__ import annotations

import math
from typing import Dict, List, NamedTuple, Sequence, Tuple

import torch
from torch import Tensor

from ._kernel_sums import _blocks, _combine
from .utils import host_to_device, no_autocast, seeded_generator


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

    ``W`` holds ``count`` base frequencies per group, ``(d, groups * count)``; bandwidth ``s`` (in the
    order of ``sigmas``) takes its group's frequencies times ``multiples[s]``, and its features are
    ``scales[s] * [cos, sin]``. ``group_index`` ``(S,)``, ``multiples`` ``(S, 1)`` and ``scales``
    ``(S, 1)`` are device tensors, made once with the features (nothing is copied from the host in a
    call, and each is one broadcast product rather than a kernel per bandwidth); ``groups`` is the
    number of groups."""

    W: Tensor
    group_index: Tensor
    multiples: Tensor
    scales: Tensor
    count: int
    groups: int


def _frequency_groups(sigmas: Sequence[float]) -> List[Tuple[float, List[Tuple[int, int]]]]:
    """Group bandwidths whose ratio to a wider one is an integer ``m <= _MAX_HARMONIC``.

    A frequency of bandwidth ``sigma / m`` is distributed as ``m`` times one of bandwidth
    ``sigma``, so such a group needs one product with the patches for all its bandwidths (the
    default bandwidths are 1, 2, 4 and 10 times narrower than the widest: one group); the harmonics
    ``m t`` are then one elementwise product. Each bandwidth's estimate stays unbiased; measured on
    natural images, sharing the directions leaves the error per frequency about unchanged. Returns
    ``[(base_sigma, [(sigma_index, m), ...]), ...]``.
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
    every device and process) and moved to ``device`` once."""
    count = -(-num_features // 2)
    ws = []
    group_index, multiples = [0] * len(sigmas), [1.0] * len(sigmas)
    for g, (base, members) in enumerate(_frequency_groups(sigmas)):
        ws.append(_orthogonal_gaussian(dim, count, generator) / base)
        for i, m in members:
            group_index[i], multiples[i] = g, float(m)
    W = host_to_device(torch.cat(ws, dim=1).to(dtype), device)
    index = host_to_device(torch.tensor(group_index, dtype=torch.long), device)
    mult = host_to_device(torch.tensor(multiples, dtype=dtype).unsqueeze(1), device)
    scales = host_to_device(torch.tensor([math.sqrt(w / count) for w in weights], dtype=dtype).unsqueeze(1),
                        device)
    return _Features(W, index, mult, scales, count, len(ws))


#: ``(dim, num_features, sigmas, weights, seed, device, dtype)`` -> the features drawn from ``seed``
#: (a plain dict, not ``functools.lru_cache``: ``torch.compile`` traces a lookup in it, so a
#: compiled loss runs in one graph once the features exist).
_FIXED_FEATURES: Dict[tuple, _Features] = {}


def _fixed_features(dim: int, num_features: int, sigmas, weights, seed: int, device: torch.device,
                    dtype: torch.dtype) -> _Features:
    """The features drawn from ``seed``, drawn once per set of arguments (and device)."""
    key = (dim, num_features, sigmas, weights, seed, device, dtype)
    found = _FIXED_FEATURES.get(key)
    if found is None:
        found = _draw_fixed_features(key)
    return found


@torch.compiler.disable
def _draw_fixed_features(key: tuple) -> _Features:
    dim, num_features, sigmas, weights, seed, device, dtype = key
    if len(_FIXED_FEATURES) >= 16:  # a bounded cache, as the lru_cache it replaces
        _FIXED_FEATURES.pop(next(iter(_FIXED_FEATURES)))
    found = _draw_features(dim, num_features, sigmas, weights, seeded_generator(seed), device, dtype)
    _FIXED_FEATURES[key] = found
    return found


def _phases(P: Tensor, features: _Features) -> Tensor:
    """``(N, L, S, F)``: every bandwidth's ``m_s (p W_g)`` from one product of the patches with the
    base frequencies of all groups (the harmonics are one broadcast product)."""
    u = torch.matmul(P, features.W)  # (N, L, G F)
    if features.groups == 1:
        return u.unsqueeze(2) * features.multiples  # (N, L, 1, F) x (S, 1)
    u = u.unflatten(-1, (features.groups, features.count))
    return u.index_select(2, features.group_index) * features.multiples


def feature_chunk(rows: int, width: int, device: torch.device) -> int:
    """Patches per chunk of a feature computation with ``rows`` patch sets and ``width`` values per
    patch. On the CPU about 2^19 values per tensor, so that they stay in cache (the fastest there,
    measured); elsewhere about 2^26 (256 MB in float32 per tensor): a few large kernels rather than
    many small launches."""
    budget = (1 << 19) if torch.device(device).type == "cpu" else (1 << 26)
    return max(1, budget // max(1, rows * width))


def _feature_mean(X: Tensor, a: Tensor, features: _Features, chunk: int) -> Tensor:
    """``sum_i a_i z(x_i)`` ``(N, S * 2F)`` of ``X (N, L, d)`` (see :class:`_FeatureMeans`)."""
    n, sigmas, count = X.shape[0], features.scales.shape[0], features.count
    mu = None
    for s, e in _blocks(X.shape[1], chunk):
        t = _phases(X[:, s:e], features).flatten(2)  # (N, l, S F)
        w = a[:, s:e].unsqueeze(1)
        part = torch.cat((torch.bmm(w, torch.cos(t)), torch.bmm(w, torch.sin(t))), 1)
        mu = part if mu is None else mu.add_(part)
    # (N, 2, S, F) -> (N, S, 2, F), scaled per bandwidth
    return (mu.view(n, 2, sigmas, count).transpose(1, 2) * features.scales.unsqueeze(1)).flatten(1)


def _feature_mean_grad(X: Tensor, a: Tensor, grad: Tensor, features: _Features, chunk: int,
                       weighted: bool) -> Tensor:
    """The gradient w.r.t. ``X`` of ``<grad, _feature_mean(X, a)>``, recomputing the features."""
    n, sigmas, count = X.shape[0], features.scales.shape[0], features.count
    # d/dt [cos(m t), sin(m t)] = m [-sin(m t), cos(m t)]; grad (N, S, 2, F) -> per (N, 1, S, F)
    g = grad.to(X.dtype).view(n, sigmas, 2, count) * (features.scales * features.multiples).unsqueeze(1)
    g_cos, g_sin = g[:, :, 0].unsqueeze(1).neg(), g[:, :, 1].unsqueeze(1)
    dX = torch.empty_like(X)
    for s, e in _blocks(X.shape[1], chunk):
        t = _phases(X[:, s:e], features)  # (N, l, S, F)
        dt = torch.sin(t).mul_(g_cos).addcmul_(torch.cos(t), g_sin)
        if features.groups == 1:
            du = dt.sum(2)  # (N, l, F)
        else:  # the bandwidths of each group back onto its base frequencies
            du = dt.new_zeros(n, e - s, features.groups, count).index_add_(
                2, features.group_index, dt).flatten(2)
        dX[:, s:e] = torch.matmul(du, features.W.t())
        if weighted:  # known from the call (a mask was given), not read from `a`
            dX[:, s:e].mul_(a[:, s:e].unsqueeze(2))
    return dX


def _joined(x: Tensor, y: Tensor, join: bool):
    return [torch.cat((x, y))] if join else [x, y]


class _FeatureMeans(torch.autograd.Function):
    """``(mu_P, mu_Q)``, ``mu = sum_i a_i z(p_i)`` for ``P (N, Lp, d)``, ``Q (N, Lq, d)`` and weights
    ``a (N, Lp)``, ``b (N, Lq)``, where ``z(p)`` holds, per bandwidth ``s``, ``scale_s * [cos(m_s p
    W_g), sin(m_s p W_g)]`` (``W_g`` its group's base frequencies); outputs ``(N, S * 2F)``.

    All bandwidths come from one projection per chunk of patches, and both sets go through the same
    kernels when their sizes agree (half the launches). The backward pass recomputes the features
    of the sets that need a gradient only, so memory stays ``O(N L d + N S F + chunk S F)``. A
    cos/sin pair per frequency, rather than one cosine with a random phase, halves the products
    with ``d`` for the same number of features and makes ``|z(p)|^2 = sum_s w_s`` exactly, the
    kernel's diagonal."""

    @staticmethod
    def forward(ctx, P: Tensor, Q: Tensor, a: Tensor, b: Tensor,  # type: ignore[override]
                features: _Features, chunk: int, weighted: bool):
        join = P.shape[1] == Q.shape[1]
        with no_autocast(P.device):
            means = [_feature_mean(X, w, features, chunk)
                     for X, w in zip(_joined(P, Q, join), _joined(a, b, join))]
        ctx.save_for_backward(P, Q, a, b)
        ctx.features, ctx.chunk, ctx.weighted = features, chunk, weighted
        return tuple(means[0].split(P.shape[0])) if join else tuple(means)

    @staticmethod
    def backward(ctx, grad_p: Tensor, grad_q: Tensor):  # type: ignore[override]
        P, Q, a, b = ctx.saved_tensors
        need = ctx.needs_input_grad[:2]
        grads = [None, None]
        with no_autocast(P.device):
            if all(need) and P.shape[1] == Q.shape[1]:
                grads = list(_feature_mean_grad(torch.cat((P, Q)), torch.cat((a, b)),
                                                torch.cat((grad_p, grad_q)), ctx.features, ctx.chunk,
                                                ctx.weighted).split(P.shape[0]))
            else:
                for k, (X, w, g) in enumerate(((P, a, grad_p), (Q, b, grad_q))):
                    if need[k]:
                        grads[k] = _feature_mean_grad(X, w, g, ctx.features, ctx.chunk, ctx.weighted)
        return grads[0], grads[1], None, None, None, None, None


def _mmd_random_features(P: Tensor, Q: Tensor, a: Tensor, b: Tensor, features, estimator: str,
                         weights: Tuple[float, ...], weighted: bool, per_sigma: bool = False):
    """MMD² ``(N,)`` from random features; with ``per_sigma`` one ``(N,)`` per bandwidth instead
    (the features of each bandwidth are a block of the feature mean, so the split is free)."""
    chunk = feature_chunk(P.shape[0], features.scales.shape[0] * features.count, P.device)
    mp, mq = _FeatureMeans.apply(P, Q, a.detach(), b.detach(), features, chunk, weighted)
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
