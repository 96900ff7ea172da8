"""Exact MMD² of two patch sets: all kernel sums, block by block, in a custom autograd Function whose
backward pass recomputes the blocks (memory linear in the number of patches), and the estimators that
turn kernel sums into an MMD². Imports torch only."""
from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
from torch import Tensor


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
