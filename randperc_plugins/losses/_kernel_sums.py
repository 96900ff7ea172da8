"""Exact MMD² of two patch sets: all kernel sums, block by block, in a custom autograd Function whose
backward pass recomputes the blocks (memory linear in the number of patches), and the estimators that
turn kernel sums into an MMD². Imports torch only."""
from __future__ import annotations

import contextlib
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from .utils import no_autocast


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
        ctx.save_for_backward(P, Q, a, b)
        ctx.kernel, ctx.block_size = kernel, block_size
        if _one_block(P, Q, block_size):
            with no_autocast(P.device):
                return _one_block_sums(P, Q, a, b, kernel)
        with no_autocast(P.device):
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
        return sums

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        P, Q, a, b = ctx.saved_tensors
        need_p, need_q = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if not (need_p or need_q):
            return None, None, None, None, None, None
        kernel = ctx.kernel
        if _one_block(P, Q, ctx.block_size):
            with no_autocast(P.device):
                dP, dQ = _one_block_grads(P, Q, a, b, kernel, grad.to(P.dtype), need_q)
            return (dP if need_p else None), (dQ if need_q else None), None, None, None, None
        with no_autocast(P.device):
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


def _one_block(P: Tensor, Q: Tensor, block_size: int) -> bool:
    """Whether both sets fit one block and have the same size: then the three sums are one batch
    of ``3N`` blocks (a few kernels for all of them rather than a few per sum)."""
    return P.shape[1] == Q.shape[1] and P.shape[1] <= block_size


def _stacked(P0: Tensor, Q0: Tensor, a: Tensor, b: Tensor, kernel):
    """Rows ``[P, Q, P]`` and columns ``[P, Q, Q]`` of the three sums as one batch, with their norms
    and weights; the first ``2N`` blocks are diagonal blocks."""
    np_, nq = kernel.norms(P0), kernel.norms(Q0)
    return (torch.cat((P0, Q0, P0)), torch.cat((np_, nq, np_)), torch.cat((a, b, a)),
            torch.cat((P0, Q0, Q0)), torch.cat((np_, nq, nq)), torch.cat((a, b, b)))


def _one_block_sums(P: Tensor, Q: Tensor, a: Tensor, b: Tensor, kernel) -> Tensor:
    n = P.shape[0]
    X, nx, u, Y, ny, v = _stacked(*kernel.prepare(P, Q), a, b, kernel)
    kb = kernel.values(X, nx, Y, ny, 2 * n)
    part = torch.bmm(kb, v.unsqueeze(2)).squeeze(2).mul_(u).sum(1)  # (3N,)
    return part.to(torch.float64).view(3, n).t()


def _one_block_grads(P: Tensor, Q: Tensor, a: Tensor, b: Tensor, kernel, grad: Tensor,
                     need_q: bool) -> Tuple[Tensor, Tensor]:
    """``(dP, dQ)`` of the one-block sums: the rows of a diagonal block count twice (its columns
    give the same); the columns of the cross blocks are taken only when ``Q`` needs a gradient."""
    n = P.shape[0]
    X, nx, u, Y, ny, v = _stacked(*kernel.prepare(P, Q), a, b, kernel)
    scale = torch.cat((grad[:, :2] * 2.0, grad[:, 2:]), 1).t().reshape(3 * n, 1, 1)
    dX = torch.zeros_like(X)
    dY = torch.zeros_like(Y) if need_q else dX
    kernel.accumulate_grad(X, nx, Y, ny, 2 * n, u.unsqueeze(2) * scale, v.unsqueeze(1), dX, dY,
                           True, need_q)
    dP = dX[:n] + dX[2 * n:]
    dQ = dX[n:2 * n] + dY[2 * n:] if need_q else None
    return dP, dQ


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


_FUSED = {"enabled": True}


@contextlib.contextmanager
def fused_kernels(enabled: bool):
    """Within this context the exact sums use the fused kernels only if ``enabled`` (benchmarks and
    tests compare them with the blocked PyTorch sums on the same device)."""
    before = _FUSED["enabled"]
    _FUSED["enabled"] = bool(enabled)
    try:
        yield
    finally:
        _FUSED["enabled"] = before


def kernel_sums(P: Tensor, Q: Tensor, a: Tensor, b: Tensor, kernel, block_size: int,
                precision: str = "fp32") -> Tensor:
    """The three weighted kernel sums ``(N, 3)`` in float64 (see :class:`_BlockedKernelSums`): by
    the fused Triton kernels on a CUDA device where Triton is installed (float32, float16 and
    bfloat16 inputs; ``precision`` sets their operands), by the blocked PyTorch sums otherwise."""
    if _use_fused(P):
        from ._kernels.triton_sums import kernel_sums as fused
        return fused(P, Q, a, b, kernel, precision=precision)
    return _BlockedKernelSums.apply(P, Q, a, b, kernel, block_size)


def _use_fused(P: Tensor) -> bool:
    """Whether the fused kernels take the sums of ``P``: on a CUDA device with Triton, for float32,
    float16 and bfloat16 (float64 stays on the PyTorch path, the reference)."""
    if not (P.is_cuda and P.dtype != torch.float64 and _FUSED["enabled"]):
        return False
    from ._kernels import triton_available
    return triton_available()


def _mmd_exact(P: Tensor, Q: Tensor, a: Tensor, b: Tensor, kernel, estimator: str,
               block_size: int, precision: str = "fp32") -> Tensor:
    """Exact MMD² ``(N,)`` of the patch sets ``P (N, Lp, d)``, ``Q (N, Lq, d)`` with weights, under a
    kernel of ``_patch_kernels``."""
    s = kernel_sums(P, Q, a.detach(), b.detach(), kernel, block_size, precision)
    a64, b64 = a.detach().to(torch.float64), b.detach().to(torch.float64)
    diag_p = diag_q = None
    if estimator == "unbiased":
        diag_p, diag_q = kernel.diagonal_sums(P, a64), kernel.diagonal_sums(Q, b64)
    out = _combine(s[:, 0], s[:, 1], s[:, 2], a64, b64, estimator, diag_p, diag_q)
    return out.to(P.dtype)
