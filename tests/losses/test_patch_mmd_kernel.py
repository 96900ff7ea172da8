"""Patch-MMD with ``kernel='random_cnn'``: the kernel of an infinitely wide random ReLU CNN.

Checked against a naive float64 reference written here (the network's covariance recursion, dense
kernel matrices), by gradcheck, and against the theorem itself: the perceptual distance of finite
random CNNs built here from ``torch.nn.Conv2d`` converges to the exact MMD² as they widen.
"""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from test_patch_mmd import _masks, _rand, _ref_patches, _rel  # patch sets and inputs, as there

from randperc_plugins.losses import PatchMMDLoss, PatchMMDSpec, patch_mmd, patch_mmd_loss
from randperc_plugins.losses._kernel_sums import _BlockedKernelSums
from randperc_plugins.losses.patch_mmd import AUTO_RANDOM_CNN_LAYER_COST, AUTO_RANDOM_CNN_RATIO
from randperc_plugins.losses._patch_kernels import ArcCosineKernel


# ----------------------------------------------------------------------------------------------
# Naive reference (float64): the covariance recursion of a random ReLU network
# ----------------------------------------------------------------------------------------------
def _ref_kernel(P, Q, depth):
    """Dense ``K (|P|, |Q|)``. Layer 1's pre-activations of p, q have covariance ``S = 2 p.q / d``
    (Kaiming); a ReLU layer maps it to ``E[relu(u) relu(v)] = sqrt(S_pp S_qq) (sin t + (pi - t) cos
    t) / (2 pi)`` with ``t`` the angle, and the next layer's covariance is twice that; ``K`` is the
    last expectation (features divided by sqrt(width))."""
    d = P.shape[1]
    same = P is Q  # the diagonal, K(p, p) = |p|^2 / d, set apart: arccos has no derivative at 1
    eye = torch.eye(len(P), dtype=torch.bool) if same else None
    s_pq = 2 * P @ Q.t() / d
    if same:
        s_pq = torch.where(eye, torch.zeros_like(s_pq), s_pq)
    s_pp = (2 * (P * P).sum(1) / d)[:, None].expand_as(s_pq)
    s_qq = (2 * (Q * Q).sum(1) / d)[None, :].expand_as(s_pq)
    for _ in range(depth):
        scale = torch.sqrt(s_pp * s_qq)
        cos = torch.where(scale > 0, s_pq / torch.where(scale > 0, scale, torch.ones_like(scale)),
                          torch.zeros_like(scale)).clamp(-1, 1)
        t = torch.arccos(cos)
        expectation = scale * (torch.sin(t) + (math.pi - t) * torch.cos(t)) / (2 * math.pi)
        s_pq = 2 * expectation
    if same:  # sin 0 + pi cos 0 = pi: the variance 2 |p|^2 / d goes through every layer unchanged
        s_pq = torch.where(eye, s_pp, s_pq)
    return s_pq / 2


def _ref_mmd(P, Q, depth, estimator):
    """MMD² of two patch sets from the dense kernel matrices (V- or U-statistic)."""
    kpp, kqq, kpq = _ref_kernel(P, P, depth), _ref_kernel(Q, Q, depth), _ref_kernel(P, Q, depth)
    if estimator == "biased":
        return kpp.mean() + kqq.mean() - 2 * kpq.mean()
    n_p, n_q = len(P), len(Q)
    return ((kpp.sum() - kpp.diagonal().sum()) / (n_p * (n_p - 1))
            + (kqq.sum() - kqq.diagonal().sum()) / (n_q * (n_q - 1)) - 2 * kpq.mean())


def ref_patch_mmd(x, y, patch_size, depth, estimator="biased", levels=1, level_weights=None,
                  mask_x=None, mask_y=None):
    lweights = level_weights or [1.0 / levels] * levels
    x, y = x.detach().double(), y.detach().double()
    out = []
    for n in range(x.shape[0]):
        xi, yi = x[n], y[n]
        mx = None if mask_x is None else mask_x[n].double()
        my = None if mask_y is None else mask_y[n].double()
        total = 0.0
        for level in range(levels):
            if level:
                xi, yi = F.avg_pool2d(xi[None], 2)[0], F.avg_pool2d(yi[None], 2)[0]
                mx = None if mx is None else (F.avg_pool2d(mx[None, None], 2)[0, 0] == 1).double()
                my = None if my is None else (F.avg_pool2d(my[None, None], 2)[0, 0] == 1).double()
            P, Q = _ref_patches(xi, mx, patch_size, 1), _ref_patches(yi, my, patch_size, 1)
            total = total + lweights[level] * _ref_mmd(P, Q, depth, estimator)
        out.append(torch.as_tensor(total, dtype=torch.float64))
    return torch.stack(out)


def test_reference_kernel_is_the_closed_form():
    # the recursion above against the closed form of the brief, on a few vectors (and a zero one)
    P = torch.cat([_rand(5, 7, seed=1) - 0.5, torch.zeros(1, 7, dtype=torch.float64)])
    Q = _rand(4, 7, seed=2) - 0.3
    for depth in (1, 3):
        K = _ref_kernel(P, Q, depth)
        n_p, n_q = P.norm(dim=1), Q.norm(dim=1)
        c = ((P @ Q.t()) / (n_p[:, None] * n_q[None, :]).clamp_min(1e-300)).clamp(-1, 1)
        for _ in range(depth):
            c = (torch.sqrt(1 - c * c) + (math.pi - torch.arccos(c)) * c) / math.pi
        torch.testing.assert_close(K, n_p[:, None] * n_q[None, :] * c / 7, rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(_ref_kernel(P, P, depth).diagonal(), n_p ** 2 / 7)


# ----------------------------------------------------------------------------------------------
# Exact method against the reference
# ----------------------------------------------------------------------------------------------
CASES = [  # (estimator, depth, levels, masked, centred)
    ("biased", 7, 1, False, False),
    ("biased", 1, 1, True, True),
    ("unbiased", 3, 1, True, True),
    ("unbiased", 7, 2, False, False),
    ("biased", 2, 2, False, True),
]


@pytest.mark.parametrize("estimator,depth,levels,masked,centred", CASES)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-9), (torch.float32, 2e-4)])
def test_exact_matches_reference(estimator, depth, levels, masked, centred, dtype, tol):
    x, y = _rand(2, 3, 13, 12, seed=1), 0.7 * _rand(2, 3, 12, 14, seed=2) ** 2 + 0.1
    if centred:
        x, y = x - 0.5, y - 0.4
    mx = _masks(3, 2, 13, 12) if masked else None
    my = _masks(4, 2, 12, 14) if masked else None
    kw = dict(patch_size=3, depth=depth, estimator=estimator, levels=levels)
    ref = ref_patch_mmd(x, y, mask_x=mx, mask_y=my, **kw)
    out = patch_mmd(x.to(dtype), y.to(dtype), mx, target_weight=my, kernel="random_cnn",
                    block_size=37, **kw)
    assert out.shape == (2,) and out.dtype == dtype
    assert _rel(out, ref) <= tol


def test_default_depth_level_weights_and_identity():
    x, y = _rand(1, 3, 14, 14, seed=5), _rand(1, 3, 14, 14, seed=6) ** 2
    assert PatchMMDSpec(kernel="random_cnn").depth == 7
    kw = dict(patch_size=5, levels=2, level_weights=(1.0, 0.25))
    out = patch_mmd(x, y, kernel="random_cnn", **kw)
    assert _rel(out, ref_patch_mmd(x, y, depth=7, **kw)) <= 1e-10
    assert patch_mmd(x, x.clone(), kernel="random_cnn", patch_size=5).abs().max() < 1e-15
    torch.testing.assert_close(patch_mmd(y, x, kernel="random_cnn", patch_size=5),
                               patch_mmd(x, y, kernel="random_cnn", patch_size=5), rtol=1e-12, atol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs(dtype):
    x = _rand(1, 3, 16, 16, seed=16) - 0.5
    y = x + 0.05 * _rand(1, 3, 16, 16, seed=17)
    xh, yh = x.to(dtype), y.to(dtype)
    ref = ref_patch_mmd(xh, yh, patch_size=3, depth=3)  # float64 on the rounded inputs
    out = patch_mmd(xh, yh, patch_size=3, kernel="random_cnn", depth=3)
    assert out.dtype == torch.float32 and _rel(out, ref) <= 1e-3
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert _rel(patch_mmd(xh, yh, patch_size=3, kernel="random_cnn", depth=3), ref) <= 1e-3
    xg = xh.clone().requires_grad_()
    patch_mmd(xg, yh, patch_size=3, kernel="random_cnn").sum().backward()
    assert xg.grad.dtype == dtype and torch.isfinite(xg.grad).all() and xg.grad.abs().max() > 0


# ----------------------------------------------------------------------------------------------
# Gradients
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_gradient_matches_autograd_of_reference(estimator):
    x = (_rand(2, 2, 9, 10, seed=9) - 0.5).requires_grad_()
    y = _rand(2, 2, 10, 8, seed=10).requires_grad_()
    mx = _masks(11, 2, 9, 10)

    def ref(x, y):  # the reference is differentiable (no zero patch here)
        out = []
        for n in range(2):
            P, Q = _ref_patches(x[n], mx[n], 3, 1), _ref_patches(y[n], None, 3, 1)
            out.append(_ref_mmd(P, Q, 3, estimator))
        return torch.stack(out)

    w = torch.tensor([0.3, -1.2], dtype=torch.float64)
    gx, gy = torch.autograd.grad((ref(x, y) * w).sum(), (x, y))
    out = patch_mmd(x, y, mx, target_weight=torch.ones(2, 10, 8), patch_size=3, kernel="random_cnn",
                    depth=3, estimator=estimator, block_size=13)
    hx, hy = torch.autograd.grad((out * w).sum(), (x, y))
    torch.testing.assert_close(hx, gx, rtol=1e-7, atol=1e-12)
    torch.testing.assert_close(hy, gy, rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize("depth", [1, 4])
def test_gradcheck_blocked_function_rows_and_columns(depth):
    # block size 4 splits 7 and 5 patches unevenly; a zero patch sits among them
    P = (_rand(2, 7, 5, seed=12) - 0.4).requires_grad_()
    Q = (_rand(2, 5, 5, seed=13) - 0.6).requires_grad_()
    a = (_rand(2, 7, seed=14) > 0.2).double()
    b = torch.ones(2, 5, dtype=torch.float64)
    kernel = ArcCosineKernel(depth, 5)
    assert torch.autograd.gradcheck(lambda p, q: _BlockedKernelSums.apply(p, q, a, b, kernel, 4),
                                    (P, Q))
    # the sums themselves against the dense reference
    s = _BlockedKernelSums.apply(P, Q, a, b, kernel, 4)
    for n in range(2):
        want = [a[n] @ _ref_kernel(P[n], P[n], depth) @ a[n], b[n] @ _ref_kernel(Q[n], Q[n], depth) @ b[n],
                a[n] @ _ref_kernel(P[n], Q[n], depth) @ b[n]]
        torch.testing.assert_close(s[n], torch.stack(want).detach(), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("method", ["exact", "random_features"])
@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_black_region_gives_finite_values_and_gradients(method, estimator):
    x = _rand(2, 3, 10, 10, seed=20)
    x[:, :, 2:7, 3:8] = 0  # zero patches: inverse norm 0
    x.requires_grad_()
    y = _rand(2, 3, 10, 10, seed=21)
    out = patch_mmd(x, y, patch_size=3, kernel="random_cnn", method=method, estimator=estimator,
                    num_features=64)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all() and x.grad.abs().max() > 0
    if method == "exact":
        assert _rel(out, ref_patch_mmd(x, y, 3, 7, estimator=estimator)) <= 1e-9
    black = torch.zeros(1, 3, 8, 8, requires_grad=True)
    out = patch_mmd(black, torch.zeros(1, 3, 8, 8), patch_size=3, kernel="random_cnn",
                    method=method, estimator=estimator)
    out.sum().backward()
    assert out.abs().max() == 0 and torch.isfinite(black.grad).all()


# ----------------------------------------------------------------------------------------------
# The theorem: finite random CNNs (torch.nn.Conv2d) converge to the exact MMD² as they widen
# ----------------------------------------------------------------------------------------------
def _random_cnn(in_channels, width, depth, generator):
    """3x3 conv to ``width``, ``depth - 1`` 1x1 convs, ReLU after each, Kaiming-normal weights (std
    sqrt(2 / fan_in)), no bias; nothing of the package."""
    layers, cin = [], in_channels
    for i in range(depth):
        k = 3 if i == 0 else 1
        conv = torch.nn.utils.skip_init(torch.nn.Conv2d, cin, width, k, bias=False)
        with torch.no_grad():
            conv.weight.normal_(0.0, math.sqrt(2.0 / (cin * k * k)), generator=generator)
        layers += [conv, torch.nn.ReLU()]
        cin = width
    return torch.nn.Sequential(*layers)


def _perceptual_distance(x, y, width, depth, seed):
    """``|mean phi(x) - mean phi(y)|^2 / width``: no padding, so the outputs are the patches."""
    net = _random_cnn(x.shape[1], width, depth, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        f = net(torch.cat([x, y])).mean((2, 3)).double()
    fx, fy = f[:len(x)], f[len(x):]
    return ((fx - fy) ** 2).sum(1) / width


WIDTHS = (256, 1024, 4096, 8192)


def test_finite_random_cnns_converge_to_the_exact_mmd():
    # 4 pairs of small centred images (the kernel is not translation invariant: centred patches
    # spread their angles and make the composition of h matter), depth 2 (a 3x3 and a 1x1 layer:
    # the widest 1x1 layer has 67M weights, what the test can afford)
    depth, seeds = 2, 3
    x = _rand(4, 3, 9, 9, seed=30) - 0.5
    y = (_rand(4, 3, 9, 9, seed=31) ** 2 - 0.3).float()
    x = x.float()
    exact = patch_mmd(x.double(), y.double(), patch_size=3, kernel="random_cnn", depth=depth)
    errors = []
    for width in WIDTHS:
        rel = [(_perceptual_distance(x, y, width, depth, s) - exact).abs() / exact for s in range(seeds)]
        errors.append(float(torch.stack(rel).mean()))
    slope = np.polyfit(np.log(WIDTHS), np.log(errors), 1)[0]
    # Monte-Carlo error of an average of `width` products: 1/sqrt(width), slope -1/2; with 12
    # samples per width the fitted slope scatters by about 0.15, so [-0.85, -0.25] fails only for a
    # rate that is not 1/sqrt(width) (a wrong kernel levels off: slope near 0)
    assert -0.85 < slope < -0.25, (errors, slope)
    # at 8192 the relative error is a few per cent (1/sqrt(8192) = 1.1 % times the spread of the
    # products); 6 % is three times what the fit predicts, and a kernel with one composition of h
    # fewer is 40 % off on these images
    assert errors[-1] < 0.06, errors
    wrong = patch_mmd(x.double(), y.double(), patch_size=3, kernel="random_cnn", depth=depth - 1)
    assert _rel(wrong, exact) > 0.2


# ----------------------------------------------------------------------------------------------
# Random features: the finite network itself
# ----------------------------------------------------------------------------------------------
def test_random_features_converge_to_exact_and_are_seeded():
    x = _rand(1, 3, 14, 14, seed=40) - 0.5
    y = (_rand(1, 3, 14, 14, seed=41) - 0.5) ** 3 * 4
    kw = dict(patch_size=3, kernel="random_cnn", depth=2)
    exact = patch_mmd(x, y, **kw)
    errors = []
    for width in (16, 256, 4096):  # the error should fall 4-fold at each step
        errors.append(np.mean([_rel(patch_mmd(x, y, method="random_features", num_features=width,
                                              seed=s, **kw), exact) for s in range(4)]))
    assert errors[0] > 2 * errors[1] > 4 * errors[2] and errors[2] < 0.05, errors
    a = patch_mmd(x, y, method="random_features", num_features=64, seed=3, **kw)
    assert torch.equal(a, patch_mmd(x, y, method="random_features", num_features=64, seed=3, **kw))
    assert not torch.equal(a, patch_mmd(x, y, method="random_features", num_features=64, seed=4, **kw))
    # the random features are the finite network: the same distance as the nn.Conv2d one fed with
    # the package's weights
    from randperc_plugins.losses._arc_cosine_features import _fixed_cnn_weights
    layers = _fixed_cnn_weights(27, 64, 2, 3, torch.device("cpu"), torch.float64)
    net = _random_cnn(3, 64, 2, torch.Generator().manual_seed(0)).double()
    with torch.no_grad():
        net[0].weight.copy_(layers[0].t().reshape(64, 3, 3, 3))
        net[2].weight.copy_(layers[1].t().reshape(64, 64, 1, 1))
        f = net(torch.cat([x, y])).mean((2, 3))
    torch.testing.assert_close(a, ((f[0] - f[1]) ** 2).sum().reshape(1) / 64, rtol=1e-10, atol=0)


def test_random_features_gradient_unbiased_and_redraw():
    x = (_rand(1, 2, 8, 8, seed=42) - 0.5).requires_grad_()
    y = _rand(1, 2, 8, 8, seed=43) - 0.5
    kw = dict(patch_size=3, kernel="random_cnn", depth=3, method="random_features")
    assert torch.autograd.gradcheck(lambda a: patch_mmd(a, y, num_features=16, **kw), (x,))
    mask = torch.ones(1, 8, 8)
    mask[0, :2] = 0
    assert torch.autograd.gradcheck(lambda a: patch_mmd(a, y, mask, num_features=16,
                                                        estimator="unbiased", **kw), (x,))
    # unbiased over the draw: the mean of many small networks is the exact unbiased MMD²
    exact = patch_mmd(x, y, patch_size=3, kernel="random_cnn", depth=1, estimator="unbiased").detach()
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([patch_mmd(x, y, patch_size=3, kernel="random_cnn", depth=1,
                                   method="random_features", num_features=32, estimator="unbiased",
                                   redraw=True, generator=g) for _ in range(150)]).detach()
    assert not torch.equal(draws[0], draws[1])
    sem = float(draws.std() / math.sqrt(len(draws)))
    assert abs(float(draws.mean() - exact)) < 4 * sem, (float(draws.mean()), float(exact), sem)


def test_auto_and_module_and_terms():
    x, y = _rand(2, 3, 12, 12, seed=50), _rand(2, 3, 12, 12, seed=51) ** 2
    kw = dict(patch_size=3, kernel="random_cnn", depth=2)
    # 100 patches of d = 27; the documented rule: exact up to ratio * F (d + (depth - 1) F) /
    # (d + layer_cost * depth) patches
    def limit(f):
        return AUTO_RANDOM_CNN_RATIO * f * (27 + f) / (27 + AUTO_RANDOM_CNN_LAYER_COST * 2)
    small = dict(num_features=next(f for f in range(1, 4096) if limit(f) >= 100))
    large = dict(num_features=small["num_features"] - 1)
    assert torch.equal(patch_mmd(x, y, method="auto", **small, **kw), patch_mmd(x, y, **kw))
    assert torch.equal(patch_mmd(x, y, method="auto", **large, **kw),
                       patch_mmd(x, y, method="random_features", **large, **kw))
    loss = PatchMMDLoss(squared=True, reduction="none", loss_weight=2.0, levels=2, **kw)
    assert len(loss.state_dict()) == 0 and "random_cnn" in repr(loss)
    total, terms = loss(x, y, return_terms=True)
    assert sorted(terms) == [(0, "random_cnn"), (1, "random_cnn")]
    torch.testing.assert_close(sum(terms.values()), total, rtol=1e-12, atol=0)
    torch.testing.assert_close(total, 2.0 * patch_mmd(x, y, levels=2, **kw))
    torch.testing.assert_close(patch_mmd_loss(x, y, levels=2, **kw),
                               patch_mmd(x, y, levels=2, **kw).sqrt().mean())


def test_errors():
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match=r"`sigmas`.*`kernel`='random_cnn'"):
        patch_mmd(x, x, patch_size=3, kernel="random_cnn", sigmas=(1.0,))
    with pytest.raises(ValueError, match=r"`sigma_weights`.*random_cnn"):
        PatchMMDLoss(kernel="random_cnn", sigma_weights=(1.0,))
    with pytest.raises(ValueError, match=r"`depth` applies only"):
        patch_mmd(x, x, patch_size=3, depth=3)
    with pytest.raises(ValueError, match=r"`depth`.*>= 1.*0"):
        patch_mmd(x, x, patch_size=3, kernel="random_cnn", depth=0)
    with pytest.raises(ValueError, match=r"`kernel`.*'laplace'"):
        patch_mmd(x, x, patch_size=3, kernel="laplace")
