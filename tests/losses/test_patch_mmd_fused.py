"""Patch-MMD's exact method through the fused kernels equals the blocked PyTorch sums (float64), at every
setting that reaches them: both kernels, masks, windows, levels, the unbiased estimator.

On a CUDA device the kernels run compiled; without one they run under Triton's interpreter
(``TRITON_INTERPRET=1``, set before Triton is first imported) on tiny inputs, through the same
dispatch (``_use_fused`` admits CPU tensors there).
"""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
triton = pytest.importorskip("triton", reason="Triton is not installed (it ships with torch's CUDA wheels)")

pytest.importorskip("randperc_plugins.losses._kernels.triton_sums")
from randperc_plugins.losses import _kernel_sums  # noqa: E402
from randperc_plugins.losses.patch_mmd import patch_mmd  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

CASES = {
    "gaussian": dict(patch_size=3),
    "gaussian_one_sigma_unbiased": dict(patch_size=3, sigmas=(0.7,), estimator="unbiased"),
    "gaussian_masked_levels": dict(patch_size=3, levels=2, mask=True),
    "gaussian_windows": dict(patch_size=3, window_size=8, window_stride=5, normalize="channel_mean"),
    "random_cnn": dict(patch_size=3, kernel="random_cnn", depth=3),
    "random_cnn_masked_unbiased": dict(patch_size=3, kernel="random_cnn", depth=2, mask=True,
                                       estimator="unbiased"),
}


@pytest.fixture
def fused_on_this_device(monkeypatch):
    if DEVICE == "cpu":  # the interpreter takes CPU tensors
        monkeypatch.setattr(_kernel_sums, "_use_fused",
                            lambda P: P.dtype != torch.float64 and _kernel_sums._FUSED["enabled"])


def _inputs(seed=0, side=13):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 3, side, side, generator=g)
    y = (x + 0.1 * torch.randn(2, 3, side, side, generator=g)).clamp(0, 1)
    mask = (torch.rand(2, side, side, generator=g) > 0.2).float()
    return x, y, mask


@pytest.mark.parametrize("name", sorted(CASES))
def test_fused_sums_match_float64_blocks(name, fused_on_this_device):
    settings = dict(CASES[name])
    x, y, mask = _inputs()
    weight = mask if settings.pop("mask", False) else None
    if settings.get("kernel") == "random_cnn":
        x, y = x - 0.5, y - 0.5  # centred: the arc-cosine kernel is not translation invariant

    def run(dtype, device):
        xg = x.to(device, dtype).requires_grad_()
        value = patch_mmd(xg, y.to(device, dtype), None if weight is None else weight.to(device),
                          method="exact", validate_args=False, **settings)
        (grad,) = torch.autograd.grad(value.sum(), xg)
        return value.double().cpu(), grad.double().cpu()

    expected, expected_grad = run(torch.float64, "cpu")
    got, got_grad = run(torch.float32, DEVICE)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-7)
    scale = expected_grad.abs().max()
    torch.testing.assert_close(got_grad / scale, expected_grad / scale, rtol=0, atol=1e-4)


def test_dispatch_takes_the_fused_kernels(fused_on_this_device, monkeypatch):
    # the equality above must not be the blocked path twice
    from randperc_plugins.losses._kernels import triton_sums
    calls = []
    original = triton_sums.kernel_sums
    monkeypatch.setattr(triton_sums, "kernel_sums", lambda *a, **k: calls.append(1) or original(*a, **k))
    x, y, _ = _inputs(side=9)
    patch_mmd(x.to(DEVICE), y.to(DEVICE), patch_size=3, method="exact", validate_args=False)
    assert calls
    with _kernel_sums.fused_kernels(False):
        patch_mmd(x.to(DEVICE), y.to(DEVICE), patch_size=3, method="exact", validate_args=False)
    assert len(calls) == 1
