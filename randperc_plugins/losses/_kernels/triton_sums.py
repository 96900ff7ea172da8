r"""Fused Triton kernels of the exact Patch-MMD kernel sums, forward and backward.

For patch sets :math:`X = (x_i)`, :math:`Y = (y_j)` of one sample with weights :math:`u_i`,
:math:`v_j`, one kernel sum is

.. math::

    S(X, Y) = \sum_{i, j} u_i v_j\, k(x_i, y_j), \qquad
    \frac{\partial}{\partial x_i} \sum_{i, j} G_{ij}\, k(x_i, y_j), \quad G_{ij} = g\, u_i v_j,

with :math:`k` the sum of Gaussians :math:`\sum_s w_s \exp(-\lVert x - y\rVert^2 / (2\sigma_s^2))`
(:class:`~.._patch_kernels.GaussianKernel`; the sets are centred on their common mean first) or the
arc-cosine kernel of a random ReLU network (:class:`~.._patch_kernels.ArcCosineKernel`). A program
takes ``BLOCK_M`` rows of one sample and loops over tiles of ``BLOCK_N`` columns: the inner products
of a tile come from ``tl.dot``, the kernel values and their weighted row sums stay in registers, and
only the per-row sums (or the rows' gradient) are written, so no block of kernel values ever reaches
memory (the pattern of FlashAttention). The norms are computed in the kernel from the very operands
of the products, so a distance of a patch to itself is 0 up to rounding. The backward pass
recomputes each tile. The per-row sums are accumulated in float32 and added up in float64.

The within-set sums :math:`S(P, P)`, :math:`S(Q, Q)` have an exactly zero distance (a cosine of
exactly 1) on the diagonal; their rows' gradient counts twice (the columns give the same).

Operand precision (``precision``): ``'fp32'``, float32's accuracy from three TF32 tensor-core
products per product (each operand split into a TF32 part and its TF32 remainder, as CUTLASS's
3xTF32; IEEE float32 products, without tensor cores, took 70 times as long on an H200); ``'tf32'``
and ``'bf16'``, one tensor-core product of operands rounded to 10 and 7 mantissa bits; all
accumulated in float32. Against the float64 sums (tests/losses/test_triton_sums.py, 7x7 RGB patches
of images in ``[0, 1]``, the 4 default bandwidths): the MMD² within 4.8e-6 relative with ``'fp32'``
(under Triton's interpreter, which computes float32 products); on an H200, ``'tf32'`` moved the
MMD² of a 256x256 pair by 1.3e-5 relative from ``'fp32'`` (the centring keeps the operands small);
the tests bound ``'tf32'`` at 2e-2 and ``'bf16'`` at 1e-1.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
from torch import Tensor

import triton
import triton.language as tl

from .._patch_kernels import ArcCosineKernel, GaussianKernel

__all__ = ["kernel_sums", "PRECISIONS"]

PRECISIONS = ("fp32", "tf32", "bf16")

@triton.jit
def _acos(c):
    # Abramowitz and Stegun 4.4.46: arccos(x) = sqrt(1 - x) * poly(x) on [0, 1], |error| <= 2e-8
    # (Triton has no arccos of its own, and its interpreter none of libdevice's)
    x = tl.abs(c)
    p = -0.0012624911
    p = p * x + 0.0066700901
    p = p * x - 0.0170881256
    p = p * x + 0.0308918810
    p = p * x - 0.0501743046
    p = p * x + 0.0889789874
    p = p * x - 0.2145988016
    p = p * x + 1.5707963050
    r = tl.sqrt(tl.maximum(1.0 - x, 0.0)) * p
    return tl.where(c < 0, 3.141592653589793 - r, r)


@triton.jit
def _load_tile(ptr, start, length, dim, BLOCK: tl.constexpr, BLOCK_D: tl.constexpr,
               ROUND_BF16: tl.constexpr):
    """Rows ``start .. start + BLOCK`` of a ``(length, dim)`` row-major matrix, zero-padded, in
    float32 (rounded through bfloat16 first with ``ROUND_BF16``), and their validity."""
    rows = start + tl.arange(0, BLOCK)
    cols = tl.arange(0, BLOCK_D)
    ok = rows < length
    tile = tl.load(ptr + rows[:, None] * dim + cols[None, :], mask=ok[:, None] & (cols[None, :] < dim),
                   other=0.0)
    if ROUND_BF16:
        tile = tile.to(tl.bfloat16).to(tl.float32)
    return tile, rows, ok


@triton.jit
def _products(x, y, PRECISION: tl.constexpr):
    """``x @ y.T`` of two float32 tiles: three TF32 products (0, float32's accuracy on tensor
    cores: IEEE products took 70x as long on an H200), one TF32 product (1) or bfloat16 operands
    (2)."""
    if PRECISION == 2:
        return tl.dot(x.to(tl.bfloat16), tl.trans(y.to(tl.bfloat16)), out_dtype=tl.float32)
    elif PRECISION == 1:
        return tl.dot(x, tl.trans(y), input_precision="tf32")
    else:
        return tl.dot(x, tl.trans(y), input_precision="tf32x3")


@triton.jit
def _weighted_rows(m, y, PRECISION: tl.constexpr):
    """``m @ y`` of float32 tiles: three TF32 products for ``'fp32'``, one otherwise."""
    if PRECISION == 0:
        return tl.dot(m, y, input_precision="tf32x3")
    else:
        return tl.dot(m, y, input_precision="tf32")


@triton.jit
def _kernel_tile(x, y, rows, cols, coef_ptr, wgt_ptr, dim_f, KIND: tl.constexpr,
                 NUM_TERMS: tl.constexpr, DIAG: tl.constexpr, GRAD: tl.constexpr,
                 PRECISION: tl.constexpr):
    """Kernel values of a tile (``GRAD=False``) or the terms of their gradient w.r.t. the rows
    (``GRAD=True``): Gaussian ``(m, 0)`` with ``dk/dx_i = -m_ij (x_i - y_j)``; arc-cosine
    ``(radial, cross)`` with ``dk/dx_i = radial_ij |y_j| x_i / |x_i| + cross_ij y_j``."""
    s = _products(x, y, PRECISION)
    nx = tl.sum(x * x, 1)
    ny = tl.sum(y * y, 1)
    same = rows[:, None] == cols[None, :]
    if KIND == 0:
        d2 = tl.maximum(nx[:, None] + ny[None, :] - 2.0 * s, 0.0)
        if DIAG:
            d2 = tl.where(same, 0.0, d2)
        k = tl.zeros_like(d2)
        for t in tl.static_range(NUM_TERMS):
            c = tl.load(coef_ptr + t)
            w = tl.load(wgt_ptr + t)
            k += w * tl.exp(tl.maximum(-c * d2, -80.0))  # _patch_kernels._EXPONENT_FLOOR
        return k, k
    else:
        lx = tl.sqrt(nx)
        ly = tl.sqrt(ny)
        ix = tl.where(lx > 0, 1.0 / tl.where(lx > 0, lx, 1.0), 0.0)
        iy = tl.where(ly > 0, 1.0 / tl.where(ly > 0, ly, 1.0), 0.0)
        cos0 = tl.minimum(tl.maximum(s * ix[:, None] * iy[None, :], -1.0), 1.0)
        if DIAG:
            cos0 = tl.where(same, 1.0, cos0)
        h = cos0
        slope = tl.zeros_like(cos0) + 1.0
        for _ in tl.static_range(NUM_TERMS):
            step = (3.141592653589793 - _acos(h)) / 3.141592653589793
            slope = slope * step
            h = (tl.sqrt(tl.maximum(1.0 - h * h, 0.0)) / 3.141592653589793) + step * h
        if GRAD:
            # radial multiplies |y_j| x_i / |x_i|, cross multiplies y_j (both / dim)
            return (h - cos0 * slope) * ly[None, :] * ix[:, None] / dim_f, slope / dim_f
        else:
            return h * (lx[:, None] * ly[None, :] / dim_f), h


@triton.jit
def _row_sums_kernel(X, Y, U, V, OUT, coef_ptr, wgt_ptr, len_x, len_y, dim, dim_f,
                     KIND: tl.constexpr, NUM_TERMS: tl.constexpr, DIAG: tl.constexpr,
                     PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                     BLOCK_D: tl.constexpr):
    """``OUT[n, i] = u_i sum_j v_j k(x_i, y_j)`` for the rows of one program."""
    n = tl.program_id(0)
    x, rows, ok_x = _load_tile(X + n * len_x * dim, tl.program_id(1) * BLOCK_M, len_x, dim, BLOCK_M,
                               BLOCK_D, PRECISION == 2)
    acc = tl.zeros((BLOCK_M,), tl.float32)
    for start in range(0, len_y, BLOCK_N):
        y, cols, ok_y = _load_tile(Y + n * len_y * dim, start, len_y, dim, BLOCK_N, BLOCK_D,
                                   PRECISION == 2)
        v = tl.load(V + n * len_y + cols, mask=ok_y, other=0.0)
        k, _ = _kernel_tile(x, y, rows, cols, coef_ptr, wgt_ptr, dim_f, KIND, NUM_TERMS, DIAG,
                            False, PRECISION)
        acc += tl.sum(k * v[None, :], 1)
    u = tl.load(U + n * len_x + rows, mask=ok_x, other=0.0)
    tl.store(OUT + n * len_x + rows, acc * u, mask=ok_x)


@triton.jit
def _row_grads_kernel(X, Y, U, V, G, DX, coef_ptr, wgt_ptr, len_x, len_y, dim, dim_f,
                      KIND: tl.constexpr, NUM_TERMS: tl.constexpr, DIAG: tl.constexpr,
                      PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                      BLOCK_D: tl.constexpr):
    """``DX[n, i] += sum_j G_ij dk(x_i, y_j)/dx_i`` with ``G_ij = g_n u_i v_j``."""
    n = tl.program_id(0)
    x, rows, ok_x = _load_tile(X + n * len_x * dim, tl.program_id(1) * BLOCK_M, len_x, dim, BLOCK_M,
                               BLOCK_D, PRECISION == 2)
    along = tl.zeros((BLOCK_M,), tl.float32)  # multiplies x_i (Gaussian) or x_i / |x_i| (arc-cosine)
    across = tl.zeros((BLOCK_M, BLOCK_D), tl.float32)  # sum_j (.)_ij y_j
    for start in range(0, len_y, BLOCK_N):
        y, cols, ok_y = _load_tile(Y + n * len_y * dim, start, len_y, dim, BLOCK_N, BLOCK_D,
                                   PRECISION == 2)
        v = tl.load(V + n * len_y + cols, mask=ok_y, other=0.0)
        first, second = _kernel_tile(x, y, rows, cols, coef_ptr, wgt_ptr, dim_f, KIND, NUM_TERMS,
                                     DIAG, True, PRECISION)
        first = first * v[None, :]
        if KIND == 0:
            along -= tl.sum(first, 1)
            across += _weighted_rows(first, y, PRECISION)
        else:
            along += tl.sum(first, 1)
            across += _weighted_rows(second * v[None, :], y, PRECISION)
    u = tl.load(U + n * len_x + rows, mask=ok_x, other=0.0)
    g = tl.load(G + n)
    scale = (u * g)[:, None]
    cols_d = tl.arange(0, BLOCK_D)
    ptrs = DX + n * len_x * dim + rows[:, None] * dim + cols_d[None, :]
    ok = ok_x[:, None] & (cols_d[None, :] < dim)
    out = tl.load(ptrs, mask=ok, other=0.0)
    out += scale * (along[:, None] * x + across)
    tl.store(ptrs, out, mask=ok)


#: ``(kernel, device)`` -> the kernel's tables on the device, made once (a tensor made from Python
#: numbers in every call would be a host-to-device copy per step).
_TABLES: Dict[tuple, Tuple[Tensor, Tensor, Tensor]] = {}


def _kernel_args(kernel, device: torch.device):
    """``(KIND, NUM_TERMS, coefs, weights, grad_weights)``: 0 for the Gaussian sum (its exponent
    coefficients ``1 / (2 sigma^2)``, weights and gradient weights ``w / sigma^2``), 1 for the
    arc-cosine kernel (its depth; the tables are unused)."""
    if isinstance(kernel, GaussianKernel):
        kind, terms = 0, len(kernel.sigmas)
    elif isinstance(kernel, ArcCosineKernel):
        kind, terms = 1, kernel.depth
    else:
        raise TypeError(f"`kernel` must be a GaussianKernel or an ArcCosineKernel, got "
                        f"{type(kernel).__name__}")
    key = (kernel, device)
    if key not in _TABLES:
        if kind == 0:
            rows = [[1.0 / (2.0 * s * s) for s in kernel.sigmas], list(kernel.weights),
                    [w / (s * s) for w, s in zip(kernel.weights, kernel.sigmas)]]
        else:
            rows = [[0.0], [0.0], [0.0]]
        table = torch.tensor(rows, dtype=torch.float32)
        table = table.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else table
        _TABLES[key] = (table[0], table[1], table[2])
    return (kind, terms) + _TABLES[key]


def _tiles(dim: int, precision: str, block_m: Optional[int],
           block_n: Optional[int]) -> Tuple[int, int, int]:
    """``(BLOCK_M, BLOCK_N, BLOCK_D)``. Shared memory grows with the tiles and, for ``'fp32'`` (three
    TF32 products), about twice as fast: on an H200, 64 x 32 tiles of d = 147 (``BLOCK_D`` 256) needed
    256 KiB of its 227 KiB with ``'fp32'`` and ran with ``'tf32'`` and ``'bf16'``, and 64 x 64 tiles of
    d = 49 ran with ``'fp32'``. A launch that still does not fit retries with smaller tiles
    (:func:`_launch`)."""
    block_d = max(16, triton.next_power_of_2(dim))
    if block_m is None:
        block_m = 32 if (precision == "fp32" and block_d >= 256) else 64
    if block_n is None:
        block_n = 64 if block_d <= 64 else 32
    return block_m, block_n, block_d


#: ``(kernel function, BLOCK_D, precision)`` -> tiles found to fit the device's shared memory.
_FITTING_TILES: Dict[tuple, Tuple[int, int]] = {}


def _launch(fn, grid_of, args, constants: dict, tiles: Tuple[int, int, int]) -> None:
    """``fn[grid](*args, **constants)`` with the tiles that fit: on Triton's ``OutOfResources`` (shared
    memory), halve the columns, then the rows, down to 16, and remember what fitted."""
    from triton.runtime.errors import OutOfResources

    key = (fn, tiles[2], constants["PRECISION"])
    block_m, block_n = _FITTING_TILES.get(key, tiles[:2])
    while True:
        try:
            fn[grid_of(block_m)](*args, **constants, BLOCK_M=block_m, BLOCK_N=block_n,
                                 BLOCK_D=tiles[2])
            _FITTING_TILES[key] = (block_m, block_n)
            return
        except OutOfResources:
            if block_n > 16:
                block_n //= 2
            elif block_m > 16:
                block_m //= 2
            else:
                raise


class _FusedKernelSums(torch.autograd.Function):
    """``(N, 3)`` float64 sums ``S(P, P), S(Q, Q), S(P, Q)``; see the module docstring."""

    @staticmethod
    def forward(ctx, P: Tensor, Q: Tensor, a: Tensor, b: Tensor, kernel, precision: str,
                block_m: Optional[int], block_n: Optional[int]) -> Tensor:  # type: ignore[override]
        P0, Q0 = (t.float().contiguous() for t in kernel.prepare(P, Q))
        a32, b32 = a.float().contiguous(), b.float().contiguous()
        n, dim = P0.shape[0], P0.shape[2]
        kind, terms, coefs, weights, _ = _kernel_args(kernel, P0.device)
        tiles = _tiles(dim, precision, block_m, block_n)
        code = PRECISIONS.index(precision)
        sums = []
        for X, Y, u, v, diag in ((P0, P0, a32, a32, True), (Q0, Q0, b32, b32, True),
                                 (P0, Q0, a32, b32, False)):
            out = torch.empty_like(u)
            _launch(_row_sums_kernel, lambda bm, L=X.shape[1]: (n, triton.cdiv(L, bm)),
                    (X, Y, u, v, out, coefs, weights, X.shape[1], Y.shape[1], dim,
                     float(getattr(kernel, "dim", 1))),
                    dict(KIND=kind, NUM_TERMS=terms, DIAG=diag, PRECISION=code), tiles)
            sums.append(out.to(torch.float64).sum(1))
        ctx.save_for_backward(P, Q, a, b)
        ctx.kernel, ctx.precision, ctx.tiles = kernel, precision, (block_m, block_n)
        return torch.stack(sums, 1)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        P, Q, a, b = ctx.saved_tensors
        need_p, need_q = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if not (need_p or need_q):
            return (None,) * 8
        kernel = ctx.kernel
        P0, Q0 = (t.float().contiguous() for t in kernel.prepare(P.detach(), Q.detach()))
        a32, b32 = a.float().contiguous(), b.float().contiguous()
        n, dim = P0.shape[0], P0.shape[2]
        kind, terms, coefs, _, gweights = _kernel_args(kernel, P0.device)
        tiles = _tiles(dim, ctx.precision, *ctx.tiles)
        code = PRECISIONS.index(ctx.precision)
        g = grad.to(torch.float32)
        g_within, g_cross = (g[:, :2] * 2.0).contiguous(), g[:, 2].contiguous()
        # the rows of a within-set sum count twice (its columns give the same)
        passes = []
        if need_p:
            passes += [(P0, P0, a32, a32, g_within[:, 0].contiguous(), True, 0),
                       (P0, Q0, a32, b32, g_cross, False, 0)]
        if need_q:
            passes += [(Q0, Q0, b32, b32, g_within[:, 1].contiguous(), True, 1),
                       (Q0, P0, b32, a32, g_cross, False, 1)]
        grads = [torch.zeros_like(P0) if need_p else None, torch.zeros_like(Q0) if need_q else None]
        for X, Y, u, v, gk, diag, which in passes:
            _launch(_row_grads_kernel, lambda bm, L=X.shape[1]: (n, triton.cdiv(L, bm)),
                    (X, Y, u, v, gk, grads[which], coefs, gweights, X.shape[1], Y.shape[1], dim,
                     float(getattr(kernel, "dim", 1))),
                    dict(KIND=kind, NUM_TERMS=terms, DIAG=diag, PRECISION=code), tiles)
        dP = grads[0].to(P.dtype) if need_p else None
        dQ = grads[1].to(Q.dtype) if need_q else None
        return dP, dQ, None, None, None, None, None, None


def kernel_sums(P: Tensor, Q: Tensor, a: Tensor, b: Tensor, kernel, precision: str = "fp32", *,
                block_m: Optional[int] = None, block_n: Optional[int] = None) -> Tensor:
    r"""The weighted kernel sums of two patch sets by the fused kernels.

    Args:
        P: patches ``(N, Lp, d)`` (float32, float16 or bfloat16; computed in float32).
        Q: patches ``(N, Lq, d)``.
        a: weights ``(N, Lp)`` of ``P`` (not differentiated).
        b: weights ``(N, Lq)`` of ``Q``.
        kernel: a :class:`~.._patch_kernels.GaussianKernel` or
            :class:`~.._patch_kernels.ArcCosineKernel`.
        precision: ``'fp32'`` (default), ``'tf32'`` or ``'bf16'`` operands of the products.
        block_m, block_n: rows and columns of a tile (powers of two, at least 16); by default 64
            and 64 (32 columns for ``d > 64``).

    Returns:
        ``(N, 3)`` float64: :math:`\sum_{ij} a_i a_j k(p_i, p_j)`, :math:`\sum_{ij} b_i b_j k(q_i,
        q_j)`, :math:`\sum_{ij} a_i b_j k(p_i, q_j)`, differentiable w.r.t. ``P`` and ``Q``.

    Raises:
        ValueError: if ``precision`` is not one of ``'fp32'``, ``'tf32'``, ``'bf16'``.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"`precision` must be one of {PRECISIONS}, got {precision!r}")
    for name, size in (("block_m", block_m), ("block_n", block_n)):
        if size is not None and (size < 16 or size & (size - 1)):
            raise ValueError(f"`{name}` must be a power of two of at least 16, got {size}")
    if not isinstance(kernel, (GaussianKernel, ArcCosineKernel)):
        raise TypeError(f"`kernel` must be a GaussianKernel or an ArcCosineKernel, got "
                        f"{type(kernel).__name__}")
    return _FusedKernelSums.apply(P, Q, a, b, kernel, precision, block_m, block_n)
