"""Tests of the patch-MMD loss against a naive float64 reference written here (unfold + full kernels)."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from photo_ops import gaussian_blur

from randperc_plugins.losses._random_features import (_draw_features, _FeatureMeans, _frequency_groups,
                                                      _orthogonal_gaussian, _phases)
from randperc_plugins.losses.patch_mmd import (AUTO_EXACT_RATIO, PatchMMDLoss, default_sigmas,
                                               extract_patches, patch_mmd, patch_mmd_loss)


# ----------------------------------------------------------------------------------------------
# Naive reference: all patches, full kernel matrices, float64
# ----------------------------------------------------------------------------------------------
def _ref_patches(img, mask, k, stride):
    """img (C, H, W), mask (H, W) or None -> valid patches (L', d)."""
    p = F.unfold(img[None], k, stride=stride)[0].t()
    if mask is None:
        return p
    m = F.unfold(mask[None, None].to(img.dtype), k, stride=stride)[0].t()
    return p[(m != 0).all(1)]


def _ref_kernel(a, b, sigmas, weights):
    d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    return sum(w * torch.exp(-d2 / (2 * s * s)) for s, w in zip(sigmas, weights))


def _ref_mmd_sets(P, Q, sigmas, weights, estimator):
    if len(P) == 0 or len(Q) == 0:
        return P.new_zeros(())
    kpp, kqq, kpq = (_ref_kernel(P, P, sigmas, weights), _ref_kernel(Q, Q, sigmas, weights),
                     _ref_kernel(P, Q, sigmas, weights))
    if estimator == "biased":
        return kpp.mean() + kqq.mean() - 2 * kpq.mean()
    n, m = len(P), len(Q)
    pp = (kpp.sum() - kpp.diagonal().sum()) / (n * (n - 1)) if n > 1 else 0.0
    qq = (kqq.sum() - kqq.diagonal().sum()) / (m * (m - 1)) if m > 1 else 0.0
    return pp + qq - 2 * kpq.mean()


def _ref_pool_mask(mask):
    return (F.avg_pool2d((mask != 0).double()[None, None], 2)[0, 0] == 1).double()


def ref_patch_mmd(x, y, patch_size, stride=1, sigmas=None, sigma_weights=None, estimator="biased",
                  levels=1, level_weights=None, mask_x=None, mask_y=None):
    sigmas = default_sigmas(patch_size) if sigmas is None else sigmas
    weights = sigma_weights or [1.0 / len(sigmas)] * len(sigmas)
    lweights = level_weights or [1.0 / levels] * levels
    x, y = x.detach().double(), y.detach().double()
    out = []
    for n in range(x.shape[0]):
        xi, yi = x[n], y[n]
        mx = None if mask_x is None else mask_x[n].reshape(xi.shape[-2:]).double()
        my = None if mask_y is None else mask_y[n].reshape(yi.shape[-2:]).double()
        total = 0.0
        for level in range(levels):
            if level:
                xi, yi = F.avg_pool2d(xi[None], 2)[0], F.avg_pool2d(yi[None], 2)[0]
                mx = None if mx is None else _ref_pool_mask(mx)
                my = None if my is None else _ref_pool_mask(my)
            P, Q = _ref_patches(xi, mx, patch_size, stride), _ref_patches(yi, my, patch_size, stride)
            total = total + lweights[level] * _ref_mmd_sets(P, Q, sigmas, weights, estimator)
        out.append(torch.as_tensor(total, dtype=torch.float64))
    return torch.stack(out)


def _rand(*shape, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g, dtype=torch.float64).to(dtype)


def _rel(a, b):
    a, b = a.detach().double(), b.detach().double()
    return float(((a - b).abs() / b.abs().clamp_min(1e-30)).max())


# ----------------------------------------------------------------------------------------------
# Exact method against the reference
# ----------------------------------------------------------------------------------------------
CASES = [
    # (estimator, sigmas, stride, levels, masked)
    ("biased", None, 1, 1, False),
    ("unbiased", None, 1, 1, False),
    ("biased", (0.3, 0.8, 2.0), 2, 1, True),
    ("unbiased", (0.3, 0.8, 2.0), 2, 1, True),
    ("biased", (0.5, 1.5), 1, 2, True),
    ("unbiased", (0.5, 1.5), 3, 2, False),
    ("biased", (1.0,), 1, 3, True),
]


def _masks(seed, n, h, w):
    m = (_rand(n, h, w, seed=seed) > 0.1).double()
    m[:, :3, :4] = 0
    return m


@pytest.mark.parametrize("estimator,sigmas,stride,levels,masked", CASES)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-6), (torch.float32, 1e-4)])
def test_exact_matches_reference(estimator, sigmas, stride, levels, masked, dtype, tol):
    x, y = _rand(2, 3, 21, 20, seed=1), 0.7 * _rand(2, 3, 20, 22, seed=2) + 0.1
    mx = _masks(3, 2, 21, 20) if masked else None
    my = _masks(4, 2, 20, 22) if masked else None
    kw = dict(patch_size=3, stride=stride, sigmas=sigmas, estimator=estimator, levels=levels)
    ref = ref_patch_mmd(x, y, mask_x=mx, mask_y=my, **kw)
    out = patch_mmd(x.to(dtype), y.to(dtype), mx, target_weight=my, block_size=37, **kw)
    assert out.shape == (2,) and out.dtype == dtype
    assert _rel(out, ref) <= tol


def test_weights_and_default_patch():
    x, y = _rand(1, 3, 16, 16, seed=5), _rand(1, 3, 16, 16, seed=6) ** 2
    kw = dict(patch_size=7, sigmas=(1.0, 3.0), sigma_weights=(0.2, 1.5), levels=2,
              level_weights=(1.0, 0.25))
    assert _rel(patch_mmd(x, y, **kw), ref_patch_mmd(x, y, **kw)) <= 1e-10


def test_block_size_does_not_change_value_or_gradient():
    x = _rand(2, 2, 13, 13, seed=7).requires_grad_()
    y = _rand(2, 2, 13, 13, seed=8)
    outs, grads = [], []
    for bs in (4, 10, 121, 4096):
        v = patch_mmd(x, y, patch_size=3, estimator="unbiased", block_size=bs)
        (g,) = torch.autograd.grad(v.sum(), x)
        outs.append(v)
        grads.append(g)
    for v, g in zip(outs[1:], grads[1:]):
        assert torch.allclose(v, outs[0], rtol=1e-9, atol=0)
        assert torch.allclose(g, grads[0], rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_gradient_matches_autograd_of_reference(estimator):
    x = _rand(2, 3, 11, 12, seed=9).requires_grad_()
    y = _rand(2, 3, 12, 10, seed=10).requires_grad_()
    mx = _masks(11, 2, 11, 12)

    def ref(x, y):  # differentiable version of the reference
        out = []
        for n in range(2):
            P = _ref_patches(x[n], mx[n], 3, 1)
            Q = _ref_patches(y[n], None, 3, 1)
            out.append(_ref_mmd_sets(P, Q, (0.4, 1.1), (0.5, 0.5), estimator))
        return torch.stack(out)

    w = torch.tensor([0.3, -1.2], dtype=torch.float64)
    gx, gy = torch.autograd.grad((ref(x, y) * w).sum(), (x, y))
    out = patch_mmd(x, y, mx, target_weight=torch.ones(2, 12, 10), patch_size=3, sigmas=(0.4, 1.1),
                    estimator=estimator, block_size=19)
    hx, hy = torch.autograd.grad((out * w).sum(), (x, y))
    assert torch.allclose(hx, gx, rtol=1e-8, atol=1e-14)
    assert torch.allclose(hy, gy, rtol=1e-8, atol=1e-14)
    # one input at a time (the backward pass then skips the other's sums): the same gradients
    for inp, other, expected in ((x, y.detach(), gx), (y, x.detach(), gy)):
        args = (inp, other) if inp is x else (other, inp)
        out = patch_mmd(*args, mx, target_weight=torch.ones(2, 12, 10), patch_size=3,
                        sigmas=(0.4, 1.1), estimator=estimator, block_size=19)
        (h,) = torch.autograd.grad((out * w).sum(), inp)
        assert torch.allclose(h, expected, rtol=1e-8, atol=1e-14)


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_gradcheck_exact(estimator):
    x = _rand(1, 2, 5, 6, seed=12).requires_grad_()
    y = _rand(1, 2, 6, 5, seed=13).requires_grad_()
    mx = torch.ones(1, 5, 6, dtype=torch.float64)
    mx[0, 0, 0] = 0

    def f(a, b):
        return patch_mmd(a, b, mx, target_weight=torch.ones(1, 6, 5), patch_size=3,
                         sigmas=(0.5, 1.0), estimator=estimator, levels=1, block_size=5)

    assert torch.autograd.gradcheck(f, (x, y), fast_mode=True)


def test_identity_symmetry_nonnegativity():
    x, y = _rand(3, 3, 15, 15, seed=14), _rand(3, 3, 15, 15, seed=15)
    assert patch_mmd(x, x.clone(), patch_size=5).abs().max() < 1e-12
    assert torch.allclose(patch_mmd(x, y, patch_size=5), patch_mmd(y, x, patch_size=5), rtol=1e-12)
    assert torch.allclose(patch_mmd(x, y, patch_size=5, estimator="unbiased"),
                          patch_mmd(y, x, patch_size=5, estimator="unbiased"), rtol=1e-12)
    for s in range(5):
        a = _rand(2, 1, 9, 9, seed=100 + s)
        b = a + 1e-3 * _rand(2, 1, 9, 9, seed=200 + s)
        assert (patch_mmd(a, b, patch_size=3, sigmas=(0.05, 0.5, 5.0)) >= 0).all()


# ----------------------------------------------------------------------------------------------
# Half precision
# ----------------------------------------------------------------------------------------------
def _naive_half_gram_mmd(P, Q, sigma):
    """The Gram form |a|^2 + |b|^2 - 2 a.b entirely in the input's (half) precision."""
    def k(a, b):
        d2 = (a * a).sum(-1)[:, None] + (b * b).sum(-1)[None, :] - 2 * a @ b.t()
        return torch.exp(-d2.clamp_min(0) / (2 * sigma * sigma))
    return k(P, P).mean() + k(Q, Q).mean() - 2 * k(P, Q).mean()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs(dtype):
    x = _rand(1, 3, 20, 20, seed=16)
    y = x + 0.02 * _rand(1, 3, 20, 20, seed=17)
    xh, yh = x.to(dtype), y.to(dtype)
    ref = ref_patch_mmd(xh, yh, patch_size=5, sigmas=(2.0,))  # float64 on the rounded inputs
    out = patch_mmd(xh, yh, patch_size=5, sigmas=(2.0,))
    assert out.dtype == torch.float32
    assert _rel(out, ref) <= 1e-3
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out_ac = patch_mmd(xh, yh, patch_size=5, sigmas=(2.0,))
    assert _rel(out_ac, ref) <= 1e-3
    # the naive half-precision Gram form is far off (here by more than 10 %)
    P, _ = extract_patches(xh, 5)
    Q, _ = extract_patches(yh, 5)
    naive = _naive_half_gram_mmd(P[0], Q[0], 2.0).double()
    assert _rel(naive.reshape(1), ref) > 0.1


def test_half_precision_gradient_is_finite():
    x = _rand(1, 3, 12, 12, seed=18).half().requires_grad_()
    y = _rand(1, 3, 12, 12, seed=19).half()
    patch_mmd(x, y, patch_size=3).sum().backward()
    assert x.grad.dtype == torch.float16 and torch.isfinite(x.grad).all()


# ----------------------------------------------------------------------------------------------
# Random features
# ----------------------------------------------------------------------------------------------
def test_random_features_converge_and_are_seeded():
    x = _rand(1, 3, 24, 24, seed=20)
    y = (_rand(1, 3, 24, 24, seed=21) + x) / 2
    kw = dict(patch_size=3, sigmas=(0.5, 1.0))
    exact = patch_mmd(x, y, **kw)
    errs = []
    for d in (256, 1024, 4096):
        e = [_rel(patch_mmd(x, y, method="random_features", num_features=d, seed=s, **kw), exact)
             for s in range(4)]
        errs.append(float(np.mean(e)))
    assert errs[0] > errs[1] > errs[2] and errs[2] < 0.1, errs
    a = patch_mmd(x, y, method="random_features", seed=3, **kw)
    b = patch_mmd(x, y, method="random_features", seed=3, **kw)
    c = patch_mmd(x, y, method="random_features", seed=4, **kw)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_random_features_unbiased_and_gradient():
    x = _rand(1, 2, 16, 16, seed=22).requires_grad_()
    y = _rand(1, 2, 16, 16, seed=23)
    kw = dict(patch_size=3, sigmas=(0.7,), estimator="unbiased")
    exact = patch_mmd(x, y, **kw)
    approx = torch.stack([patch_mmd(x, y, method="random_features", num_features=4096, seed=s, **kw)
                          for s in range(4)]).mean(0)
    assert _rel(approx, exact) < 0.05
    f = lambda a: patch_mmd(a, y, method="random_features", num_features=64, **kw)  # noqa: E731
    xs = _rand(1, 2, 4, 4, seed=24).requires_grad_()
    ys = _rand(1, 2, 4, 4, seed=25)
    assert torch.autograd.gradcheck(
        lambda a: patch_mmd(a, ys, method="random_features", num_features=16, patch_size=2,
                            sigmas=(0.7,)), (xs,))
    f(x).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_feature_pairs_have_the_exact_kernel_diagonal():
    # |z(p)|^2 = sum_s w_s for every p: the cos/sin pair of a frequency has unit norm
    sigmas, weights = (0.5, 2.0, 0.7), (0.3, 0.5, 0.2)
    feats = _draw_features(12, 33, sigmas, weights, torch.Generator().manual_seed(0),
                           torch.device("cpu"), torch.float64)
    assert feats.count == 17 and feats.W.shape == (12, 2 * 17)  # ceil(33 / 2); 0.5 shares 2.0's
    p = _rand(1, 5, 12, seed=40)
    ones = torch.ones(1, 5, dtype=torch.float64)
    z, z_q = _FeatureMeans.apply(p, p.flip(1), ones, ones, feats, 2, False)  # (1, S * 2F), sums
    assert z.shape == (1, 3 * 2 * 17)
    torch.testing.assert_close(z_q, z)  # the same patches in another order
    single = [_FeatureMeans.apply(p[:, i:i + 1], p[:, :2], ones[:, :1], ones[:, :2], feats, 1,
                                  False)[0]
              for i in range(5)]
    assert torch.allclose(sum(single), z)
    norms = torch.stack([s.pow(2).sum() for s in single])
    assert torch.allclose(norms, torch.full_like(norms, sum(weights)), atol=1e-12)
    # the features are cos/sin of the patch times each bandwidth's frequencies, in float64 directly
    for i in range(3):
        g, m, scale = feats.group_index[i], feats.multiples[i, 0], feats.scales[i, 0]
        w = m * feats.W[:, g * 17:(g + 1) * 17]
        t = p[0, 0] @ w
        assert torch.allclose(single[0][0, i * 34:(i + 1) * 34],
                              scale * torch.cat([t.cos(), t.sin()]), atol=1e-12)


def test_bandwidths_in_integer_ratios_share_frequency_directions():
    groups = _frequency_groups(default_sigmas(7))
    assert [(i, m) for i, m in groups[0][1]] == [(0, 1), (1, 2), (2, 4), (3, 10)] and len(groups) == 1
    groups = _frequency_groups((1.0, 0.3, 0.5, 1.0 / 17))
    assert [sorted(m for _, m in members) for _, members in groups] == [[1, 2], [1], [1]]
    # one projection gives every bandwidth's phases: m_s times its group's base frequencies
    sigmas = (1.0, 0.3, 0.5, 1.0 / 17)
    feats = _draw_features(6, 8, sigmas, (0.25,) * 4, torch.Generator().manual_seed(2),
                           torch.device("cpu"), torch.float64)
    p = _rand(2, 5, 6, seed=41)
    t = _phases(p, feats)
    assert t.shape == (2, 5, 4, 4) and feats.groups == 3
    for i, sigma in enumerate(sigmas):
        g, m = int(feats.group_index[i]), float(feats.multiples[i, 0])
        base = sigma * m  # the group's widest bandwidth
        assert any(abs(base - b) < 1e-9 for b, _ in groups)
        torch.testing.assert_close(t[:, :, i], m * (p @ feats.W[:, g * 4:(g + 1) * 4]))


def test_orthogonal_frequencies_are_gaussian_and_lower_the_variance():
    d = 27
    W = _orthogonal_gaussian(d, 2 * d + 5, torch.Generator().manual_seed(1)).double()
    for s in (slice(0, d), slice(d, 2 * d)):  # orthogonal within each block of d
        gram = W[:, s].t() @ W[:, s]
        assert torch.allclose(gram - torch.diag(gram.diagonal()), torch.zeros_like(gram), atol=1e-4)
    # marginally N(0, I): many draws have the moments of a standard Gaussian (4 standard errors)
    cols = torch.stack([_orthogonal_gaussian(d, 2, torch.Generator().manual_seed(s))
                        for s in range(400)]).double()  # 21600 values
    assert abs(cols.mean()) < 0.03 and abs(cols.var() - 1) < 0.04
    assert abs(cols.pow(4).mean() - 3) < 0.25
    # the estimate's spread over draws is smaller than with i.i.d. frequencies (smooth images,
    # like natural ones; on white noise the two are alike)
    x = gaussian_blur(_rand(1, 3, 20, 20, seed=41), 1.5)
    y = gaussian_blur(x, 1.0)
    kw = dict(patch_size=3, sigmas=(2.0,))
    exact = patch_mmd(x, y, **kw)
    P, _ = extract_patches(x, 3)
    Q, _ = extract_patches(y, 3)
    orf, iid = [], []
    for seed in range(24):
        orf.append(float(patch_mmd(x, y, method="random_features", num_features=2 * d, seed=seed,
                                   **kw)))
        w = torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) / 2.0
        up, uq = P[0] @ w, Q[0] @ w
        diff = ((up.cos().mean(0) - uq.cos().mean(0)) ** 2 + (up.sin().mean(0) - uq.sin().mean(0)) ** 2)
        iid.append(float(diff.mean()))
    assert abs(np.mean(iid) / float(exact) - 1) < 0.2  # the naive i.i.d. estimate is right on average
    assert np.std(orf) < 0.7 * np.std(iid), (np.std(orf), np.std(iid))


def test_global_rng_untouched_and_redraw():
    x, y = _rand(1, 3, 20, 20, seed=26), _rand(1, 3, 20, 20, seed=27)
    state = torch.get_rng_state()
    kw = dict(patch_size=3, method="random_features", num_features=64)
    a = patch_mmd(x, y, **kw)
    r1 = patch_mmd(x, y, redraw=True, seed=123, **kw)
    r2 = patch_mmd(x, y, redraw=True, seed=123, **kw)
    s1 = patch_mmd(x, y, patch_size=3, max_patches=50)
    s2 = patch_mmd(x, y, patch_size=3, max_patches=50, redraw=True)
    loss = PatchMMDLoss(patch_size=3, method="random_features", num_features=64, redraw=True)
    l1, l2 = loss(x, y), loss(x, y)
    assert torch.equal(torch.get_rng_state(), state)
    assert not torch.equal(r1, r2) and not torch.equal(l1, l2)
    assert torch.equal(a, patch_mmd(x, y, **kw))
    assert torch.equal(s1, patch_mmd(x, y, patch_size=3, max_patches=50))
    assert s2.shape == s1.shape
    # with redraw, the module's own generator makes two fresh modules agree (same on every rank)
    m1 = PatchMMDLoss(patch_size=3, method="random_features", num_features=64, redraw=True, seed=5)
    m2 = PatchMMDLoss(patch_size=3, method="random_features", num_features=64, redraw=True, seed=5)
    assert torch.equal(m1(x, y), m2(x, y)) and torch.equal(m1(x, y), m2(x, y))


def test_max_patches_subset():
    x, y = _rand(2, 3, 30, 30, seed=28), _rand(2, 3, 30, 30, seed=29) ** 2
    sub = patch_mmd(x, y, patch_size=3, max_patches=300, estimator="unbiased")
    full = patch_mmd(x, y, patch_size=3, estimator="unbiased")
    assert patch_mmd(x, x, patch_size=3, max_patches=300).abs().max() < 1e-12
    assert _rel(sub, full) < 0.2  # a random subset of the patches estimates the same MMD
    assert not torch.equal(sub, full)


def test_auto_rule():
    x, y = _rand(1, 3, 20, 20, seed=30), _rand(1, 3, 20, 20, seed=31)
    n = 18 * 18  # patches of a 20x20 image with 3x3 patches
    small = dict(patch_size=3, sigmas=(1.0,), num_features=math.ceil(n / AUTO_EXACT_RATIO))
    assert torch.equal(patch_mmd(x, y, method="auto", **small), patch_mmd(x, y, **small))
    large = dict(patch_size=3, sigmas=(1.0,), num_features=math.floor((n - 1) / AUTO_EXACT_RATIO))
    assert torch.equal(patch_mmd(x, y, method="auto", **large),
                       patch_mmd(x, y, method="random_features", **large))


# ----------------------------------------------------------------------------------------------
# Masks
# ----------------------------------------------------------------------------------------------
def test_masked_patches_are_left_out():
    x, y = _rand(1, 1, 12, 12, seed=32), _rand(1, 1, 12, 12, seed=33)
    mask = torch.ones(1, 1, 12, 12)
    mask[..., 6:, :] = 0  # the bottom half is ignored
    # only patches fully inside the top half count: the same as cropping the top half
    out = patch_mmd(x, y, patch_size=3, weight=mask)
    crop = patch_mmd(x[..., :6, :], y[..., :6, :], patch_size=3)
    assert torch.allclose(out, crop, rtol=1e-12)
    # what the masked pixels hold does not matter, and they get no gradient
    x2 = x.clone()
    x2[..., 8:, :] = 5.0
    x2.requires_grad_()
    out2 = patch_mmd(x2, y, patch_size=3, weight=mask)
    out2.sum().backward()
    assert torch.allclose(out2, out, rtol=1e-12)
    assert x2.grad[..., 6:, :].abs().max() == 0


@pytest.mark.parametrize("method", ["exact", "random_features"])
@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_fully_masked_sample_gives_zero_with_gradient(method, estimator):
    x = _rand(2, 3, 10, 10, seed=34).requires_grad_()
    y = _rand(2, 3, 10, 10, seed=35)
    mask = torch.ones(2, 10, 10)
    mask[0] = 0
    mask[1, 0, 0] = 0
    out = patch_mmd(x, y, patch_size=3, weight=mask, method=method, estimator=estimator)
    assert out[0] == 0 and out[1] != 0 and torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad[0].abs().max() == 0
    loss = PatchMMDLoss(patch_size=3, method=method, estimator=estimator, reduction="none")
    x.grad = None
    lo = loss(x, y, weight=mask)
    lo.sum().backward()
    assert lo[0] == 0 and torch.isfinite(x.grad).all()


def test_unbiased_with_one_valid_patch_is_defined():
    x, y = _rand(1, 1, 5, 5, seed=36), _rand(1, 1, 5, 5, seed=37)
    mask = torch.zeros(1, 5, 5)
    mask[0, :3, :3] = 1  # exactly one valid 3x3 patch
    out = patch_mmd(x, y, mask, target_weight=torch.ones(1, 5, 5), patch_size=3, estimator="unbiased")
    ref = ref_patch_mmd(x, y, 3, mask_x=mask, estimator="unbiased")
    assert torch.isfinite(out).all() and _rel(out, ref) <= 1e-10


# ----------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------
def test_errors_name_argument_and_sizes():
    # (images smaller than a patch are padded: tests/losses/test_patch_mmd_windows.py)
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match=r"channels.*3.*1"):
        patch_mmd(x, torch.rand(1, 1, 8, 8), patch_size=3)
    with pytest.raises(TypeError, match=r"`pred`.*floating.*torch.int64"):
        patch_mmd(torch.ones(1, 3, 8, 8, dtype=torch.long), x, patch_size=3)
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"`target`.*NaN"):
        patch_mmd(x, bad, patch_size=3)
    bad[0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"`pred`.*Inf"):
        patch_mmd(bad, x, patch_size=3)
    with pytest.raises(ValueError, match=r"`estimator`"):
        patch_mmd(x, x, patch_size=3, estimator="u")
    with pytest.raises(ValueError, match=r"`method`"):
        patch_mmd(x, x, patch_size=3, method="dense")
    with pytest.raises(ValueError, match=r"`precision`.*'fp32', 'tf32', 'bf16'.*'fp16'"):
        PatchMMDLoss(patch_size=3, precision="fp16")
    with pytest.raises(ValueError, match=r"`block_size`"):
        patch_mmd(x, x, patch_size=3, block_size=0)
    with pytest.raises(ValueError, match=r"`sigma_weights`.*2"):
        patch_mmd(x, x, patch_size=3, sigmas=(1.0, 2.0), sigma_weights=(1.0,))
    with pytest.raises(ValueError, match=r"`sigmas`"):
        patch_mmd(x, x, patch_size=3, sigmas=(1.0, -2.0))
    with pytest.raises(ValueError, match=r"`weight`.*\(1, 8, 8\)"):
        patch_mmd(x, x, torch.ones(1, 7, 8), patch_size=3)
    with pytest.raises(ValueError, match=r"`target_weight`.*\(1, 8, 8\)"):
        patch_mmd(x, x, target_weight=torch.ones(1, 7, 8), patch_size=3)
    with pytest.raises(ValueError, match=r"`weight`.*negative"):
        patch_mmd(x, x, -torch.ones(1, 8, 8), patch_size=3)
    with pytest.raises(TypeError, match=r"positional"):
        patch_mmd(x, x, None, 3)  # everything after the tensors is keyword-only
    with pytest.raises(TypeError, match=r"positional"):
        PatchMMDLoss(3)
    with pytest.raises(ValueError, match=r"`patch_size`"):
        patch_mmd(x, x, patch_size=0)
    with pytest.raises(ValueError, match=r"`reduction`"):
        PatchMMDLoss(reduction="avg")


# ----------------------------------------------------------------------------------------------
# Module
# ----------------------------------------------------------------------------------------------
def test_module():
    pred = _rand(2, 3, 14, 14, seed=38, dtype=torch.float32).requires_grad_()
    target = _rand(2, 3, 14, 14, seed=39, dtype=torch.float32)
    loss = PatchMMDLoss(patch_size=3, loss_weight=2.0, reduction="none", squared=True)
    assert len(loss.state_dict()) == 0 and len(list(loss.parameters())) == 0
    per = loss(pred, target)
    assert per.shape == (2,)
    assert torch.allclose(per, 2.0 * patch_mmd(pred, target, patch_size=3))
    root = PatchMMDLoss(patch_size=3)(pred, target)
    assert torch.allclose(root, patch_mmd(pred, target, patch_size=3).sqrt().mean())
    assert PatchMMDLoss(patch_size=3, reduction="sum")(pred, target).shape == ()
    # the MMD (not squared) has a finite gradient at pred == target (0 up to rounding)
    t64 = target.double()
    same = t64.clone().requires_grad_()
    out = PatchMMDLoss(patch_size=3)(same, t64)
    out.backward()
    assert out < 1e-6 and torch.isfinite(same.grad).all() and same.grad.abs().max() < 1e-3
    zero = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    from randperc_plugins.losses.patch_mmd import _SafeSqrt
    _SafeSqrt.apply(zero).sum().backward()
    assert torch.equal(zero.grad, torch.zeros(3, dtype=torch.float64))
    # `weight` masks pred and target alike
    w = torch.ones(2, 14, 14)
    w[:, 7:] = 0
    masked = PatchMMDLoss(patch_size=3, reduction="none", squared=True)(pred, target, weight=w)
    assert torch.allclose(masked, patch_mmd(pred[..., :7, :], target[..., :7, :], patch_size=3))
    assert "patch_size=3" in repr(loss)


def test_default_sigmas():
    assert default_sigmas(7) == (4.9, 2.45, 1.225, 0.49)
    assert PatchMMDLoss().spec.sigmas == default_sigmas(7)


# ----------------------------------------------------------------------------------------------
# Property from the paper, on a real textured photograph
# ----------------------------------------------------------------------------------------------
def test_translation_is_closer_than_blur_or_noise_of_same_l2():
    skimage_data = pytest.importorskip("skimage.data")
    img = torch.from_numpy(skimage_data.brick().astype(np.float64) / 255.0)[None, None]
    r0, c0, s = 100, 100, 48
    x = img[..., r0:r0 + s, c0:c0 + s]
    shifted = img[..., r0:r0 + s, c0 + 1:c0 + 1 + s]  # the same texture, translated by one pixel
    l2 = float((shifted - x).norm())
    lo, hi = 0.05, 5.0  # blur whose L2 distance matches the translation's (bisection on sigma)
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if float((gaussian_blur(x, mid) - x).norm()) < l2 else (lo, mid)
    blurred = gaussian_blur(x, (lo + hi) / 2)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0), dtype=x.dtype)
    noisy = x + noise * (l2 / float(noise.norm()))
    assert abs(float((blurred - x).norm()) / l2 - 1) < 0.01
    d_shift, d_blur, d_noise = (float(patch_mmd(x.float(), z.float())) for z in (shifted, blurred, noisy))
    assert d_shift < 0.05 * min(d_blur, d_noise), (d_shift, d_blur, d_noise)


@pytest.mark.parametrize("method", ["exact", "random_features"])
def test_autograd_keeps_no_quadratic_tensor(method):
    """What the backward pass keeps is linear in the number of patches (no kernel matrix)."""
    saved = []

    def pack(t):
        saved.append(t.numel())
        return t

    x = _rand(1, 1, 42, 42, seed=40, dtype=torch.float32).requires_grad_()
    y = _rand(1, 1, 42, 42, seed=41, dtype=torch.float32)
    n = 40 * 40  # patches per image
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = patch_mmd(x, y, patch_size=3, method=method, num_features=64, block_size=256)
    out.sum().backward()
    assert max(saved) <= n * 9 and sum(saved) < 20 * n * 9  # no n x n (2.56M) tensor is kept


# ---------------------------------------------------------------------------------------------
# max_size: the loss at reduced resolution (for large segmentation maps)
# ---------------------------------------------------------------------------------------------
def test_max_size_equals_the_loss_of_area_resized_inputs():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 2, 24, 36, generator=g, dtype=torch.float64)
    y = torch.rand(2, 2, 24, 36, generator=g, dtype=torch.float64)
    got = patch_mmd(x, y, patch_size=3, max_size=12)
    small = lambda t: torch.nn.functional.interpolate(t, size=(8, 12), mode="area")  # noqa: E731
    torch.testing.assert_close(got, patch_mmd(small(x), small(y), patch_size=3))
    torch.testing.assert_close(patch_mmd(x, y, patch_size=3, max_size=36), patch_mmd(x, y, patch_size=3))


def test_max_size_keeps_masked_pixels_out_of_the_gradient():
    g = torch.Generator().manual_seed(4)
    x = torch.rand(1, 3, 32, 32, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.rand(1, 3, 32, 32, generator=g, dtype=torch.float64)
    mask = torch.ones(1, 32, 32, dtype=torch.float64)
    mask[:, 5:13, 7:20] = 0
    patch_mmd(x, y, patch_size=3, max_size=16, weight=mask).sum().backward()
    assert torch.count_nonzero(x.grad[:, :, 5:13, 7:20]) == 0
    assert torch.count_nonzero(x.grad) > 0


def test_max_size_smaller_than_a_patch_pads_to_one_patch():
    # resized to 5x5, then replicate-padded to one 7x7 patch: the same as padding a 5x5 image
    x, y = torch.rand(1, 1, 40, 40, dtype=torch.float64), torch.rand(1, 1, 40, 40, dtype=torch.float64)
    small = [F.interpolate(t, size=(5, 5), mode="area") for t in (x, y)]
    padded = [F.pad(t, (0, 2, 0, 2), mode="replicate") for t in small]
    out = patch_mmd(x, y, patch_size=7, max_size=5)
    assert torch.isfinite(out).all() and out > 0
    assert torch.allclose(out, patch_mmd(*padded, patch_size=7), rtol=1e-12)


# ----------------------------------------------------------------------------------------------
# Breakdown per level and bandwidth
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_terms_per_level_and_bandwidth_sum_to_the_total(estimator):
    x, y = _rand(2, 2, 16, 16, seed=60), _rand(2, 2, 16, 16, seed=61)
    mask = torch.ones(2, 16, 16)
    mask[:, :2] = 0
    kw = dict(patch_size=3, sigmas=(0.5, 1.0, 2.0), sigma_weights=(0.2, 0.3, 0.5), levels=2,
              level_weights=(0.7, 0.3), estimator=estimator)
    total, terms = patch_mmd(x, y, mask, return_terms=True, **kw)
    assert sorted(terms) == [(lv, s) for lv in (0, 1) for s in (0.5, 1.0, 2.0)]
    torch.testing.assert_close(total, patch_mmd(x, y, mask, **kw), rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(sum(terms.values()), total, rtol=1e-12, atol=1e-15)
    # each term is that bandwidth alone at that level, with its weights (an independent call)
    for (level, sigma), value in terms.items():
        alone = patch_mmd(x, y, mask, **{**kw, "sigmas": (sigma,),
                                         "sigma_weights": (kw["sigma_weights"][kw["sigmas"].index(sigma)],),
                                         "level_weights": tuple(w if i == level else 0.0 for i, w in
                                                                enumerate(kw["level_weights"]))})
        torch.testing.assert_close(value, alone, rtol=1e-10, atol=1e-15)


def test_terms_of_random_features_and_of_the_loss_forms():
    x, y = _rand(2, 2, 16, 16, seed=62), _rand(2, 2, 16, 16, seed=63)
    kw = dict(patch_size=3, method="random_features", num_features=64)
    total, terms = patch_mmd(x, y, return_terms=True, **kw)
    torch.testing.assert_close(total, patch_mmd(x, y, **kw), rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(sum(terms.values()), total, rtol=1e-12, atol=1e-15)
    assert len(terms) == 4
    loss, lterms = patch_mmd_loss(x, y, squared=True, loss_weight=3.0, reduction="sum",
                                  return_terms=True, **kw)
    torch.testing.assert_close(loss, 3.0 * total.sum())
    torch.testing.assert_close(sum(lterms.values()), loss)
    module = PatchMMDLoss(squared=True, loss_weight=2.0, **kw)
    mloss, mterms = module(x, y, return_terms=True)
    torch.testing.assert_close(mloss, 2.0 * total.mean())
    torch.testing.assert_close(sum(mterms.values()), mloss)
    with pytest.raises(ValueError, match="`return_terms`.*`squared=True`"):
        PatchMMDLoss(patch_size=3)(x, y, return_terms=True)


def test_module_takes_target_weight_like_the_function():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.rand(2, 3, 12, 12, generator=g), torch.rand(2, 3, 12, 12, generator=g)
    weight = (torch.rand(2, 1, 12, 12, generator=g) > 0.3).float()
    target_weight = (torch.rand(2, 1, 12, 12, generator=g) > 0.5).float()
    module = PatchMMDLoss(patch_size=3, method="exact", squared=True, reduction="none")
    got = module(pred, target, weight, target_weight=target_weight)
    expected = patch_mmd_loss(pred, target, weight, patch_size=3, method="exact", squared=True,
                              reduction="none", target_weight=target_weight)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert not torch.allclose(got, module(pred, target, weight))  # the target's own mask is used


def test_module_signature_names_every_setting_of_the_function():
    import inspect

    from randperc_plugins.losses import patch_mmd
    module = set(inspect.signature(PatchMMDLoss).parameters)
    function = set(inspect.signature(patch_mmd_loss).parameters) | set(inspect.signature(patch_mmd).parameters)
    # the module takes the settings; the call takes the tensors and the per-call switches
    per_call = {"pred", "target", "weight", "target_weight", "return_terms", "generator", "settings"}
    assert function - per_call <= module, sorted(function - per_call - module)
    with pytest.raises(TypeError, match="patch_sise"):
        PatchMMDLoss(patch_sise=3)
