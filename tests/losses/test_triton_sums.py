"""The fused kernel sums (``_kernels.triton_sums``) against a dense float64 reference: values, gradients,
masks, tiles that do not divide the sizes, both kernels, each operand precision.

Without CUDA they run under Triton's interpreter (``TRITON_INTERPRET=1``, set before Triton is first
imported) on tiny inputs.
"""
import math
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
pytest.importorskip("triton", reason="Triton is not installed (it ships with torch's CUDA wheels)")

from randperc_plugins.losses._kernels.triton_sums import kernel_sums  # noqa: E402
from randperc_plugins.losses._patch_kernels import ArcCosineKernel, GaussianKernel  # noqa: E402
from randperc_plugins.losses.patch_mmd import default_sigmas  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
#: (MMD² relative error, gradient error relative to its largest entry) per operand precision, against
#: float64, for patches of images in [0, 1]
TOLERANCE = {"fp32": (1e-4, 1e-4), "tf32": (2e-2, 2e-2), "bf16": (1e-1, 5e-2)}


def _dense_sums(P, Q, a, b, kernel):
    """The three sums from full float64 kernel matrices (no blocks, no tiles)."""
    def k(X, Y, same):
        if isinstance(kernel, GaussianKernel):
            d2 = torch.cdist(X, Y).pow(2)
            if same:
                d2 = d2 * (1 - torch.eye(X.shape[1], dtype=X.dtype))
            return sum(w * torch.exp(-d2 / (2 * s * s)) for s, w in zip(kernel.sigmas, kernel.weights))
        nx, ny = X.norm(dim=-1), Y.norm(dim=-1)
        c = (X @ Y.transpose(1, 2)) / (nx.unsqueeze(2) * ny.unsqueeze(1))
        c = c.clamp(-1, 1)
        if same:
            c = torch.where(torch.eye(X.shape[1], dtype=torch.bool), torch.ones_like(c), c)
        for _ in range(kernel.depth):
            c = (torch.sqrt((1 - c * c).clamp_min(0)) + (math.pi - torch.arccos(c.clamp(-1 + 1e-12, 1 - 1e-12))) * c) / math.pi
        return c * nx.unsqueeze(2) * ny.unsqueeze(1) / kernel.dim
    P0, Q0 = kernel.prepare(P, Q)
    return torch.stack([torch.einsum("ni,nij,nj->n", a, k(P0, P0, True), a),
                        torch.einsum("ni,nij,nj->n", b, k(Q0, Q0, True), b),
                        torch.einsum("ni,nij,nj->n", a, k(P0, Q0, False), b)], 1)


def _mmd2(s, a, b):
    A, B = a.sum(1).double(), b.sum(1).double()
    return s[:, 0] / A ** 2 + s[:, 1] / B ** 2 - 2 * s[:, 2] / (A * B)


def _patch_sets(lp, lq, d, seed=0, masked=False):
    g = torch.Generator().manual_seed(seed)
    P = torch.rand(2, lp, d, generator=g, dtype=torch.float64)
    Q = (P[:, :lq] * 0.8 + 0.2 * torch.rand(2, lq, d, generator=g, dtype=torch.float64)) if lq <= lp \
        else torch.rand(2, lq, d, generator=g, dtype=torch.float64)
    a, b = torch.ones(2, lp, dtype=torch.float64), torch.ones(2, lq, dtype=torch.float64)
    if masked:
        a[0, ::3] = 0
        b[1, 1::4] = 0
    return P, Q, a, b


KERNELS = {
    "gaussian_1": GaussianKernel((0.9,), (1.0,)),
    "gaussian_4": GaussianKernel(default_sigmas(3), (0.25,) * 4),
    "arc_cosine_1": ArcCosineKernel(1, 27),
    "arc_cosine_3": ArcCosineKernel(3, 27),
}


@pytest.mark.parametrize("masked", [False, True], ids=["all", "masked"])
@pytest.mark.parametrize("both", [False, True], ids=["grad_p", "grad_pq"])
@pytest.mark.parametrize("name", sorted(KERNELS))
def test_values_and_gradients_match_dense_float64(name, both, masked):
    kernel = KERNELS[name]
    P, Q, a, b = _patch_sets(37, 29, 27, masked=masked)
    if isinstance(kernel, ArcCosineKernel):
        P, Q = P - 0.5, Q - 0.5
    P.requires_grad_()
    Q.requires_grad_(both)
    expected = _dense_sums(P, Q, a, b, kernel)
    w = torch.tensor([[0.3, -0.7, 1.1]], dtype=torch.float64)  # all three sums reach the gradient
    inputs = (P, Q) if both else (P,)
    g_expected = torch.autograd.grad((expected * w).sum(), inputs)
    P32, Q32 = (t.detach().float().to(DEVICE).requires_grad_(t.requires_grad) for t in (P, Q))
    got = kernel_sums(P32, Q32, a.float().to(DEVICE), b.float().to(DEVICE), kernel, "fp32",
                      block_m=16, block_n=16)  # several tiles, none of them full
    assert got.dtype == torch.float64 and got.shape == (2, 3)
    torch.testing.assert_close(got.cpu(), expected.detach(), rtol=2e-5, atol=1e-6)
    g_got = torch.autograd.grad((got * w.to(DEVICE)).sum(), (P32, Q32) if both else (P32,))
    for gg, ge in zip(g_got, g_expected):
        scale = ge.abs().max()
        torch.testing.assert_close(gg.double().cpu() / scale, ge / scale, rtol=0, atol=2e-5)
    if not both:
        assert Q32.grad is None


INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"


@pytest.mark.parametrize("precision", [
    "fp32", "tf32",
    pytest.param("bf16", marks=pytest.mark.skipif(
        INTERPRETED, reason="Triton's interpreter does not round to bfloat16 (numpy has no bfloat16)"))])
def test_mmd2_of_image_patches_within_the_stated_tolerance(precision):
    # 7x7 RGB patches (d = 147) of a smooth image and a shifted, noisier copy, the 4 default bandwidths
    g = torch.Generator().manual_seed(3)
    img = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 24, 24, generator=g, dtype=torch.float64), 3, 1, 1)
    other = (img.roll(1, -1) + 0.02 * torch.randn(1, 3, 24, 24, generator=g, dtype=torch.float64)).clamp(0, 1)
    unfold = torch.nn.Unfold(7)
    P, Q = unfold(img).transpose(1, 2), unfold(other).transpose(1, 2)
    a, b = torch.ones(1, P.shape[1], dtype=torch.float64), torch.ones(1, Q.shape[1], dtype=torch.float64)
    kernel = GaussianKernel(default_sigmas(7), (0.25,) * 4)
    P.requires_grad_()
    expected_sums = _dense_sums(P, Q, a, b, kernel)
    expected = _mmd2(expected_sums, a, b)
    (g_expected,) = torch.autograd.grad(expected.sum(), P)
    P32 = P.detach().float().to(DEVICE).requires_grad_()
    got = _mmd2(kernel_sums(P32, Q.float().to(DEVICE), a.float().to(DEVICE), b.float().to(DEVICE),
                            kernel, precision).cpu(), a, b)
    (g_got,) = torch.autograd.grad(got.sum(), P32)
    value_tol, grad_tol = TOLERANCE[precision]
    expected, got = float(expected.detach()), float(got.detach())
    assert expected > 1e-4  # a small MMD² of large sums: the hard case for cancellation
    assert abs(got - expected) <= value_tol * expected, (got, expected)
    scale = g_expected.abs().max()
    assert (g_got.double().cpu() - g_expected).abs().max() <= grad_tol * scale


def test_half_precision_inputs_are_computed_in_float32():
    P, Q, a, b = _patch_sets(20, 20, 9)
    kernel = GaussianKernel((1.0,), (1.0,))
    expected = _dense_sums(P, Q, a, b, kernel)
    for dtype in (torch.float16,) if INTERPRETED else (torch.float16, torch.bfloat16):
        got = kernel_sums(P.to(DEVICE, dtype), Q.to(DEVICE, dtype), a.float().to(DEVICE),
                          b.float().to(DEVICE), kernel)
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got.cpu(), expected, rtol=2e-2, atol=1e-3)


def test_bad_settings_name_the_argument():
    P, Q, a, b = (t.float() for t in _patch_sets(5, 5, 3))
    with pytest.raises(ValueError, match=r"`precision`.*'fp32', 'tf32', 'bf16'.*'fp16'"):
        kernel_sums(P, Q, a, b, GaussianKernel((1.0,), (1.0,)), "fp16")
    with pytest.raises(ValueError, match=r"`block_m`.*power of two.*24"):
        kernel_sums(P, Q, a, b, GaussianKernel((1.0,), (1.0,)), block_m=24)
    with pytest.raises(TypeError, match=r"`kernel`.*GaussianKernel.*str"):
        kernel_sums(P.to(DEVICE), Q.to(DEVICE), a.to(DEVICE), b.to(DEVICE), "gaussian")


def test_a_launch_that_does_not_fit_retries_with_smaller_tiles():
    from triton.runtime.errors import OutOfResources

    from randperc_plugins.losses._kernels import triton_sums

    launched = []

    class FakeKernel:  # needs BLOCK_M * BLOCK_N <= 512 of "shared memory"
        def __getitem__(self, grid):
            def run(*args, BLOCK_M, BLOCK_N, BLOCK_D, **constants):
                if BLOCK_M * BLOCK_N > 512:
                    raise OutOfResources(BLOCK_M * BLOCK_N, 512, "shared memory")
                launched.append((grid, BLOCK_M, BLOCK_N))
            return run

    fake = FakeKernel()
    triton_sums._launch(fake, lambda bm: (1, 100 // bm), (), dict(PRECISION=0), (64, 64, 256))
    assert launched == [((1, 3), 32, 16)]  # columns halved to 16 first, then rows
    triton_sums._launch(fake, lambda bm: (1, 100 // bm), (), dict(PRECISION=0), (64, 64, 256))
    assert launched[-1] == ((1, 3), 32, 16) and len(launched) == 2  # remembered: no failed launch
    with pytest.raises(OutOfResources):
        triton_sums._launch(FakeKernel.__new__(type("Never", (FakeKernel,), {
            "__getitem__": lambda self, g: (lambda *a, **k: (_ for _ in ()).throw(
                OutOfResources(1, 0, "shared memory")))})), lambda bm: (1, 1), (),
            dict(PRECISION=1), (64, 64, 256))
