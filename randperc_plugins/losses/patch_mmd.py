"""Patch-MMD: the perceptual distance of infinitely wide random CNNs, computed with no network.

Amir and Weiss, "Understanding and Simplifying Perceptual Distances", CVPR 2021, show that the
perceptual distance of an infinitely wide random CNN between two images equals the maximum mean
discrepancy (MMD) between the distributions of their small patches, and compute that MMD directly.
This module does the same, in memory linear in the number of patches:

* :func:`extract_patches` turns images (and optional pixel masks) into patch sets and patch validity;
* ``method='exact'``: every kernel sum is taken block by block (:class:`_BlockedKernelSums`, a custom
  autograd Function that recomputes the blocks in the backward pass instead of keeping them);
* ``method='random_features'``: random Fourier features of the Gaussian kernel (Rahimi and Recht,
  "Random Features for Large-Scale Kernel Machines", NeurIPS 2007), linear in the number of patches;
* :func:`patch_mmd` (the measure: MMD² per sample), :func:`patch_mmd_loss` (the loss: MMD or MMD²,
  reduced and weighted) and :class:`PatchMMDLoss` (the loss as a module, settings checked once into a
  :class:`PatchMMDSpec`).

Imports torch only.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._utils import (area_resize, as_weight_mask, check_choice, check_image, check_max_size,
                     check_positive_int, check_reduction, check_seed, check_validate_args, compute_dtype,
                     reduce_per_sample, reduced_size, seeded_generator)

__all__ = ["patch_mmd", "patch_mmd_loss", "PatchMMDLoss", "PatchMMDSpec", "extract_patches",
           "default_sigmas", "DEFAULT_SIGMA_FACTORS", "AUTO_EXACT_RATIO"]

#: Bandwidths, as multiples of ``patch_size ** 2``, of the default sum of Gaussian kernels.
#: Taken from the code that continues Amir and Weiss' work (github.com/ariel415el/
#: PerceptualLossExperiments), for images in ``[0, 1]``; not stated in the paper itself.
DEFAULT_SIGMA_FACTORS: Tuple[float, ...] = (0.1, 0.05, 0.025, 0.01)

#: ``method='auto'`` computes the exact MMD while the larger patch set of a pyramid level holds at
#: most ``AUTO_EXACT_RATIO * num_features * len(sigmas)`` patches, and random features above. The
#: exact sums cost about ``N^2`` kernel values (each a product with ``d`` and an ``exp`` per
#: bandwidth), the random features about ``N * num_features`` cos/sin values per bandwidth, so the
#: break-even size grows with ``num_features * len(sigmas)``; the factor is the break-even measured
#: on the CPU (fwd+bwd, 7x7 RGB patches, d = 147, and 3x3 patches of 19 classes, d = 171: 300 to
#: 500 patches with the defaults).
AUTO_EXACT_RATIO: float = 0.1

_ESTIMATORS = ("biased", "unbiased")
_METHODS = ("exact", "random_features", "auto")


# ----------------------------------------------------------------------------------------------
# Arguments
# ----------------------------------------------------------------------------------------------
def default_sigmas(patch_size: int) -> Tuple[float, ...]:
    """The default bandwidths ``DEFAULT_SIGMA_FACTORS * patch_size ** 2`` (for images in ``[0, 1]``).

    Example:
        >>> default_sigmas(7)
        (4.9, 2.45, 1.225, 0.49)
    """
    return tuple(round(f * patch_size ** 2, 12) for f in DEFAULT_SIGMA_FACTORS)


def _check_weights(weights: Optional[Sequence[float]], count: int, name: str,
                   what: str) -> Tuple[float, ...]:
    """Non-negative weights, one per ``what``; ``None`` gives equal weights summing to 1."""
    if weights is None:
        return tuple(1.0 / count for _ in range(count))
    weights = tuple(float(w) for w in weights)
    if len(weights) != count:
        raise ValueError(f"`{name}` must hold one weight per {what} ({count}), got {len(weights)}")
    if any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"`{name}` must be finite, non-negative and not all 0, got {weights}")
    return weights


def _check_sigmas(sigmas: Optional[Sequence[float]], patch_size: int) -> Tuple[float, ...]:
    if sigmas is None:
        return default_sigmas(patch_size)
    if isinstance(sigmas, (int, float)):
        sigmas = (sigmas,)
    sigmas = tuple(float(s) for s in sigmas)
    if len(sigmas) == 0 or any(not math.isfinite(s) or s <= 0 for s in sigmas):
        raise ValueError(f"`sigmas` must be a non-empty sequence of positive bandwidths, got {sigmas}")
    return sigmas


# ----------------------------------------------------------------------------------------------
# Patches
# ----------------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------------
# Exact kernel sums, blocked
# ----------------------------------------------------------------------------------------------
def _blocks(n: int, size: int) -> List[Tuple[int, int]]:
    return [(s, min(s + size, n)) for s in range(0, n, size)]


def _sq_dist(zi: Tensor, ni: Tensor, zj: Tensor, nj: Tensor, diagonal: bool) -> Tensor:
    """Squared distances ``(N, Bi, Bj)`` of two blocks, clamped at 0, exact 0 on a diagonal block."""
    d2 = torch.baddbmm(ni.unsqueeze(2) + nj.unsqueeze(1), zi, zj.transpose(1, 2), alpha=-2.0)
    d2.clamp_(min=0)
    if diagonal:
        d2.diagonal(dim1=1, dim2=2).zero_()
    return d2


#: Kernel exponents are clamped at this value: ``exp`` of a number below about -87 (a float32
#: subnormal or an underflow) takes 50 to 200 times longer on the CPU than of -80 (measured),
#: and narrow bandwidths reach such exponents for most pairs of patches. ``exp(-80) = 1.8e-35``
#: stands for a kernel value that is 0 for every purpose here.
_EXPONENT_FLOOR = -80.0


def _kernel(d2: Tensor, coefs: Sequence[float], weights: Sequence[float]) -> Tensor:
    """``sum_s weights[s] * exp(max(-coefs[s] * d2, _EXPONENT_FLOOR))``; overwrites ``d2`` (the
    last term is built in it)."""
    terms = [(c, w) for c, w in zip(coefs, weights) if w != 0]
    if not terms:
        return d2.zero_()
    out = None
    for c, w in terms[:-1]:
        k = torch.mul(d2, -c).clamp_(min=_EXPONENT_FLOOR).exp_()
        out = k.mul_(w) if out is None else out.add_(k, alpha=w)
    c, w = terms[-1]
    last = d2.mul_(-c).clamp_(min=_EXPONENT_FLOOR).exp_()
    return last.mul_(w) if out is None else out.add_(last, alpha=w)


def _pair_plan(n_i: int, n_j: int, size: int, symmetric: bool):
    """Block pairs ``(slice_i, slice_j, multiplicity, is_diagonal)`` covering all pairs of rows."""
    bi, bj = _blocks(n_i, size), _blocks(n_j, size)
    for a, (i0, i1) in enumerate(bi):
        for b, (j0, j1) in enumerate(bj):
            if symmetric and b < a:
                continue
            diagonal = symmetric and a == b
            yield slice(i0, i1), slice(j0, j1), (2.0 if symmetric and not diagonal else 1.0), diagonal


class _BlockedKernelSums(torch.autograd.Function):
    """``S = (sum_ij a_i a_j k(p_i, p_j), sum_ij b_i b_j k(q_i, q_j), sum_ij a_i b_j k(p_i, q_j))``.

    ``k = sum_s w_s exp(-||u - v||^2 / (2 sigma_s^2))``. Inputs ``P (N, Lp, d)``, ``Q (N, Lq, d)``,
    patch weights ``a (N, Lp)`` and ``b (N, Lq)`` (not differentiated); output ``(N, 3)`` in float64. Only blocks
    of ``block_size x block_size`` kernel values exist at any time, in the forward pass and in the
    backward pass, which recomputes them: memory ``O(N (Lp + Lq) d + N block_size^2)``. The two
    within-set sums use the symmetry of the kernel (half the blocks). Patches are centred on their
    common mean before the ``|u|^2 + |v|^2 - 2 u.v`` form, which the distances do not depend on but
    which lessens its cancellation; blocks are summed into float64 scalars.
    """

    @staticmethod
    def forward(ctx, P: Tensor, Q: Tensor, a: Tensor, b: Tensor, sigmas: Tuple[float, ...],
                weights: Tuple[float, ...], block_size: int) -> Tensor:  # type: ignore[override]
        with torch.autocast(P.device.type, enabled=False):
            P0, Q0 = _centre(P, Q)
            sums = P.new_zeros((P.shape[0], 3), dtype=torch.float64)
            coefs = [1.0 / (2.0 * s * s) for s in sigmas]
            for k, (X, Y, u, v, symmetric) in enumerate(((P0, P0, a, a, True), (Q0, Q0, b, b, True),
                                                         (P0, Q0, a, b, False))):
                nx, ny = X.pow(2).sum(-1), Y.pow(2).sum(-1)
                acc = sums[:, k]
                for si, sj, mult, diagonal in _pair_plan(X.shape[1], Y.shape[1], block_size, symmetric):
                    d2 = _sq_dist(X[:, si], nx[:, si], Y[:, sj], ny[:, sj], diagonal)
                    kb = _kernel(d2, coefs, weights)
                    part = torch.bmm(kb, v[:, sj].unsqueeze(2)).squeeze(2).mul_(u[:, si]).sum(1)
                    acc += part.to(torch.float64) * mult
        ctx.save_for_backward(P, Q, a, b)
        ctx.sigmas, ctx.weights, ctx.block_size = sigmas, weights, block_size
        return sums

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        P, Q, a, b = ctx.saved_tensors
        need_p, need_q = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if not (need_p or need_q):
            return None, None, None, None, None, None, None
        with torch.autocast(P.device.type, enabled=False):
            grad = grad.to(P.dtype)
            P0, Q0 = _centre(P, Q)
            dP, dQ = torch.zeros_like(P0), torch.zeros_like(Q0)
            coefs = [1.0 / (2.0 * s * s) for s in ctx.sigmas]
            # d k_s(u, v) / du = -k_s(u, v) (u - v) / sigma_s^2
            gweights = [w / (s * s) for w, s in zip(ctx.weights, ctx.sigmas)]
            # only the sums that reach a needed gradient (a target usually needs none): the rows
            # of a block give dX, its columns dY
            pairs = ((P0, P0, a, a, dP, dP, True, 0, need_p, need_p),
                     (Q0, Q0, b, b, dQ, dQ, True, 1, need_q, need_q),
                     (P0, Q0, a, b, dP, dQ, False, 2, need_p, need_q))
            for X, Y, u, v, dX, dY, symmetric, k, rows, cols in pairs:
                g = grad[:, k]
                if not (rows or cols):
                    continue
                nx, ny = X.pow(2).sum(-1), Y.pow(2).sum(-1)
                for si, sj, mult, diagonal in _pair_plan(X.shape[1], Y.shape[1], ctx.block_size,
                                                         symmetric):
                    xi, yj = X[:, si], Y[:, sj]
                    d2 = _sq_dist(xi, nx[:, si], yj, ny[:, sj], diagonal)
                    m = _kernel(d2, coefs, gweights)
                    scale = (g * (2.0 if diagonal else mult)).view(-1, 1, 1)
                    m.mul_(u[:, si].unsqueeze(2) * scale).mul_(v[:, sj].unsqueeze(1))
                    # rows: -sum_j m_ij (x_i - y_j); on a diagonal block the columns give the same
                    if rows:
                        dX[:, si] -= m.sum(2).unsqueeze(2) * xi - torch.bmm(m, yj)
                    if cols and not diagonal:
                        dY[:, sj] -= m.sum(1).unsqueeze(2) * yj - torch.bmm(m.transpose(1, 2), xi)
        return (dP if need_p else None), (dQ if need_q else None), None, None, None, None, None


def _centre(P: Tensor, Q: Tensor) -> Tuple[Tensor, Tensor]:
    """Subtract the (constant) mean patch of both sets: distances are unchanged."""
    n_all = P.shape[1] + Q.shape[1]
    c = ((P.sum(1, keepdim=True) + Q.sum(1, keepdim=True)) / n_all).detach()
    return P - c, Q - c


# ----------------------------------------------------------------------------------------------
# Random Fourier features
# ----------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------
# MMD of two patch sets
# ----------------------------------------------------------------------------------------------
def _combine(s_pp: Tensor, s_qq: Tensor, s_pq: Tensor, a: Tensor, b: Tensor, estimator: str,
             diag: float) -> Tensor:
    """MMD² from the weighted kernel sums (diagonals included, each ``diag * sum a_i^2``)."""
    A, B = a.sum(1), b.sum(1)
    empty = (A <= 0) | (B <= 0)
    A_, B_ = torch.where(A > 0, A, torch.ones_like(A)), torch.where(B > 0, B, torch.ones_like(B))
    if estimator == "biased":
        pp, qq = s_pp / (A_ * A_), s_qq / (B_ * B_)
    else:
        # leave out the diagonal; a set with a single valid patch has no pair: its term is 0
        A2, B2 = a.pow(2).sum(1), b.pow(2).sum(1)
        dp, dq = A_ * A_ - A2, B_ * B_ - B2
        ok_p, ok_q = dp > 1e-12 * A_ * A_, dq > 1e-12 * B_ * B_
        dp, dq = torch.where(ok_p, dp, torch.ones_like(dp)), torch.where(ok_q, dq, torch.ones_like(dq))
        pp = torch.where(ok_p, (s_pp - diag * A2) / dp, torch.zeros_like(dp))
        qq = torch.where(ok_q, (s_qq - diag * B2) / dq, torch.zeros_like(dq))
    out = pp + qq - 2.0 * s_pq / (A_ * B_)
    return torch.where(empty, out * 0.0, out)


def _mmd_exact(P: Tensor, Q: Tensor, a: Tensor, b: Tensor, sigmas: Tuple[float, ...],
               weights: Tuple[float, ...], estimator: str, block_size: int) -> Tensor:
    """Exact MMD² ``(N,)`` of the patch sets ``P (N, Lp, d)``, ``Q (N, Lq, d)`` with weights."""
    s = _BlockedKernelSums.apply(P, Q, a.detach(), b.detach(), sigmas, weights, block_size)
    a64, b64 = a.detach().to(torch.float64), b.detach().to(torch.float64)
    out = _combine(s[:, 0], s[:, 1], s[:, 2], a64, b64, estimator, float(sum(weights)))
    return out.to(P.dtype)


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
        return _combine(s_pp, s_qq, s_pq, a64, b64, estimator, float(sum(weights))).to(P.dtype)
    n, count = mp.shape[0], len(weights)
    mp, mq = mp.view(n, count, -1), mq.view(n, count, -1)
    s_pp, s_qq, s_pq = mp.pow(2).sum(2), mq.pow(2).sum(2), (mp * mq).sum(2)
    return [_combine(s_pp[:, i], s_qq[:, i], s_pq[:, i], a64, b64, estimator, w).to(P.dtype)
            for i, w in enumerate(weights)]


# ----------------------------------------------------------------------------------------------
# Settings
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PatchMMDSpec:
    """The settings of Patch-MMD, checked once (see :func:`patch_mmd` for their meaning).

    ``sigmas``, ``sigma_weights`` and ``level_weights`` given as ``None`` are resolved to their
    defaults (:func:`default_sigmas`, equal weights summing to 1), so a spec holds plain tuples.

    Example:
        >>> PatchMMDSpec(patch_size=3).sigmas
        (0.9, 0.45, 0.225, 0.09)
    """

    patch_size: int = 7
    stride: int = 1
    sigmas: Optional[Tuple[float, ...]] = None
    sigma_weights: Optional[Tuple[float, ...]] = None
    estimator: str = "biased"
    levels: int = 1
    level_weights: Optional[Tuple[float, ...]] = None
    method: str = "exact"
    block_size: int = 512
    num_features: int = 1024
    max_patches: Optional[int] = None
    accumulate_dtype: Optional[torch.dtype] = None
    max_size: Optional[int] = None

    def __post_init__(self) -> None:
        def put(name, value):
            object.__setattr__(self, name, value)

        put("patch_size", check_positive_int(self.patch_size, "patch_size"))
        put("stride", check_positive_int(self.stride, "stride"))
        put("levels", check_positive_int(self.levels, "levels"))
        put("block_size", check_positive_int(self.block_size, "block_size"))
        put("num_features", check_positive_int(self.num_features, "num_features"))
        if self.max_patches is not None:
            check_positive_int(self.max_patches, "max_patches")
        check_choice(self.estimator, _ESTIMATORS, "estimator")
        check_choice(self.method, _METHODS, "method")
        if self.accumulate_dtype is not None:
            compute_dtype(accumulate=self.accumulate_dtype)  # validates it
        put("sigmas", _check_sigmas(self.sigmas, self.patch_size))
        put("sigma_weights", _check_weights(self.sigma_weights, len(self.sigmas), "sigma_weights",
                                            "sigma"))
        put("level_weights", _check_weights(self.level_weights, self.levels, "level_weights",
                                            "level"))
        put("max_size", check_max_size(self.max_size))


_SPEC_FIELDS = tuple(f.name for f in fields(PatchMMDSpec))


def _split_settings(settings: dict) -> Tuple[PatchMMDSpec, dict]:
    """``(spec, rest)``: the keyword arguments that are :class:`PatchMMDSpec` fields, and the others."""
    spec = PatchMMDSpec(**{k: v for k, v in settings.items() if k in _SPEC_FIELDS})
    return spec, {k: v for k, v in settings.items() if k not in _SPEC_FIELDS}


def _check_sizes(pred: Tensor, target: Tensor, spec: PatchMMDSpec) -> None:
    if pred.shape[0] != target.shape[0]:
        raise ValueError(f"`pred` and `target` must have the same batch size, got {pred.shape[0]} "
                         f"and {target.shape[0]}")
    if pred.shape[1] != target.shape[1]:
        raise ValueError(f"`pred` and `target` must have the same number of channels, got "
                         f"{pred.shape[1]} (shape {tuple(pred.shape)}) and {target.shape[1]} "
                         f"(shape {tuple(target.shape)})")
    k, top = spec.patch_size, spec.levels - 1
    for name, t in (("pred", pred), ("target", target)):
        h, w = reduced_size(*t.shape[-2:], spec.max_size)
        if min(h, w) < k:
            resized = "" if (h, w) == tuple(t.shape[-2:]) else f" (resized to {h}x{w} by `max_size`)"
            raise ValueError(f"`{name}` of spatial size {t.shape[-2]}x{t.shape[-1]}{resized} is "
                             f"smaller than one patch (`patch_size`={k})")
        if min(h, w) >> top < k:
            raise ValueError(f"`levels`={spec.levels}: level {top} of `{name}` ({h}x{w}) would be "
                             f"{h >> top}x{w >> top}, smaller than one patch (`patch_size`={k})")


# ----------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------
def patch_mmd(pred: Tensor, target: Tensor, weight: Optional[Tensor] = None, *,
              target_weight: Optional[Tensor] = None, patch_size: int = 7, stride: int = 1,
              sigmas: Optional[Sequence[float]] = None,
              sigma_weights: Optional[Sequence[float]] = None, estimator: str = "biased",
              levels: int = 1, level_weights: Optional[Sequence[float]] = None,
              method: str = "exact", block_size: int = 512, num_features: int = 1024,
              max_patches: Optional[int] = None, accumulate_dtype: Optional[torch.dtype] = None,
              max_size: Optional[int] = None, seed: int = 0, redraw: bool = False,
              generator: Optional[torch.Generator] = None, return_terms: bool = False,
              validate_args: bool = True):
    r"""Squared maximum mean discrepancy between the patch distributions of ``pred`` and ``target``
    (the measure form: per sample, unreduced; :func:`patch_mmd_loss` is the loss form).

    For images :math:`x` (``pred``) and :math:`y` (``target``) let :math:`P` and :math:`Q` be their sets of ``patch_size x patch_size``
    patches at ``stride``, flattened to vectors of length :math:`d = C k^2`, and

    .. math::

        k(a, b) = \sum_s w_s \exp\left(-\frac{\lVert a - b\rVert^2}{2\sigma_s^2}\right), \qquad
        \mathrm{MMD}^2 = \frac{1}{|P|^2}\sum_{p, p'} k(p, p') + \frac{1}{|Q|^2}\sum_{q, q'} k(q, q')
                        - \frac{2}{|P||Q|}\sum_{p, q} k(p, q)

    (``estimator='biased'``, the V-statistic, which is :math:`\ge 0` and 0 for ``pred == target``).
    ``'unbiased'`` leaves the diagonal :math:`p = p'`, :math:`q = q'` out of the two within-set means
    (dividing by :math:`|P|(|P| - 1)`); a set with a single valid patch then has no pair and its
    within-set term is taken as 0. With ``levels > 1`` the same is computed on a pyramid of 2x2
    average-pooled images, :math:`\sum_l \lambda_l \mathrm{MMD}^2_l`.

    Amir and Weiss (CVPR 2021) prove that this MMD is the perceptual distance of an infinitely wide
    random CNN. Defaults: 7x7 patches at stride 1, no patch normalisation, a sum of 4 Gaussian
    kernels with :math:`\sigma = (0.1, 0.05, 0.025, 0.01)\, k^2` (:func:`default_sigmas`) with equal
    weights, biased estimator, one level: the exact setting of the code that continues their work
    (github.com/ariel415el/PerceptualLossExperiments), which the paper itself does not pin down.
    These bandwidths are meant for images in ``[0, 1]`` (and probabilities); with 7x7 RGB patches,
    distances between patches of a natural image are of order 1 to 10, the range they cover. On a
    textured photograph they rank a 1-pixel translation far below a blur or a noise of the same L2
    distance (see the tests).

    Methods:

    * ``'exact'``: all kernel sums, computed in ``block_size x block_size`` blocks by a custom
      autograd Function whose backward pass recomputes the blocks: memory
      :math:`O(N L d + N\,\mathrm{block}^2)` forward and backward, time :math:`O(N L^2 d)`.
    * ``'random_features'``: random Fourier features (Rahimi and Recht, 2007) in cos/sin pairs,
      :math:`z_s(p) = \sqrt{w_s / F}\,[\cos(W_s^\top p), \sin(W_s^\top p)]` with ``F =
      ceil(num_features / 2)`` frequencies per bandwidth, the columns of :math:`W_s` marginally
      :math:`\mathcal N(0, \sigma_s^{-2} I)` and orthogonal in blocks of ``d`` (orthogonal random
      features, Yu et al., NeurIPS 2016), and :math:`\mathrm{MMD}^2 \approx \lVert \bar z(P) -
      \bar z(Q)\rVert^2`, unbiased over the draw: time :math:`O(N L F S d)`. As
      :math:`\lVert z(p)\rVert^2 = \sum_s w_s` exactly, the kernel's diagonal, the unbiased form
      subtracts it exactly. The relative error falls roughly as :math:`1/\sqrt{F}`, and no orthogonality
      lowers it much for the narrow default bandwidths: their frequencies are high against the spread
      of natural patches, so each frequency's term is roughly exponentially distributed. Features come
      from a local CPU generator seeded with ``seed``
      (the global RNG is untouched, every rank draws the same) and are cached; ``redraw=True`` draws
      new ones at each call from ``generator``, or, without one, from a process-wide generator per
      ``seed`` (identical on ranks that call in step).
    * ``'auto'``: per pyramid level, ``'exact'`` while the larger patch set holds at most
      ``AUTO_EXACT_RATIO * num_features * len(sigmas)`` patches (0.1 * 1024 * 4 = 409 with the
      defaults, e.g. images up to 26x26 with 7x7 patches), ``'random_features'`` above: about the
      size at which the two cost the same on the CPU.

    Everything is computed in float32 (float64 for float64 inputs, or as ``accumulate_dtype`` asks)
    with autocast disabled: float16 or bfloat16 inputs are upcast before the
    :math:`\lVert a\rVert^2 + \lVert b\rVert^2 - 2a\cdot b` products, which cancel catastrophically in
    half precision.

    Args:
        pred: images ``(N, C, H, W)``, floating point.
        target: images ``(N, C, H', W')``, the same ``N`` and ``C``; the size may differ.
        weight: optional pixel weights of ``pred``, ``(N, H, W)`` or ``(N, 1, H, W)``, and of
            ``target`` too unless ``target_weight`` is given. A patch that touches a pixel of weight 0
            (e.g. an ignored label) is left out of its distribution; other weights count as 1. A sample
            whose ``pred`` or ``target`` keeps no patch gives 0 (with a zero gradient). Weights are not
            differentiated.
        target_weight: pixel weights of ``target`` when they differ from ``weight`` (a target of
            another size, or a mask on one side only: pass ones for the other).
        patch_size: side ``k`` of the square patches.
        stride: step between patches.
        sigmas: kernel bandwidths; ``None`` for :func:`default_sigmas` ``(patch_size)``.
        sigma_weights: kernel weights :math:`w_s`; ``None`` for equal weights summing to 1.
        estimator: ``'biased'`` or ``'unbiased'``.
        levels: number of pyramid levels (each level halves the size). Every level must hold at
            least one patch.
        level_weights: weights :math:`\lambda_l`; ``None`` for equal weights summing to 1.
        method: ``'exact'``, ``'random_features'`` or ``'auto'``.
        block_size: rows of the kernel blocks of the exact method (memory ``N * block_size^2``);
            512 was the fastest on the CPU (256 to 2048 measured, 2 threads).
        num_features: random features per bandwidth (``num_features // 2`` cos/sin pairs,
            rounded up).
        max_patches: if set, each pyramid level keeps this many patches, a random subset of the
            positions drawn like the features (the same positions in ``pred`` and ``target`` when
            their sizes agree, so ``MMD(x, x)`` stays 0).
        accumulate_dtype: ``torch.float32`` or ``torch.float64`` to force the computation precision.
        max_size: if set, each image is first area-resized so that its longer side is at most this
            many pixels (aspect ratio kept), for large dense outputs such as segmentation maps. With a
            mask, masked pixels are zeroed before the averaging (so they get exactly no gradient) and
            a resized pixel stays valid only if every pixel it averages is valid.
        seed: seed of the random features and of the ``max_patches`` subset.
        redraw: draw new random features (and patch subsets) at each call.
        generator: CPU ``torch.Generator`` to draw from when ``redraw`` is set.
        return_terms: also return the breakdown ``{(level, sigma): (N,)}``: each bandwidth's
            share of each level, :math:`\lambda_l w_s \mathrm{MMD}^2_{l,s}`; the terms sum to
            the total. Costs one pass of the exact sums per bandwidth (the random features are
            split at no extra cost).
        validate_args: check the inputs' values (NaN, Inf, negative weights), which reads them on
            the host; pass ``False`` on a training path (shapes and settings are always checked).

    Returns:
        MMD² per sample, shape ``(N,)``, in float32 (float64 for float64 inputs); with
        ``return_terms``, ``(mmd2, terms)``.

    Shape:
        - pred: :math:`(N, C, H, W)`, target: :math:`(N, C, H', W')`, weights:
          :math:`(N, [1,] H, W)` and :math:`(N, [1,] H', W')`
        - output: :math:`(N,)`

    Raises:
        TypeError: if ``pred`` or ``target`` is not a floating-point tensor.
        ValueError: if an image is smaller than one patch (at any level), ``pred`` and ``target``
            differ in batch or channel count, an input holds NaN or Inf (with ``validate_args``), or
            an argument is out of range.

    Example:
        >>> pred, target = torch.rand(2, 3, 24, 24), torch.rand(2, 3, 24, 24)
        >>> d = patch_mmd(pred, target, patch_size=5)
        >>> d.shape
        torch.Size([2])
        >>> bool((patch_mmd(pred, pred, patch_size=5) < 1e-6).all())
        True
    """
    spec = PatchMMDSpec(patch_size=patch_size, stride=stride, sigmas=sigmas,
                        sigma_weights=sigma_weights, estimator=estimator, levels=levels,
                        level_weights=level_weights, method=method, block_size=block_size,
                        num_features=num_features, max_patches=max_patches,
                        accumulate_dtype=accumulate_dtype, max_size=max_size)
    if redraw and generator is None:
        generator = _redraw_generator(check_seed(seed))
    return _patch_mmd(pred, target, weight, target_weight, spec, check_seed(seed),
                      generator if (redraw or generator is not None) else None,
                      return_terms, check_validate_args(validate_args))


@functools.lru_cache(maxsize=None)
def _redraw_generator(seed: int) -> torch.Generator:
    """The process-wide generator of ``redraw=True`` without a ``generator``, one per ``seed``."""
    return seeded_generator(seed)


def _patch_mmd(pred: Tensor, target: Tensor, weight: Optional[Tensor],
               target_weight: Optional[Tensor], spec: PatchMMDSpec, seed: int,
               draw: Optional[torch.Generator], return_terms: bool, validate_args: bool):
    """:func:`patch_mmd` with checked settings; ``draw`` is the generator of redrawn features."""
    check_image(pred, "pred", finite=validate_args)
    check_image(target, "target", finite=validate_args)
    _check_sizes(pred, target, spec)
    if draw is not None and not isinstance(draw, torch.Generator):
        raise TypeError(f"`generator` must be a torch.Generator or None, got {type(draw).__name__}")
    if target_weight is None:
        target_weight = weight

    dtype = compute_dtype(pred, target, accumulate=spec.accumulate_dtype)
    sigmas, weights = spec.sigmas, spec.sigma_weights
    with torch.autocast(pred.device.type, enabled=False):
        mx = as_weight_mask(weight, pred, "weight", validate_args)
        my = as_weight_mask(target_weight, target, "target_weight" if target_weight is not weight
                            else "weight", validate_args)
        xs, ys = pred.to(dtype), target.to(dtype)
        mx = None if mx is None else mx.to(dtype)
        my = None if my is None else my.to(dtype)
        if spec.max_size is not None:
            xs, mx = _shrink(xs, mx, spec.max_size)
            ys, my = _shrink(ys, my, spec.max_size)
        subset_gen = draw if draw is not None else (
            seeded_generator(seed) if spec.max_patches else None)
        total, terms = None, {}
        for level in range(spec.levels):
            if level > 0:
                xs, mx = _downsample(xs, mx)
                ys, my = _downsample(ys, my)
            P, a = extract_patches(xs, spec.patch_size, spec.stride, mx)
            Q, b = extract_patches(ys, spec.patch_size, spec.stride, my)
            if spec.max_patches is not None:
                ip = _subset_indices(P.shape[1], spec.max_patches, subset_gen, P.device)
                iq = ip if (ip is not None and Q.shape[1] == P.shape[1]) else \
                    _subset_indices(Q.shape[1], spec.max_patches, subset_gen, Q.device)
                if ip is not None:
                    P, a = P[:, ip], a[:, ip]
                if iq is not None:
                    Q, b = Q[:, iq], b[:, iq]
            weighted = mx is not None or my is not None
            use_exact = spec.method == "exact" or (
                spec.method == "auto"
                and max(P.shape[1], Q.shape[1]) <= AUTO_EXACT_RATIO * spec.num_features * len(sigmas))
            if use_exact:
                if return_terms:
                    per_sigma = [_mmd_exact(P, Q, a, b, (s,), (w,), spec.estimator, spec.block_size)
                                 for s, w in zip(sigmas, weights)]
                else:
                    mmd = _mmd_exact(P, Q, a, b, sigmas, weights, spec.estimator, spec.block_size)
            else:
                if draw is not None:
                    feats = _draw_features(P.shape[2], spec.num_features, sigmas, weights, draw,
                                           P.device, dtype)
                else:
                    feats = _fixed_features(P.shape[2], spec.num_features, sigmas, weights, seed,
                                            P.device, dtype)
                out = _mmd_random_features(P, Q, a, b, feats, spec.estimator, weights, weighted,
                                           per_sigma=return_terms)
                if return_terms:
                    per_sigma = out
                else:
                    mmd = out
            lam = spec.level_weights[level]
            if return_terms:
                for s, v in zip(sigmas, per_sigma):
                    terms[(level, s)] = v * lam
                mmd = torch.stack(per_sigma).sum(0)
            mmd = mmd * lam
            total = mmd if total is None else total + mmd
    return (total, terms) if return_terms else total


def patch_mmd_loss(pred: Tensor, target: Tensor, weight: Optional[Tensor] = None, *,
                   squared: bool = False, reduction: str = "mean", loss_weight: float = 1.0,
                   return_terms: bool = False, validate_args: bool = True, **settings):
    r"""Patch-MMD as a loss (the loss form of :func:`patch_mmd`): per sample the MMD
    (``squared=False``, default: :math:`\sqrt{\max(\mathrm{MMD}^2, 0)}`, whose gradient is taken as 0
    where the MMD² is :math:`\le 0`, so it is finite at ``pred == target``) or the MMD²
    (``squared=True``), reduced over the batch and multiplied by ``loss_weight``.

    Args:
        pred, target, weight: as in :func:`patch_mmd`.
        squared: the MMD² instead of the MMD.
        reduction: ``'mean'`` (default) or ``'sum'`` over the batch, or ``'none'`` for ``(N,)``.
        loss_weight: multiplies the result.
        return_terms: also return :func:`patch_mmd`'s breakdown, reduced and weighted like the
            loss (so the terms sum to it); needs ``squared=True`` (square roots do not add up).
        validate_args: as in :func:`patch_mmd`.
        **settings: the other keyword arguments of :func:`patch_mmd` (``patch_size``, ``sigmas``,
            ``method``, ``seed``, ``redraw``, ``target_weight``, ...).

    Returns:
        A scalar, or ``(N,)`` with ``reduction='none'``; with ``return_terms``, ``(loss, terms)``.

    Example:
        >>> pred = torch.rand(2, 3, 24, 24, requires_grad=True)
        >>> loss = patch_mmd_loss(pred, torch.rand(2, 3, 24, 24), patch_size=5)
        >>> loss.backward()
        >>> loss.shape
        torch.Size([])
    """
    unknown = set(settings) - set(_SPEC_FIELDS) - {"target_weight", "seed", "redraw", "generator"}
    if unknown:
        raise TypeError(f"patch_mmd_loss() got unexpected keyword arguments {sorted(unknown)}")
    spec, rest = _split_settings(settings)
    seed, generator = check_seed(rest.get("seed", 0)), rest.get("generator")
    if rest.get("redraw", False) and generator is None:
        generator = _redraw_generator(seed)
    return _patch_mmd_loss(pred, target, weight, rest.get("target_weight"), spec, seed, generator,
                           bool(squared), check_reduction(reduction), float(loss_weight),
                           return_terms, check_validate_args(validate_args))


def _patch_mmd_loss(pred, target, weight, target_weight, spec: PatchMMDSpec, seed: int,
                    draw: Optional[torch.Generator], squared: bool, reduction: str,
                    loss_weight: float, return_terms: bool, validate_args: bool):
    if return_terms and not squared:
        raise ValueError("`return_terms` needs `squared=True`: the terms of the MMD² add up, the "
                         "square roots of the terms do not")
    out = _patch_mmd(pred, target, weight, target_weight, spec, seed, draw, return_terms,
                     validate_args)
    if return_terms:
        mmd2, terms = out
        terms = {k: reduce_per_sample(v, reduction) * loss_weight for k, v in terms.items()}
        return reduce_per_sample(mmd2, reduction) * loss_weight, terms
    loss = out if squared else _SafeSqrt.apply(out)
    return reduce_per_sample(loss, reduction) * loss_weight


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


class _SafeSqrt(torch.autograd.Function):
    """``sqrt(max(v, 0))`` whose gradient is 0 (not Inf or NaN) where ``v <= 0``."""

    @staticmethod
    def forward(ctx, v: Tensor) -> Tensor:  # type: ignore[override]
        out = v.clamp(min=0).sqrt()
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (out,) = ctx.saved_tensors
        pos = out > 0
        return torch.where(pos, grad / (2.0 * torch.where(pos, out, torch.ones_like(out))),
                           torch.zeros_like(grad))


class PatchMMDLoss(nn.Module):
    r"""Patch-MMD perceptual loss (Amir and Weiss, CVPR 2021) between a prediction and a target: the
    module form of :func:`patch_mmd_loss`.

    The settings are checked once, here, into :attr:`spec` (a :class:`PatchMMDSpec`); ``forward``
    is one call. The module holds no parameters and no persistent buffers: its ``state_dict()`` is
    empty, so adding it leaves checkpoints unchanged. With ``redraw=True`` it draws from its own
    generator seeded with ``seed`` (not saved in checkpoints).

    Args:
        patch_size, stride, sigmas, sigma_weights, estimator, levels, level_weights, method,
        block_size, num_features, max_patches, accumulate_dtype, max_size, seed, redraw: as in
            :func:`patch_mmd`.
        squared: the MMD² instead of the MMD.
        reduction: ``'mean'``, ``'sum'`` or ``'none'`` over the batch.
        loss_weight: factor of the loss.
        validate_args: check input values on the host (NaN, Inf, negative weights); default True.
            Adapters pass False on the training path.

    Shape:
        - pred, target: :math:`(N, C, H, W)`; weight: :math:`(N, H, W)` or :math:`(N, 1, H, W)`
        - output: scalar, or :math:`(N,)` with ``reduction='none'``

    Example:
        >>> loss = PatchMMDLoss(patch_size=5)
        >>> pred = torch.rand(2, 3, 24, 24, requires_grad=True)
        >>> out = loss(pred, torch.rand(2, 3, 24, 24))
        >>> out.backward()
        >>> out.shape, len(loss.state_dict())
        (torch.Size([]), 0)
    """

    def __init__(self, *, patch_size: int = 7, stride: int = 1,
                 sigmas: Optional[Sequence[float]] = None,
                 sigma_weights: Optional[Sequence[float]] = None, estimator: str = "biased",
                 levels: int = 1, level_weights: Optional[Sequence[float]] = None,
                 method: str = "exact", block_size: int = 512, num_features: int = 1024,
                 max_patches: Optional[int] = None, accumulate_dtype: Optional[torch.dtype] = None,
                 max_size: Optional[int] = None, seed: int = 0, redraw: bool = False,
                 squared: bool = False, reduction: str = "mean", loss_weight: float = 1.0,
                 validate_args: bool = True) -> None:
        super().__init__()
        self.spec = PatchMMDSpec(patch_size=patch_size, stride=stride, sigmas=sigmas,
                                 sigma_weights=sigma_weights, estimator=estimator, levels=levels,
                                 level_weights=level_weights, method=method,
                                 block_size=block_size, num_features=num_features,
                                 max_patches=max_patches, accumulate_dtype=accumulate_dtype,
                                 max_size=max_size)
        self.seed = seed
        self.redraw = bool(redraw)
        self.squared = bool(squared)
        self.reduction = check_reduction(reduction)
        self.loss_weight = float(loss_weight)
        self.validate_args = check_validate_args(validate_args)
        self._generator = seeded_generator(seed) if redraw else None
        check_seed(seed)

    def forward(self, pred: Tensor, target: Tensor, weight: Optional[Tensor] = None, *,
                return_terms: bool = False):
        """Loss between ``pred`` and ``target``; ``weight`` masks the pixels of both (0 = ignored).

        With ``return_terms`` (and ``squared=True``) also the per-level, per-bandwidth terms."""
        return _patch_mmd_loss(pred, target, weight, None, self.spec, self.seed, self._generator,
                               self.squared, self.reduction, self.loss_weight, return_terms,
                               self.validate_args)

    def extra_repr(self) -> str:
        s = self.spec
        return (f"patch_size={s.patch_size}, stride={s.stride}, sigmas={s.sigmas}, "
                f"estimator={s.estimator!r}, levels={s.levels}, method={s.method!r}, "
                f"squared={self.squared}, reduction={self.reduction!r}, "
                f"loss_weight={self.loss_weight}")
