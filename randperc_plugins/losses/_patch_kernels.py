r"""The kernels of the exact Patch-MMD sums: for one block of patch pairs, the kernel values and the
terms of their gradient. Imports torch only.

Each kernel is a small frozen object that the blocked sums (``_kernel_sums``) call with a block of
rows ``x_i`` and columns ``y_j`` and per-row quantities computed once per set (:meth:`norms`):

* :meth:`prepare` maps both patch sets before the sums (a translation-invariant kernel may centre
  them, which lessens the cancellation of :math:`|u|^2 + |v|^2 - 2u\cdot v`);
* :meth:`values`: the ``(N, Bi, Bj)`` block of kernel values;
* :meth:`accumulate_grad`: adds :math:`\sum_j G_{ij}\, \partial k(x_i, y_j) / \partial x_i` to the
  rows' gradient and :math:`\sum_i G_{ij}\, \partial k(x_i, y_j) / \partial y_j` to the columns',
  with :math:`G_{ij} = \mathrm{left}_i\, \mathrm{right}_j`;
* :meth:`diagonal_sums`: :math:`\sum_i a_i^2 k(p_i, p_i)` per sample (what the unbiased estimator
  leaves out), differentiable where the diagonal depends on the patches.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Tuple

import torch
from torch import Tensor

#: Kernel exponents are clamped at this value: ``exp`` of a number below about -87 (a float32
#: subnormal or an underflow) takes 50 to 200 times longer on the CPU than of -80 (measured),
#: and narrow bandwidths reach such exponents for most pairs of patches. ``exp(-80) = 1.8e-35``
#: stands for a kernel value that is 0 for every purpose here.
_EXPONENT_FLOOR = -80.0


def _diagonal_part(block: Tensor, diagonal) -> Tensor:
    """The diagonals ``(n, B)`` of the first ``n`` blocks of ``block (N, B, B)``: all of them for
    ``diagonal=True``, the first ``diagonal`` for an int (a batch that stacks diagonal blocks of
    within-set sums before the blocks of a cross sum)."""
    head = block if diagonal is True else block[:int(diagonal)]
    return head.diagonal(dim1=1, dim2=2)


def _sq_dist(zi: Tensor, ni: Tensor, zj: Tensor, nj: Tensor, diagonal) -> Tensor:
    """Squared distances ``(N, Bi, Bj)`` of two blocks, clamped at 0, exact 0 on a diagonal block
    (``diagonal``: ``True``, ``False``, or how many leading blocks of the batch are diagonal)."""
    d2 = torch.baddbmm(ni.unsqueeze(2) + nj.unsqueeze(1), zi, zj.transpose(1, 2), alpha=-2.0)
    d2.clamp_(min=0)
    if diagonal:
        _diagonal_part(d2, diagonal).zero_()
    return d2


def _gaussian_sum(d2: Tensor, coefs, weights) -> Tensor:
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


@dataclass(frozen=True)
class GaussianKernel:
    r"""A sum of Gaussian kernels, :math:`k(u, v) = \sum_s w_s \exp(-|u - v|^2 / (2\sigma_s^2))`.

    Translation invariant: the patches are centred on their common mean first. The diagonal is the
    constant :math:`\sum_s w_s`.
    """

    sigmas: Tuple[float, ...]
    weights: Tuple[float, ...]

    def prepare(self, P: Tensor, Q: Tensor) -> Tuple[Tensor, Tensor]:
        """Subtract the (constant) mean patch of both sets: distances are unchanged."""
        n_all = P.shape[1] + Q.shape[1]
        c = ((P.sum(1, keepdim=True) + Q.sum(1, keepdim=True)) / n_all).detach()
        return P - c, Q - c

    @staticmethod
    def norms(X: Tensor) -> Tensor:
        """Squared norms ``(N, L)``."""
        return X.pow(2).sum(-1)

    def values(self, xi: Tensor, ni: Tensor, yj: Tensor, nj: Tensor, diagonal: bool) -> Tensor:
        coefs = [1.0 / (2.0 * s * s) for s in self.sigmas]
        return _gaussian_sum(_sq_dist(xi, ni, yj, nj, diagonal), coefs, self.weights)

    def accumulate_grad(self, xi: Tensor, ni: Tensor, yj: Tensor, nj: Tensor, diagonal: bool,
                        left: Tensor, right: Tensor, dXi: Tensor, dYj: Tensor, rows: bool,
                        cols: bool) -> None:
        # d k_s(u, v) / du = -k_s(u, v) (u - v) / sigma_s^2 = -d k_s(u, v) / dv
        coefs = [1.0 / (2.0 * s * s) for s in self.sigmas]
        gweights = [w / (s * s) for w, s in zip(self.weights, self.sigmas)]
        m = _gaussian_sum(_sq_dist(xi, ni, yj, nj, diagonal), coefs, gweights)
        m.mul_(left).mul_(right)
        if rows:  # -sum_j m_ij (x_i - y_j)
            dXi -= m.sum(2).unsqueeze(2) * xi - torch.bmm(m, yj)
        if cols:
            dYj -= m.sum(1).unsqueeze(2) * yj - torch.bmm(m.transpose(1, 2), xi)

    def diagonal_sums(self, P: Tensor, a: Tensor) -> Tensor:
        return float(sum(self.weights)) * a.pow(2).sum(1)


def _arc_cosine_step(c: Tensor) -> Tuple[Tensor, Tensor]:
    r"""``(h(c), h'(c))`` of the order-1 arc-cosine kernel on cosines ``c`` in ``[-1, 1]``:
    :math:`h(c) = (\sqrt{1 - c^2} + (\pi - \arccos c)\, c) / \pi`, :math:`h'(c) = (\pi - \arccos
    c) / \pi` (bounded, unlike the derivative of ``arccos`` itself, hence written out)."""
    # in place where it can be: these passes over the block, 2 per layer and direction, are what
    # the kernel costs
    slope = torch.arccos(c).neg_().add_(math.pi).div_(math.pi)
    return torch.mul(c, c).neg_().add_(1.0).sqrt_().div_(math.pi).addcmul_(slope, c), slope


@dataclass(frozen=True)
class ArcCosineKernel:
    r"""The kernel of an infinitely wide random ReLU network of ``depth`` layers on ``dim``-vectors.

    A layer ``relu(W u)`` with ``W`` of i.i.d. :math:`\mathcal N(0, 2/\mathrm{fan\_in})` entries
    (Kaiming) and no bias maps, as its width grows, the inner products of its inputs through the
    order-1 arc-cosine kernel of Cho and Saul (NeurIPS 2009): norms are kept and the cosine
    :math:`c` becomes :math:`h(c) = (\sqrt{1 - c^2} + (\pi - \arccos c)\,c)/\pi`. With the first
    layer's fan-in ``dim`` = :math:`d`, ``depth`` = :math:`L` layers and :math:`H = h^{\circ L}`:

    .. math::

        K(p, q) = \frac{|p|\,|q|}{d}\, H\!\left(\frac{p\cdot q}{|p|\,|q|}\right), \qquad
        K(p, p) = \frac{|p|^2}{d},

        \frac{\partial K}{\partial p} = \frac{|q|}{d}\frac{p}{|p|}\,(H - c H') + \frac{H'}{d}\, q,
        \qquad H' = \prod_{l=1}^{L} h'(c_{l-1}),\ c_0 = c,\ c_l = h(c_{l-1}).

    Not translation invariant (no centring). A zero patch gets the inverse norm 0: its kernel values
    are 0 and its gradient :math:`(H'(0)/d) \sum_j G_{ij} q_j`, finite (the kernel is positively
    homogeneous there, so no gradient is the true one).
    """

    depth: int
    dim: int

    @staticmethod
    def prepare(P: Tensor, Q: Tensor) -> Tuple[Tensor, Tensor]:
        return P, Q

    @staticmethod
    def norms(X: Tensor) -> Tensor:
        """``(N, L, 2)``: the norm and its safe inverse (0 for a zero patch)."""
        n = torch.linalg.vector_norm(X, dim=-1)
        inv = torch.where(n > 0, 1.0 / torch.where(n > 0, n, torch.ones_like(n)), torch.zeros_like(n))
        return torch.stack((n, inv), dim=-1)

    @staticmethod
    def _cosines(xi: Tensor, ni: Tensor, yj: Tensor, nj: Tensor, diagonal: bool) -> Tensor:
        c = torch.bmm(xi, yj.transpose(1, 2))
        c.mul_(ni[..., 1].unsqueeze(2)).mul_(nj[..., 1].unsqueeze(1)).clamp_(-1.0, 1.0)
        if diagonal:
            _diagonal_part(c, diagonal).fill_(1.0)
        return c

    def values(self, xi: Tensor, ni: Tensor, yj: Tensor, nj: Tensor, diagonal: bool) -> Tensor:
        H = self._cosines(xi, ni, yj, nj, diagonal)
        for _ in range(self.depth):
            H = _arc_cosine_step(H)[0]
        return H.mul_(ni[..., 0].unsqueeze(2) / self.dim).mul_(nj[..., 0].unsqueeze(1))

    def accumulate_grad(self, xi: Tensor, ni: Tensor, yj: Tensor, nj: Tensor, diagonal: bool,
                        left: Tensor, right: Tensor, dXi: Tensor, dYj: Tensor, rows: bool,
                        cols: bool) -> None:
        c = self._cosines(xi, ni, yj, nj, diagonal)
        H, slope = c, None
        for _ in range(self.depth):
            H, step = _arc_cosine_step(H)
            slope = step if slope is None else slope.mul_(step)
        G = (left * right).div_(self.dim)
        radial = (H - c * slope).mul_(G)  # multiplies |q| p / |p| (rows), |p| q / |q| (columns)
        cross = slope.mul_(G)  # multiplies q (rows), p (columns)
        if rows:
            along = torch.bmm(radial, nj[..., 0].unsqueeze(2)).mul_(ni[..., 1].unsqueeze(2))
            dXi += along * xi + torch.bmm(cross, yj)
        if cols:
            along = torch.bmm(radial.transpose(1, 2), ni[..., 0].unsqueeze(2))
            dYj += along.mul_(nj[..., 1].unsqueeze(2)) * yj + torch.bmm(cross.transpose(1, 2), xi)

    def diagonal_sums(self, P: Tensor, a: Tensor) -> Tensor:
        """``sum_i a_i^2 |p_i|^2 / d`` in ``a``'s precision, differentiable w.r.t. ``P``."""
        return (a.pow(2) * P.to(a.dtype).pow(2).sum(-1)).sum(1) / self.dim
