"""The random-CNN perceptual loss (Generic Perceptual Loss) against an independent float64 reference."""
import doctest
import hashlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from photo_ops import gaussian_blur
from random_cnn_reference import reference_case, reference_for
from random_cnn_reference import seeded_rand as _rand

from randperc_plugins.losses import random_cnn as rc
from randperc_plugins.losses.random_cnn import (RandomCNNPerceptualLoss, RandomCNNSpec,
                                                random_cnn_distance, random_cnn_perceptual_loss,
                                                random_cnn_weights)

# A small network: every test runs in well under a second.
TINY = dict(widths=((4, 4), (6, 6), (8,)), layers=("relu1_2", "relu2_2", "relu3_1"))


pytestmark = pytest.mark.usefixtures("one_thread")


REF_CASES = [
    dict(),
    dict(distance="mse", layer_weights=[0.5, 2.0, 1.0]),
    dict(distance="smooth_l1", normalize=True),
    dict(pooling="avg", activation="leaky_relu"),
    dict(activation="tanh", pooling="none", init="xavier"),
    dict(max_size=8),
    dict(mask=True),
    dict(mask=True, max_size=7, distance="mse"),
    dict(init="kaiming", kernel_size=5, layers=("conv1_1", "pool2", "relu3_1")),
]


@pytest.mark.parametrize("case", REF_CASES, ids=[str(c) for c in REF_CASES])
def test_matches_float64_reference(case):
    pred, target, mask, spec_kw, max_size, settings = reference_case(case, TINY)
    loss = RandomCNNPerceptualLoss(3, **spec_kw, max_size=max_size, reduction="none",
                                   loss_weight=0.7, **settings)
    got = loss(pred, target, weight=mask)
    expected = reference_for(loss, pred, target, mask, spec_kw, max_size, settings, loss_weight=0.7)
    assert got.dtype == torch.float64 and got.shape == (2,)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-14)


def test_functional_equals_module_and_reductions():
    pred, target = _rand(3, 2, 9, 9, seed=1), _rand(3, 2, 9, 9, seed=2)
    per = RandomCNNPerceptualLoss(**TINY, reduction="none")(pred, target)
    spec = RandomCNNSpec(**TINY)
    torch.testing.assert_close(random_cnn_perceptual_loss(pred, target, spec=spec, reduction="none"), per)
    torch.testing.assert_close(random_cnn_perceptual_loss(pred, target, spec=spec), per.mean())
    torch.testing.assert_close(random_cnn_perceptual_loss(pred, target, spec=spec, reduction="sum",
                                                          loss_weight=3.0), 3.0 * per.sum())
    # prebuilt weights and a dict of layer weights
    ws = random_cnn_weights(spec, 2, seed=0)
    got = random_cnn_perceptual_loss(pred, target, spec=spec, weights=ws, reduction="none",
                                     layer_weights={"relu2_2": 1.0})
    only = RandomCNNPerceptualLoss(**TINY, layer_weights=[0, 1, 0], reduction="none")(pred, target)
    torch.testing.assert_close(got, only)


def test_gradcheck_float64():
    spec = dict(widths=((2,), (3,)), layers=("relu1_1", "relu2_1"))
    target = _rand(1, 2, 5, 4, seed=2)
    mask = torch.ones(1, 1, 5, 4, dtype=torch.float64)
    mask[..., 0, 0] = 0
    for distance in ("mse", "l1"):
        loss = RandomCNNPerceptualLoss(2, **spec, distance=distance, init="kaiming")
        pred = _rand(1, 2, 5, 4, seed=1).requires_grad_(True)
        assert torch.autograd.gradcheck(lambda p: loss(p, target, weight=mask), (pred,))


def test_identical_inputs_give_zero_and_zero_gradient():
    x = _rand(2, 3, 24, 20, seed=5, dtype=torch.float32)
    pred = x.clone().requires_grad_(True)
    value = RandomCNNPerceptualLoss()(pred, x)
    assert value.item() == 0.0
    value.backward()
    assert torch.count_nonzero(pred.grad) == 0


def _photo(size=64):
    skimage_data = pytest.importorskip("skimage.data")
    img = torch.from_numpy(np.ascontiguousarray(skimage_data.astronaut())).permute(2, 0, 1)[None]
    img = F.interpolate(img.float() / 255, size=(128, 128), mode="area")
    return img[..., 16:16 + size, 40:40 + size].contiguous()


def test_grows_monotonically_with_blur_and_noise_on_a_photograph():
    img = _photo()
    loss = RandomCNNPerceptualLoss()
    noise = torch.randn(img.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        blurred = [loss(gaussian_blur(img, s), img).item() for s in (0.5, 1.0, 2.0, 4.0)]
        noisy = [loss(img + s * noise, img).item() for s in (0.02, 0.05, 0.1, 0.2)]
    assert all(a < b for a, b in zip(blurred, blurred[1:])), blurred
    assert all(a < b for a, b in zip(noisy, noisy[1:])), noisy


_HASH_CODE = textwrap.dedent("""
    import hashlib, sys, torch
    from randperc_plugins.losses.random_cnn import RandomCNNPerceptualLoss
    for seed in (0, 1):
        h = hashlib.sha256()
        for w in RandomCNNPerceptualLoss(19, seed=seed).random_weights():
            h.update(w.numpy().tobytes())
        print(h.hexdigest())
""")


def test_same_seed_same_weights_in_separate_processes():
    procs = [subprocess.Popen([sys.executable, "-c", _HASH_CODE], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outs.append(out.split())
    here = hashlib.sha256()
    for w in RandomCNNPerceptualLoss(19, seed=0).random_weights():
        here.update(w.numpy().tobytes())
    (a0, a1), (b0, b1) = outs
    assert a0 == b0 == here.hexdigest() and a1 == b1
    assert a1 != a0


def test_global_rng_is_untouched():
    state = torch.get_rng_state()
    pred, target = _rand(2, 3, 10, 10, seed=1), _rand(2, 3, 10, 10, seed=2)
    for kw in (dict(), dict(redraw=True), dict(in_channels=3)):
        loss = RandomCNNPerceptualLoss(**TINY, **kw)
        loss(pred, target)
        loss(pred, target)
    random_cnn_perceptual_loss(pred, target, spec=RandomCNNSpec(**TINY), seed=7)
    assert torch.equal(torch.get_rng_state(), state)


def test_redraw_draws_new_weights_reproducibly():
    pred, target = _rand(1, 3, 10, 10, seed=1), _rand(1, 3, 10, 10, seed=2)
    fixed = RandomCNNPerceptualLoss(**TINY)
    a = RandomCNNPerceptualLoss(**TINY, redraw=True)
    b = RandomCNNPerceptualLoss(**TINY, redraw=True)
    va = [a(pred, target) for _ in range(3)]
    vb = [b(pred, target) for _ in range(3)]
    assert [v.item() for v in va] == [v.item() for v in vb]
    assert va[0] == fixed(pred, target) == fixed(pred, target)
    assert va[1] != va[0] and va[2] != va[1]
    assert a.state_dict() == {}


def test_weights_are_frozen_non_persistent_buffers():
    loss = RandomCNNPerceptualLoss(3)
    assert loss.state_dict() == {} and list(loss.parameters()) == []
    assert all(not w.requires_grad and w.dtype == torch.float32 for w in loss.random_weights())
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1))
    keys = set(model.state_dict())
    model.add_module("loss", RandomCNNPerceptualLoss())
    model.loss(_rand(1, 3, 8, 8, dtype=torch.float32), _rand(1, 3, 8, 8, dtype=torch.float32))
    assert set(model.state_dict()) == keys
    # Weight values: 'gpl' std is sqrt(2 / (l * fan_in)) at the conv's layer position l.
    std = [w.std().item() for w in loss.random_weights()]
    expected = [(2 / (pos * w.shape[1] * 9)) ** 0.5
                for pos, w in zip(rc.gpl_positions(rc.VGG19_WIDTHS), loss.random_weights())]
    np.testing.assert_allclose(std, expected, rtol=0.1)


def test_lazy_in_channels_and_channel_check():
    loss = RandomCNNPerceptualLoss(**TINY)
    assert loss.random_weights() == []
    loss(_rand(1, 5, 8, 8), _rand(1, 5, 8, 8))
    assert loss.in_channels == 5 and loss.random_weights()[0].shape[1] == 5
    with pytest.raises(ValueError, match="`pred` has 3 channels.*`in_channels`=5"):
        loss(_rand(1, 3, 8, 8), _rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="`in_channels`=4"):
        RandomCNNPerceptualLoss(4, **TINY)(_rand(1, 3, 8, 8), _rand(1, 3, 8, 8))


def test_masked_pixels_get_zero_gradient():
    pred = _rand(2, 4, 14, 12, seed=1, dtype=torch.float32).requires_grad_(True)
    target = _rand(2, 4, 14, 12, seed=2, dtype=torch.float32)
    mask = (_rand(2, 14, 12, seed=3) > 0.4).float()
    mask[1, :5] = 0
    for max_size in (None, 7):
        pred.grad = None
        RandomCNNPerceptualLoss(max_size=max_size)(pred, target, weight=mask).backward()
        masked = (mask == 0)[:, None].expand_as(pred)
        assert torch.count_nonzero(pred.grad[masked]) == 0
        assert torch.count_nonzero(pred.grad[~masked]) > 0
    # Whatever masked pixels hold, the value does not change.
    wild = torch.where(mask[:, None] == 0, torch.full_like(target, 100.0), target)
    loss = RandomCNNPerceptualLoss()
    torch.testing.assert_close(loss(pred, wild, mask), loss(pred, target, mask))


def test_fully_masked_gives_finite_zero_with_gradient():
    pred = _rand(2, 3, 16, 16, seed=1, dtype=torch.float32).requires_grad_(True)
    target = _rand(2, 3, 16, 16, seed=2, dtype=torch.float32)
    for reduction in ("mean", "none"):
        value = RandomCNNPerceptualLoss(reduction=reduction)(pred, target,
                                                              weight=torch.zeros(2, 16, 16))
        assert torch.isfinite(value).all() and (value == 0).all() and value.grad_fn is not None
        value.sum().backward()
        assert torch.isfinite(pred.grad).all() and torch.count_nonzero(pred.grad) == 0


def test_all_ones_mask_equals_no_mask():
    pred, target = _rand(2, 3, 12, 10, seed=1), _rand(2, 3, 12, 10, seed=2)
    loss = RandomCNNPerceptualLoss(**TINY)
    torch.testing.assert_close(loss(pred, target, torch.ones(2, 12, 10, dtype=torch.bool)),
                               loss(pred, target))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs(dtype):
    pred32 = _rand(2, 3, 24, 24, seed=1, dtype=torch.float32)
    target = _rand(2, 3, 24, 24, seed=2, dtype=torch.float32)
    loss = RandomCNNPerceptualLoss()
    pred = pred32.to(dtype).requires_grad_(True)
    value = loss(pred, target.to(dtype))
    assert value.dtype == torch.float32 and torch.isfinite(value)
    value.backward()
    assert pred.grad.dtype == dtype and torch.isfinite(pred.grad).all()
    assert torch.count_nonzero(pred.grad) > 0
    expected = loss(pred32.to(dtype).float(), target.to(dtype).float())
    torch.testing.assert_close(value, expected)


def test_autocast_keeps_float32():
    # the output (and the distances) stay float32 under autocast; the network follows autocast's 16-bit
    # dtype by default (within 1%, tests/losses/test_random_cnn_speed.py), not with autocast=False
    pred = _rand(2, 3, 16, 16, seed=1, dtype=torch.float32)
    target = _rand(2, 3, 16, 16, seed=2, dtype=torch.float32)
    for follow, rtol in ((False, 1.3e-6), (True, 1e-2)):
        loss = RandomCNNPerceptualLoss(autocast=follow)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = loss(pred, target)
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, loss(pred, target), rtol=rtol, atol=1e-5)


def test_channels_last_batch_of_one_and_tiny_inputs():
    loss = RandomCNNPerceptualLoss()
    pred, target = _rand(1, 3, 20, 17, seed=1, dtype=torch.float32), _rand(1, 3, 20, 17, seed=2,
                                                                          dtype=torch.float32)
    cl = pred.to(memory_format=torch.channels_last).requires_grad_(True)
    value = loss(cl, target.to(memory_format=torch.channels_last))
    torch.testing.assert_close(value, loss(pred, target), rtol=1e-5, atol=1e-8)
    value.backward()
    assert torch.isfinite(cl.grad).all()
    loss = RandomCNNPerceptualLoss()
    for h, w in ((1, 1), (1, 5), (3, 2), (7, 9)):  # smaller than the network's downsampling
        p = _rand(1, 19, h, w, seed=3, dtype=torch.float32).requires_grad_(True)
        v = loss(p, _rand(1, 19, h, w, seed=4, dtype=torch.float32))
        assert torch.isfinite(v) and v > 0
        v.backward()
        assert torch.isfinite(p.grad).all() and torch.count_nonzero(p.grad) > 0


def test_max_size_computes_on_area_resized_inputs():
    pred, target = _rand(2, 3, 40, 20, seed=1), _rand(2, 3, 40, 20, seed=2)
    small = RandomCNNPerceptualLoss(**TINY, max_size=10)(pred, target)
    resized = [F.interpolate(t, size=(10, 5), mode="area") for t in (pred, target)]
    torch.testing.assert_close(small, RandomCNNPerceptualLoss(**TINY, max_size=None)(*resized))
    # at or below max_size nothing changes
    torch.testing.assert_close(RandomCNNPerceptualLoss(**TINY, max_size=40)(pred, target),
                               RandomCNNPerceptualLoss(**TINY, max_size=None)(pred, target))


def test_to_device_and_dtype_after_lazy_build():
    loss = RandomCNNPerceptualLoss(**TINY)
    loss(_rand(1, 3, 8, 8, dtype=torch.float32), _rand(1, 3, 8, 8, dtype=torch.float32))
    loss = loss.to(torch.float64)
    value = loss(_rand(1, 3, 8, 8), _rand(1, 3, 8, 8, seed=1))
    assert value.dtype == torch.float64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    pred, target = _rand(2, 3, 32, 32, seed=1, dtype=torch.float32), _rand(2, 3, 32, 32, seed=2,
                                                                            dtype=torch.float32)
    cpu = RandomCNNPerceptualLoss()(pred, target)
    lazy = RandomCNNPerceptualLoss()
    gpu = lazy(pred.cuda(), target.cuda())
    assert lazy.random_weights()[0].is_cuda
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-3, atol=1e-6)
    built = RandomCNNPerceptualLoss(3).cuda()
    for a, b in zip(built.random_weights(), RandomCNNPerceptualLoss(3).random_weights()):
        assert torch.equal(a.cpu(), b)
    for dtype in (torch.float16, torch.bfloat16):
        p = pred.cuda().to(dtype).requires_grad_(True)
        with torch.autocast("cuda", dtype=dtype):
            v = built(p, target.cuda().to(dtype))
        assert v.dtype == torch.float32 and torch.isfinite(v)
        v.backward()
        assert torch.isfinite(p.grad).all()


def test_errors_name_the_argument():
    loss = RandomCNNPerceptualLoss(**TINY)
    x = _rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match="`pred` and `target`"):
        loss(x, _rand(1, 3, 8, 9))
    with pytest.raises(TypeError, match="`pred`"):
        loss(x.long(), x)
    with pytest.raises(TypeError, match="`target`"):
        loss(x, x.int())
    with pytest.raises(ValueError, match="`target` must be finite"):
        loss(x, torch.full_like(x, float("nan")))
    with pytest.raises(ValueError, match="`target` must be finite"):
        loss(x, torch.full_like(x, float("inf")))
    with pytest.raises(ValueError, match="`weight`"):
        loss(x, x, weight=torch.ones(1, 8, 7))
    with pytest.raises(ValueError, match="`weight` must be non-negative"):
        loss(x, x, weight=-torch.ones(1, 8, 8))
    bad = [(dict(layers=("relu9_1",)), "`layers`"), (dict(distance="l3"), "`distance`"),
           (dict(init="orthogonal"), "`init`"), (dict(pooling="lp"), "`pooling`"),
           (dict(activation="swish"), "`activation`"), (dict(kernel_size=2), "`kernel_size`"),
           (dict(widths=((4, 0),)), "`widths`"), (dict(max_size=0), "`max_size`"),
           (dict(reduction="max"), "`reduction`"), (dict(layer_weights=[1.0]), "`layer_weights`"),
           (dict(layers=()), "`layers`"), (dict(in_channels=0), "`in_channels`")]
    for kw, name in bad:
        with pytest.raises(ValueError, match=name):
            RandomCNNPerceptualLoss(**{**TINY, **kw})
    with pytest.raises(TypeError, match="`seed`"):
        RandomCNNPerceptualLoss(seed=1.5)
    with pytest.raises(TypeError, match="`validate_args`"):
        RandomCNNPerceptualLoss(validate_args=1)
    with pytest.raises(TypeError, match="positional"):  # everything after the tensors: keywords
        random_cnn_perceptual_loss(x, x, None, RandomCNNSpec(**TINY))


def test_layer_names_and_order():
    spec = RandomCNNSpec(layers=("relu3_4", "act1_2", "pool2"))
    assert spec.layers == ("relu1_2", "pool2", "relu3_4")
    assert spec.num_convs == 8
    assert rc.gpl_positions(rc.VGG19_WIDTHS)[:6] == [1, 3, 6, 8, 11, 13]


def test_docstring_examples_run():
    result = doctest.testmod(rc, extraglobs={"torch": torch}, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 4 and result.failed == 0


@pytest.mark.parametrize("balance", ["none", "init", "target"])
def test_terms_per_layer_sum_to_the_total(balance):
    spec = RandomCNNSpec(**TINY)
    pred, target = _rand(2, 3, 12, 12, seed=70), _rand(2, 3, 12, 12, seed=71)
    weight = torch.ones(2, 12, 12)
    weight[:, :, :3] = 0
    lw = (0.5, 2.0, 3.0)
    total, terms = random_cnn_distance(pred, target, weight, spec=spec, layer_weights=lw,
                                       balance=balance, return_terms=True)
    assert list(terms) == list(spec.layers)
    torch.testing.assert_close(total, random_cnn_distance(pred, target, weight, spec=spec,
                                                          layer_weights=lw, balance=balance))
    torch.testing.assert_close(sum(terms.values()), total)
    # each term is its layer alone, with its weight (an independent call)
    for name, w in zip(spec.layers, lw):
        alone = random_cnn_distance(pred, target, weight, spec=spec, layer_weights={name: w},
                                    balance=balance)
        torch.testing.assert_close(terms[name], alone)
    loss, lterms = random_cnn_perceptual_loss(pred, target, weight, spec=spec, layer_weights=lw,
                                              loss_weight=4.0, reduction="sum", return_terms=True,
                                              balance=balance)
    torch.testing.assert_close(loss, 4.0 * total.sum())
    torch.testing.assert_close(sum(lterms.values()), loss)
    module = RandomCNNPerceptualLoss(**TINY, layer_weights=lw, loss_weight=0.5, balance=balance)
    mloss, mterms = module(pred, target, weight, return_terms=True)
    torch.testing.assert_close(mloss, 0.5 * total.mean())
    torch.testing.assert_close(sum(mterms.values()), mloss)
