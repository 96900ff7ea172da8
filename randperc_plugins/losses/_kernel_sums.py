"""Exact MMD² of two patch sets: all kernel sums, block by block, in a custom autograd Function whose
backward pass recomputes the blocks (memory linear in the number of patches), and the estimators that
turn kernel sums into an MMD². Imports torch only."""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import Tensor


def _blocks(n: int, size: int) -> List[Tuple[int, int]]:
    return [(s, min(s + size, n)) for s in range(0, n, size)]


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

    ``k`` is a kernel of ``_patch_kernels`` (:class:`GaussianKernel`, :class:`ArcCosineKernel`),
    which gives the values and gradient terms of one block. Inputs ``P (N, Lp, d)``, ``Q (N, Lq,
    d)``, patch weights ``a (N, Lp)`` and ``b (N, Lq)`` (not differentiated); output ``(N, 3)`` in
    float64. Only blocks of ``block_size x block_size`` kernel values exist at any time, in the
    forward pass and in the backward pass, which recomputes them: memory ``O(N (Lp + Lq) d + N
    block_size^2)``. The two within-set sums use the symmetry of the kernel (half the blocks); blocks
    are summed into float64 scalars.
    """

    @staticmethod
    def forward(ctx, P: Tensor, Q: Tensor, a: Tensor, b: Tensor, kernel,
                block_size: int) -> Tensor:  # type: ignore[override]
        with torch.autocast(P.device.type, enabled=False):
            P0, Q0 = kernel.prepare(P, Q)
            sums = P.new_zeros((P.shape[0], 3), dtype=torch.float64)
            for k, (X, Y, u, v, symmetric) in enumerate(((P0, P0, a, a, True), (Q0, Q0, b, b, True),
                                                         (P0, Q0, a, b, False))):
                nx, ny = kernel.norms(X), kernel.norms(Y)
                acc = sums[:, k]
                for si, sj, mult, diagonal in _pair_plan(X.shape[1], Y.shape[1], block_size, symmetric):
                    kb = kernel.values(X[:, si], nx[:, si], Y[:, sj], ny[:, sj], diagonal)
                    part = torch.bmm(kb, v[:, sj].unsqueeze(2)).squeeze(2).mul_(u[:, si]).sum(1)
                    acc += part.to(torch.float64) * mult
        ctx.save_for_backward(P, Q, a, b)
        ctx.kernel, ctx.block_size = kernel, block_size
        return sums

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        P, Q, a, b = ctx.saved_tensors
        need_p, need_q = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if not (need_p or need_q):
            return None, None, None, None, None, None
        kernel = ctx.kernel
        with torch.autocast(P.device.type, enabled=False):
            grad = grad.to(P.dtype)
            P0, Q0 = kernel.prepare(P, Q)
            dP, dQ = torch.zeros_like(P0), torch.zeros_like(Q0)
            # only the sums that reach a needed gradient (a target usually needs none): the rows
            # of a block give dX, its columns dY
            pairs = ((P0, P0, a, a, dP, dP, True, 0, need_p, need_p),
                     (Q0, Q0, b, b, dQ, dQ, True, 1, need_q, need_q),
                     (P0, Q0, a, b, dP, dQ, False, 2, need_p, need_q))
            for X, Y, u, v, dX, dY, symmetric, k, rows, cols in pairs:
                g = grad[:, k]
                if not (rows or cols):
                    continue
                nx, ny = kernel.norms(X), kernel.norms(Y)
                for si, sj, mult, diagonal in _pair_plan(X.shape[1], Y.shape[1], ctx.block_size,
                                                         symmetric):
                    scale = (g * (2.0 if diagonal else mult)).view(-1, 1, 1)
                    # on a diagonal block the columns give the same as the rows (hence 2 x rows)
                    kernel.accumulate_grad(X[:, si], nx[:, si], Y[:, sj], ny[:, sj], diagonal,
                                           u[:, si].unsqueeze(2) * scale, v[:, sj].unsqueeze(1),
                                           dX[:, si], dY[:, sj], rows, cols and not diagonal)
        return (dP if need_p else None), (dQ if need_q else None), None, None, None, None


def _combine(s_pp: Tensor, s_qq: Tensor, s_pq: Tensor, a: Tensor, b: Tensor, estimator: str,
             diag_p: Optional[Tensor] = None, diag_q: Optional[Tensor] = None) -> Tensor:
    """MMD² from the weighted kernel sums, diagonals included; ``diag_p = sum_i a_i^2 k(p_i, p_i)``
    and ``diag_q`` (per sample) are what the unbiased estimator leaves out."""
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
        pp = torch.where(ok_p, (s_pp - diag_p) / dp, torch.zeros_like(dp))
        qq = torch.where(ok_q, (s_qq - diag_q) / dq, torch.zeros_like(dq))
    out = pp + qq - 2.0 * s_pq / (A_ * B_)
    return torch.where(empty, out * 0.0, out)


def _mmd_exact(P: Tensor, Q: Tensor, a: Tensor, b: Tensor, kernel, estimator: str,
               block_size: int) -> Tensor:
    """Exact MMD² ``(N,)`` of the patch sets ``P (N, Lp, d)``, ``Q (N, Lq, d)`` with weights, under a
    kernel of ``_patch_kernels``."""
    s = _BlockedKernelSums.apply(P, Q, a.detach(), b.detach(), kernel, block_size)
    a64, b64 = a.detach().to(torch.float64), b.detach().to(torch.float64)
    diag_p = diag_q = None
    if estimator == "unbiased":
        diag_p, diag_q = kernel.diagonal_sums(P, a64), kernel.diagonal_sums(Q, b64)
    out = _combine(s[:, 0], s[:, 1], s[:, 2], a64, b64, estimator, diag_p, diag_q)
    return out.to(P.dtype)
