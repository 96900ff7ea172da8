"""Patch-MMD over local windows, with patch normalisation, and on images smaller than a patch, against
a naive float64 reference written here (a loop over windows, dense Gaussian Gram matrices)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_patch_mmd import _rand, _ref_mmd_sets, _ref_pool_mask, _rel

from randperc_plugins.losses.patch_mmd import PatchMMDLoss, PatchMMDSpec, patch_mmd, patch_mmd_loss


# ----------------------------------------------------------------------------------------------
# Naive reference
# ----------------------------------------------------------------------------------------------
def _ref_pad(img, mask, k):
    """Replicate-pad (C, H, W) and (H, W) at the bottom and right to at least k x k, by clamped
    indices (differentiable, so the reference's autograd gives the gradient of the padding)."""
    h, w = img.shape[-2:]
    iy = torch.arange(max(h, k)).clamp(max=h - 1)
    ix = torch.arange(max(w, k)).clamp(max=w - 1)
    img = img[:, iy][:, :, ix]
    return img, (None if mask is None else mask[iy][:, ix])


def _ref_starts(length, window, stride):
    if length <= window:
        return [0]
    starts = [s for s in range(0, length - window + 1) if s % stride == 0]
    return starts if starts[-1] == length - window else starts + [length - window]


def _ref_set(img, mask, k, stride, normalize):
    """Valid patches (L', C k k) of img (C, H, W), normalised."""
    p = F.unfold(img[None], k, stride=stride)[0].t()
    if normalize == "mean":
        p = p - p.mean(1, keepdim=True)
    elif normalize == "channel_mean":
        c = img.shape[0]
        p = (p.reshape(len(p), c, k * k) - p.reshape(len(p), c, k * k).mean(2, keepdim=True)).reshape(len(p), -1)
    if mask is None:
        return p
    m = F.unfold(mask[None, None], k, stride=stride)[0].t()
    return p[(m != 0).all(1)]


def _ref_down(img, mask):
    if min(img.shape[-2:]) < 2:
        img, mask = _ref_pad(img, mask, 2)
    img = F.avg_pool2d(img[None], 2)[0]
    return img, (None if mask is None else _ref_pool_mask(mask))


def ref_windowed_mmd(x, y, patch_size, stride=1, window_size=None, window_stride=None, sigmas=(1.0,),
                     sigma_weights=None, estimator="biased", levels=1, normalize="none",
                     mask_x=None, mask_y=None, differentiable=False):
    """Per sample: sum over levels (equal weights) of the mean over windows (both sides non-empty) of
    the MMD² of the patches inside the window."""
    weights = sigma_weights or [1.0 / len(sigmas)] * len(sigmas)
    if not differentiable:
        x, y = x.detach().double(), y.detach().double()
    out = []
    for n in range(x.shape[0]):
        xi, yi = x[n], y[n]
        mx = None if mask_x is None else mask_x[n].double()
        my = None if mask_y is None else mask_y[n].double()
        total = 0.0
        for level in range(levels):
            if level:
                xi, mx = _ref_down(xi, mx)
                yi, my = _ref_down(yi, my)
            xp, mxp = _ref_pad(xi, mx, patch_size)
            yp, myp = _ref_pad(yi, my, patch_size)
            h, w = xp.shape[-2:]
            if window_size is None:
                boxes = [(0, 0, h, w)]
            else:
                ws = window_stride or max(1, window_size // 2)
                wh, ww = min(window_size, h), min(window_size, w)
                boxes = [(r, c, wh, ww) for r in _ref_starts(h, wh, ws) for c in _ref_starts(w, ww, ws)]
            values = []
            for r, c, wh, ww in boxes:
                crop = lambda t: None if t is None else t[..., r:r + wh, c:c + ww]  # noqa: E731
                P = _ref_set(crop(xp), crop(mxp), patch_size, stride, normalize)
                Q = _ref_set(crop(yp), crop(myp), patch_size, stride, normalize)
                if len(P) and len(Q):
                    values.append(_ref_mmd_sets(P, Q, sigmas, weights, estimator))
            if values:
                total = total + sum(values) / len(values) / levels
        out.append(torch.as_tensor(total, dtype=torch.float64) if not torch.is_tensor(total) else total)
    return torch.stack(out)


def _mask(seed, n, h, w):
    m = (_rand(n, h, w, seed=seed) > 0.08).double()
    m[:, :9, :9] = 0  # empties every window of side <= 9 inside this corner
    return m


# ----------------------------------------------------------------------------------------------
# Windows
# ----------------------------------------------------------------------------------------------
WINDOW_CASES = [
    # (window_size, window_stride, size, stride, levels, masked, estimator)
    (8, None, (21, 19), 1, 1, False, "biased"),
    (8, 3, (21, 19), 1, 1, True, "unbiased"),
    (7, 5, (20, 23), 2, 1, True, "biased"),
    (9, 4, (24, 22), 1, 2, True, "biased"),
    (6, 6, (17, 18), 1, 3, False, "unbiased"),
    (40, None, (21, 19), 1, 1, True, "biased"),  # larger than the image: one window
]


@pytest.mark.parametrize("window_size,window_stride,size,stride,levels,masked,estimator", WINDOW_CASES)
def test_windows_match_reference(window_size, window_stride, size, stride, levels, masked, estimator):
    x, y = _rand(2, 3, *size, seed=1), 0.7 * _rand(2, 3, *size, seed=2) + 0.1
    mx = _mask(3, 2, *size) if masked else None
    my = _mask(4, 2, *size) if masked else None
    kw = dict(patch_size=3, stride=stride, window_size=window_size, window_stride=window_stride,
              sigmas=(0.4, 1.2), estimator=estimator, levels=levels)
    ref = ref_windowed_mmd(x, y, mask_x=mx, mask_y=my, **kw)
    for dtype, tol in ((torch.float64, 1e-6), (torch.float32, 1e-4)):
        out = patch_mmd(x.to(dtype), y.to(dtype), mx, target_weight=my, block_size=13, **kw)
        assert out.shape == (2,) and out.dtype == dtype
        assert _rel(out, ref) <= tol


def test_windows_differ_from_whole_image_and_see_where_things_are():
    # swapping the halves of an image keeps its patch distribution (up to the seam) but not the
    # local ones: the whole-image MMD barely moves, the windowed one does
    x = _rand(1, 1, 16, 32, seed=5)
    x[..., :16] = x[..., :16] * 0.2  # a dark half and a bright half
    swapped = torch.cat([x[..., 16:], x[..., :16]], -1)
    kw = dict(patch_size=3, sigmas=(0.3,))
    whole = patch_mmd(x, swapped, **kw)
    local = patch_mmd(x, swapped, window_size=16, window_stride=16, **kw)
    assert local > 10 * whole


def test_masked_windows_are_left_out_and_empty_sample_gives_zero():
    x, y = _rand(2, 2, 16, 16, seed=6).requires_grad_(), _rand(2, 2, 16, 16, seed=7)
    mask = torch.ones(2, 16, 16, dtype=torch.float64)
    mask[0, :8] = 0  # sample 0: the top windows keep no patch
    mask[1] = 0  # sample 1: nothing
    kw = dict(patch_size=3, window_size=8, window_stride=8, sigmas=(0.5,))
    out = patch_mmd(x, y, mask, **kw)
    bottom = patch_mmd(x[:1, :, 8:], y[:1, :, 8:], **kw)  # the two bottom windows alone
    assert torch.allclose(out[0], bottom[0], rtol=1e-12) and out[1] == 0
    assert _rel(out, ref_windowed_mmd(x, y, mask_x=mask, mask_y=mask, **kw)) < 1e-10
    (g,) = torch.autograd.grad(out.sum(), x)
    assert torch.isfinite(g).all() and g[1].abs().max() == 0 and g[0, :, :8].abs().max() == 0
    assert g[0, :, 8:].abs().max() > 0


def test_whole_image_window_is_bit_identical_to_no_window():
    x, y = _rand(2, 3, 13, 11, seed=8).float().requires_grad_(), _rand(2, 3, 13, 11, seed=9).float()
    mask = _mask(10, 2, 13, 11)
    for method in ("exact", "random_features"):
        kw = dict(patch_size=3, levels=2, method=method, num_features=64, sigmas=(0.5, 1.0))
        base, base_terms = patch_mmd(x, y, mask, return_terms=True, **kw)
        win, win_terms = patch_mmd(x, y, mask, return_terms=True, window_size=13, **kw)
        assert torch.equal(base, win)
        assert all(torch.equal(base_terms[key], win_terms[key]) for key in base_terms)
        (g1,) = torch.autograd.grad(base.sum(), x)
        (g2,) = torch.autograd.grad(win.sum(), x)
        assert torch.equal(g1, g2)


def test_terms_sum_to_total_with_windows():
    x, y = _rand(2, 3, 20, 18, seed=11), _rand(2, 3, 20, 18, seed=12)
    mask = _mask(13, 2, 20, 18)
    for method in ("exact", "random_features"):
        kw = dict(patch_size=3, levels=2, window_size=8, sigmas=(0.3, 0.9), method=method,
                  num_features=32, normalize="mean")
        total, terms = patch_mmd(x, y, mask, return_terms=True, **kw)
        assert set(terms) == {(lv, s) for lv in (0, 1) for s in (0.3, 0.9)}
        assert torch.allclose(sum(terms.values()), total, rtol=1e-10)
        assert torch.allclose(patch_mmd(x, y, mask, **kw), total, rtol=1e-10)


def test_window_groups_do_not_change_value_or_gradient():
    # the windows go through the kernel sums in groups sized by `block_size`: groups of 2 windows
    # (block 4) and all windows in one pass (block 64) agree
    x, y = _rand(2, 2, 14, 15, seed=14).requires_grad_(), _rand(2, 2, 14, 15, seed=15)
    values, grads = [], []
    for block in (4, 64):
        v = patch_mmd(x, y, patch_size=2, window_size=5, window_stride=3, sigmas=(0.6,),
                      estimator="unbiased", block_size=block)
        values.append(v)
        grads.append(torch.autograd.grad(v.sum(), x)[0])
    assert torch.allclose(values[0], values[1], rtol=1e-12)
    assert torch.allclose(grads[0], grads[1], rtol=1e-10, atol=1e-14)


# ----------------------------------------------------------------------------------------------
# Normalisation
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("normalize", ["none", "mean", "channel_mean"])
@pytest.mark.parametrize("window_size", [None, 8])
def test_normalize_matches_reference(normalize, window_size):
    x, y = _rand(2, 3, 18, 17, seed=16), 0.5 * _rand(2, 3, 18, 17, seed=17) + 0.3
    mx, my = _mask(18, 2, 18, 17), _mask(19, 2, 18, 17)
    kw = dict(patch_size=3, sigmas=(0.2, 0.6), normalize=normalize, window_size=window_size,
              estimator="unbiased")
    ref = ref_windowed_mmd(x, y, mask_x=mx, mask_y=my, **kw)
    assert _rel(patch_mmd(x, y, mx, target_weight=my, **kw), ref) <= 1e-6
    assert _rel(patch_mmd(x.float(), y.float(), mx, target_weight=my, **kw), ref) <= 1e-4


def test_normalize_removes_the_mean_it_names():
    x = _rand(1, 3, 10, 10, seed=20)
    gray = x + 0.3  # the same brightness step on every channel
    tinted = x + torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64).view(1, 3, 1, 1)  # a colour cast
    kw = dict(patch_size=3, sigmas=(0.5,))
    assert patch_mmd(x, gray, **kw) > 1e-3 and patch_mmd(x, tinted, normalize="mean", **kw) > 1e-3
    assert patch_mmd(x, gray, normalize="mean", **kw).abs() < 1e-12
    assert patch_mmd(x, tinted, normalize="channel_mean", **kw).abs() < 1e-12


# ----------------------------------------------------------------------------------------------
# Random features and 'auto' with windows
# ----------------------------------------------------------------------------------------------
def test_random_features_with_windows_converge_to_exact():
    x = _rand(1, 3, 24, 24, seed=21)
    y = (_rand(1, 3, 24, 24, seed=22) + x) / 2
    kw = dict(patch_size=3, sigmas=(0.5, 1.0), window_size=12, window_stride=6,
              normalize="channel_mean")
    exact = patch_mmd(x, y, **kw)
    errs = []
    for d in (64, 512, 4096):
        errs.append(float(np.mean([_rel(patch_mmd(x, y, method="random_features", num_features=d,
                                                  seed=s, **kw), exact) for s in range(3)])))
    assert errs[0] > errs[1] > errs[2] and errs[2] < 0.05, errs


def test_auto_decides_on_the_patches_of_a_window():
    # 8x8 windows of 3x3 patches hold 36 patches: below the exact limit of 0.1 * 1024 * 1, where
    # the whole 24x24 image (484 patches) is above it
    x, y = _rand(1, 3, 24, 24, seed=23), _rand(1, 3, 24, 24, seed=24)
    kw = dict(patch_size=3, sigmas=(0.5,))
    assert torch.equal(patch_mmd(x, y, method="auto", window_size=8, **kw),
                       patch_mmd(x, y, method="exact", window_size=8, **kw))
    assert torch.equal(patch_mmd(x, y, method="auto", **kw),
                       patch_mmd(x, y, method="random_features", **kw))


# ----------------------------------------------------------------------------------------------
# Gradients
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["exact", "random_features"])
def test_gradcheck_windows_and_normalisation(method):
    x = _rand(1, 2, 7, 6, seed=25).requires_grad_()
    y = _rand(1, 2, 7, 6, seed=26).requires_grad_()
    mask = torch.ones(1, 7, 6, dtype=torch.float64)
    mask[0, 0, 0] = 0

    def f(a, b):
        return patch_mmd(a, b, mask, patch_size=2, window_size=4, window_stride=3, sigmas=(0.5, 1.0),
                         normalize="channel_mean", method=method, num_features=16, block_size=5)

    assert torch.autograd.gradcheck(f, (x, y), fast_mode=True)


def test_gradient_matches_autograd_of_reference():
    x = _rand(2, 3, 11, 12, seed=27).requires_grad_()
    y = _rand(2, 3, 11, 12, seed=28)
    mask = _mask(29, 2, 11, 12)
    kw = dict(patch_size=3, window_size=6, window_stride=4, sigmas=(0.4, 1.0), normalize="mean",
              levels=2)
    (g,) = torch.autograd.grad(patch_mmd(x, y, mask, **kw).sum(), x)
    (expected,) = torch.autograd.grad(
        ref_windowed_mmd(x, y, mask_x=mask, mask_y=mask, differentiable=True, **kw).sum(), x)
    assert torch.allclose(g, expected, rtol=1e-7, atol=1e-14)


# ----------------------------------------------------------------------------------------------
# Images (and pyramid levels) smaller than a patch
# ----------------------------------------------------------------------------------------------
SMALL_CASES = [
    # (pred size, target size, patch_size, levels, max_size, window_size)
    ((3, 2), (2, 3), 5, 1, None, None),
    ((4, 9), (5, 7), 5, 1, None, None),
    ((9, 8), (9, 8), 3, 4, None, None),  # levels 2 and 3 are 2x2 and 1x1
    ((30, 6), (30, 6), 3, 1, 8, None),  # max_size makes it 8x2
    ((10, 9), (10, 9), 3, 3, None, 4),  # windows at every level, one window at the coarse ones
]


@pytest.mark.parametrize("method", ["exact", "random_features"])
@pytest.mark.parametrize("psize,tsize,patch_size,levels,max_size,window_size", SMALL_CASES)
def test_images_smaller_than_a_patch_are_padded(psize, tsize, patch_size, levels, max_size,
                                                window_size, method):
    x, y = _rand(2, 2, *psize, seed=30).requires_grad_(), _rand(2, 2, *tsize, seed=31)
    mask = torch.ones(2, *psize, dtype=torch.float64)
    mask[1, 0, 0] = 0
    kw = dict(patch_size=patch_size, levels=levels, window_size=window_size, sigmas=(0.7, 2.0))
    out = patch_mmd(x, y, mask, target_weight=torch.ones(2, *tsize), max_size=max_size,
                    method=method, num_features=8192, **kw)
    (g,) = torch.autograd.grad(out.sum(), x)
    assert torch.isfinite(out).all() and out[0] > 0  # (sample 1 may keep no patch: its mask)
    assert torch.isfinite(g).all() and g[0].abs().sum() > 0
    if max_size is None:
        ref = ref_windowed_mmd(x, y, mask_x=mask, **kw)
        assert _rel(out, ref) <= (1e-6 if method == "exact" else 0.15)
    if method == "exact" and max_size is None:
        (expected,) = torch.autograd.grad(
            ref_windowed_mmd(x, y, mask_x=mask, differentiable=True, **kw).sum(), x)
        assert torch.allclose(g, expected, rtol=1e-7, atol=1e-14)


def test_small_images_in_half_precision_and_the_module():
    pred = torch.rand(2, 3, 2, 2, dtype=torch.bfloat16, requires_grad=True)
    loss = PatchMMDLoss(patch_size=7, levels=2, window_size=16, normalize="channel_mean")
    out = loss(pred, torch.rand(2, 3, 2, 2, dtype=torch.bfloat16))
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(pred.grad).all()


# ----------------------------------------------------------------------------------------------
# Settings and errors
# ----------------------------------------------------------------------------------------------
def test_settings_are_checked_in_the_spec():
    spec = PatchMMDSpec(patch_size=3, window_size=32)
    assert (spec.window_size, spec.window_stride, spec.normalize) == (32, 16, "none")
    assert PatchMMDSpec(patch_size=1, window_size=1).window_stride == 1
    with pytest.raises(ValueError, match=r"`window_stride`.*`window_size`"):
        PatchMMDSpec(window_stride=4)
    with pytest.raises(ValueError, match=r"`window_size` must be at least `patch_size`=7.*got 5"):
        PatchMMDSpec(window_size=5)
    with pytest.raises(ValueError, match=r"`window_size`.*int >= 1.*0"):
        PatchMMDSpec(patch_size=3, window_size=0)
    with pytest.raises(ValueError, match=r"`window_stride`.*int >= 1.*2.5"):
        PatchMMDSpec(patch_size=3, window_size=8, window_stride=2.5)
    with pytest.raises(ValueError, match=r"`normalize`.*'channel_mean'.*'std'"):
        PatchMMDLoss(normalize="std")
    with pytest.raises(ValueError, match=r"`window_size`=8.*same spatial size.*\(10, 10\).*\(10, 12\)"):
        patch_mmd(torch.rand(1, 3, 10, 10), torch.rand(1, 3, 10, 12), patch_size=3, window_size=8)
    with pytest.raises(TypeError, match=r"unexpected.*window"):
        patch_mmd_loss(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), window=8)
    text = repr(PatchMMDLoss(patch_size=3, window_size=32, normalize="mean"))
    assert "window_size=32, window_stride=16" in text and "normalize='mean'" in text


@pytest.mark.parametrize("normalize", ["none", "channel_mean"])
@pytest.mark.parametrize("method", ["exact", "random_features"])
def test_windows_and_normalisation_with_the_random_cnn_kernel(normalize, method):
    from test_patch_mmd_kernel import _ref_mmd as ref_cnn_mmd  # the dense arc-cosine reference

    x, y = _rand(2, 3, 13, 11, seed=3) - 0.5, _rand(2, 3, 13, 11, seed=4) - 0.5
    mask = _mask(5, 2, 13, 11)
    expected = []
    for n in range(2):
        values = [ref_cnn_mmd(_ref_set(x[n, :, r:r + 8, c:c + 8], mask[n, r:r + 8, c:c + 8], 3, 1, normalize),
                              _ref_set(y[n, :, r:r + 8, c:c + 8], mask[n, r:r + 8, c:c + 8], 3, 1, normalize),
                              3, "biased")
                  for r in _ref_starts(13, 8, 4) for c in _ref_starts(11, 8, 4)]
        values = [v for v, r in zip(values, [(r, c) for r in _ref_starts(13, 8, 4) for c in _ref_starts(11, 8, 4)])
                  if (mask[n, r[0]:r[0] + 8, r[1]:r[1] + 8].unfold(0, 3, 1).unfold(1, 3, 1) != 0)
                  .flatten(2).all(2).any()]
        expected.append(sum(values) / len(values))
    got = patch_mmd(x, y, mask, patch_size=3, kernel="random_cnn", depth=3, window_size=8, window_stride=4,
                    normalize=normalize, method=method, num_features=8192)
    tol = 1e-9 if method == "exact" else 0.1  # the finite network of width 8192 against its limit
    assert _rel(got, torch.stack(expected)) < tol
