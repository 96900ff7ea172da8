"""The random-CNN loss's per-layer balances ('init', 'target') against independent references, and the
layer-share floor they are for (every compared layer counts)."""
import importlib.util

import pytest
import torch
from random_cnn_reference import reference_case, reference_for, reference_gains
from random_cnn_reference import seeded_rand as _rand

from experiments.analysis import layer_shares as shares_mod
from randperc_plugins.losses import random_cnn as rc
from randperc_plugins.losses.random_cnn import (RandomCNNPerceptualLoss, RandomCNNSpec,
                                                random_cnn_distance, random_cnn_layer_gains,
                                                random_cnn_perceptual_loss, random_cnn_weights)

TINY = dict(widths=((4, 4), (6, 6), (8,)), layers=("relu1_2", "relu2_2", "relu3_1"))
# Narrow, but as deep as the default network's first three stages would be at VGG-16's depth.
DEEPER = ((8, 8), (8, 8), (8, 8, 8))


pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------------------------
# 'init': the gains
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("init", ["gpl", "kaiming"])
@pytest.mark.parametrize("distance,normalize", [("l1", False), ("mse", False), ("l1", True)])
def test_init_gains_equal_an_independent_computation(init, distance, normalize):
    loss = RandomCNNPerceptualLoss(3, **TINY, init=init, distance=distance, normalize=normalize,
                                   balance="init")
    expected = torch.stack(reference_gains(loss.random_weights(), TINY["widths"], loss.layers,
                                           distance=distance, normalize=normalize))
    assert loss.layer_gains.dtype == torch.float64
    torch.testing.assert_close(loss.layer_gains, expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(random_cnn_layer_gains(loss.spec, loss.random_weights(), distance=distance,
                                                      normalize=normalize), expected, rtol=1e-12, atol=0)


def test_gpl_gains_shrink_with_depth_as_the_positions_say():
    # positive homogeneity: 'gpl' is 'kaiming' with conv k scaled by 1/sqrt(l_k), so each layer's
    # gain is kaiming's times the product of those factors up to it
    layers = ("relu1_1", "relu1_2", "relu2_2", "relu3_2")
    gains = {}
    for init in ("gpl", "kaiming"):
        spec = RandomCNNSpec(widths=DEEPER, layers=layers, init=init)
        gains[init] = random_cnn_layer_gains(spec, random_cnn_weights(spec, 3))
    positions = rc.gpl_positions(DEEPER)
    convs = {"relu1_1": 1, "relu1_2": 2, "relu2_2": 4, "relu3_2": 6}
    factors = torch.tensor([float(torch.tensor(positions[:convs[n]], dtype=torch.float64).rsqrt().prod())
                            for n in layers], dtype=torch.float64)
    torch.testing.assert_close(gains["gpl"], gains["kaiming"] * factors, rtol=1e-6, atol=0)  # float32 weights
    assert gains["gpl"][-1] < gains["gpl"][0] / 100


def test_init_gains_cached_deterministic_per_seed_and_rng_free():
    spec = RandomCNNSpec(**TINY)
    state = torch.get_rng_state()
    a = rc._cached_gains(spec, 3, 0, "l1", False)
    assert rc._cached_gains(spec, 3, 0, "l1", False) is a  # computed once
    torch.manual_seed(123)
    b = RandomCNNPerceptualLoss(3, **TINY, balance="init").layer_gains
    torch.manual_seed(456)
    c = RandomCNNPerceptualLoss(**TINY, balance="init")
    c(_rand(1, 3, 8, 8), _rand(1, 3, 8, 8, seed=1))
    assert torch.equal(a, b) and torch.equal(a, c.layer_gains)
    assert b is not a  # the module owns a copy: nothing can change the cache
    other = RandomCNNPerceptualLoss(3, **TINY, seed=1, balance="init").layer_gains
    assert not torch.equal(a, other)
    torch.testing.assert_close(a, other, rtol=0.5, atol=0)  # another draw: about the same scale
    # the reference input comes from a local generator: the global RNG neither moves nor matters
    torch.set_rng_state(state)
    fresh = random_cnn_layer_gains(spec, random_cnn_weights(spec, 3))
    assert torch.equal(torch.get_rng_state(), state) and torch.equal(fresh, a)
    RandomCNNPerceptualLoss(3, **TINY, balance="target")(_rand(1, 3, 8, 8), _rand(1, 3, 8, 8, seed=1))
    RandomCNNPerceptualLoss(**TINY, balance="init", redraw=True)(_rand(1, 3, 8, 8), _rand(1, 3, 8, 8))
    assert torch.equal(torch.get_rng_state(), state)


def test_gains_are_non_persistent_and_follow_the_seeded_network_when_redrawn():
    loss = RandomCNNPerceptualLoss(3, **TINY, balance="init")
    assert loss.state_dict() == {} and list(loss.parameters()) == []
    redrawn = RandomCNNPerceptualLoss(**TINY, balance="init", redraw=True)
    pred, target = _rand(1, 3, 8, 8), _rand(1, 3, 8, 8, seed=1)
    first = redrawn(pred, target)
    torch.testing.assert_close(first, loss(pred, target))  # the first draw is the seeded network
    assert redrawn(pred, target) != first
    torch.testing.assert_close(redrawn.layer_gains, loss.layer_gains)
    assert "layer_gains" not in dict(RandomCNNPerceptualLoss(3, **TINY, balance="none").named_buffers())


def test_init_and_target_do_not_depend_on_the_per_layer_scale_of_the_init():
    # ReLU, max pooling, no bias: positively homogeneous, so 'gpl' and 'kaiming' differ by one
    # factor per layer, which both balances divide out
    pred, target = _rand(2, 3, 20, 20, seed=1), _rand(2, 3, 20, 20, seed=2)
    kw = dict(widths=DEEPER, layers=("relu1_2", "relu2_2", "relu3_3"))
    for balance in ("init", "target"):
        values = [RandomCNNPerceptualLoss(**kw, init=init, balance=balance, reduction="none")(pred, target)
                  for init in ("gpl", "kaiming")]
        torch.testing.assert_close(values[0], values[1], rtol=1e-6, atol=0)  # float32 weights
    plain = [RandomCNNPerceptualLoss(**kw, init=init, balance="none")(pred, target)
             for init in ("gpl", "kaiming")]
    assert plain[1] > 3 * plain[0]


# ----------------------------------------------------------------------------------------------
# Values against the float64 reference, gradients, masks, terms
# ----------------------------------------------------------------------------------------------
CASES = [
    dict(),
    dict(mask=True),
    dict(distance="mse", layer_weights=[0.5, 2.0, 1.0]),
    dict(distance="smooth_l1", normalize=True, mask=True),
    dict(max_size=8, init="kaiming"),
    dict(pooling="avg", activation="leaky_relu"),
]


@pytest.mark.parametrize("balance", ["init", "target"])
@pytest.mark.parametrize("case", CASES, ids=[str(c) for c in CASES])
def test_matches_float64_reference(balance, case):
    pred, target, mask, spec_kw, max_size, settings = reference_case({**case, "balance": balance}, TINY)
    loss = RandomCNNPerceptualLoss(3, **spec_kw, max_size=max_size, reduction="none", loss_weight=0.7,
                                   **settings)
    got = loss(pred, target, weight=mask)
    expected = reference_for(loss, pred, target, mask, spec_kw, max_size, settings, loss_weight=0.7)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-14)
    # the functional form, with the cached network and with the module's weights given
    spec = RandomCNNSpec(**spec_kw)
    for weights in (None, loss.random_weights()):
        functional = random_cnn_perceptual_loss(pred, target, mask, spec=spec, weights=weights,
                                                max_size=max_size, reduction="none", loss_weight=0.7,
                                                **settings)
        torch.testing.assert_close(functional, expected, rtol=1e-10, atol=1e-14)


def test_target_balance_is_scale_free_and_init_balance_is_linear():
    # l1 through a homogeneous network: 'target' is a relative error, 'init' keeps the input's units
    pred, target = _rand(2, 3, 16, 16, seed=1), _rand(2, 3, 16, 16, seed=2)
    for balance, power in (("target", 0), ("init", 1)):
        loss = RandomCNNPerceptualLoss(**TINY, balance=balance, reduction="none")
        # (inputs 100x and 1000x larger, so that the epsilon of 'target' is negligible)
        torch.testing.assert_close(loss(1000 * pred, 1000 * target),
                                   10 ** power * loss(100 * pred, 100 * target), rtol=1e-4, atol=0)


@pytest.mark.parametrize("balance", ["init", "target"])
def test_gradcheck_float64(balance):
    spec = dict(widths=((2,), (3,)), layers=("relu1_1", "relu2_1"))
    target = _rand(1, 2, 5, 4, seed=2)
    mask = torch.ones(1, 1, 5, 4, dtype=torch.float64)
    mask[..., 0, 0] = 0
    mask[..., 1, 2] = 0.5
    for distance in ("mse", "l1"):
        loss = RandomCNNPerceptualLoss(2, **spec, distance=distance, balance=balance)
        pred = _rand(1, 2, 5, 4, seed=1).requires_grad_(True)
        assert torch.autograd.gradcheck(lambda p: loss(p, target, weight=mask), (pred,))


@pytest.mark.parametrize("balance", ["init", "target"])
def test_masks(balance):
    pred = _rand(2, 4, 14, 12, seed=1, dtype=torch.float32).requires_grad_(True)
    target = _rand(2, 4, 14, 12, seed=2, dtype=torch.float32)
    mask = (_rand(2, 14, 12, seed=3) > 0.4).float()
    mask[1, :5] = 0
    loss = RandomCNNPerceptualLoss(widths=DEEPER, layers=("relu1_2", "relu3_3"), balance=balance)
    loss(pred, target, weight=mask).backward()
    masked = (mask == 0)[:, None].expand_as(pred)
    assert torch.count_nonzero(pred.grad[masked]) == 0 and torch.count_nonzero(pred.grad[~masked]) > 0
    # whatever masked pixels hold (the target's magnitude for 'target' included), the value is the same
    wild = torch.where(mask[:, None] == 0, torch.full_like(target, 100.0), target)
    torch.testing.assert_close(loss(pred, wild, mask), loss(pred, target, mask))
    # a fully masked sample, and an all-zero target: finite, with a gradient
    pred.grad = None
    value = RandomCNNPerceptualLoss(**TINY, balance=balance, reduction="none")(
        pred, torch.zeros_like(target), weight=torch.stack([torch.zeros(14, 12), torch.ones(14, 12)]))
    assert value[0] == 0 and torch.isfinite(value).all() and value[1] > 0
    value.sum().backward()
    assert torch.isfinite(pred.grad).all() and torch.count_nonzero(pred.grad[0]) == 0


@pytest.mark.parametrize("balance", ["init", "target"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs(balance, dtype):
    pred32 = _rand(2, 3, 24, 24, seed=1, dtype=torch.float32)
    target = _rand(2, 3, 24, 24, seed=2, dtype=torch.float32)
    loss = RandomCNNPerceptualLoss(balance=balance)  # 'gpl': the deep gains are small
    pred = pred32.to(dtype).requires_grad_(True)
    value = loss(pred, target.to(dtype))
    assert value.dtype == torch.float32 and torch.isfinite(value)
    value.backward()
    assert pred.grad.dtype == dtype and torch.isfinite(pred.grad).all() and torch.count_nonzero(pred.grad) > 0
    torch.testing.assert_close(value, loss(pred32.to(dtype).float(), target.to(dtype).float()))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.testing.assert_close(loss(pred32, target), loss(pred32, target))


def test_balance_init_is_the_default_and_errors_name_the_argument():
    pred, target = _rand(2, 3, 12, 12, seed=1), _rand(2, 3, 12, 12, seed=2)
    assert torch.equal(RandomCNNPerceptualLoss(**TINY, balance="init")(pred, target),
                       RandomCNNPerceptualLoss(**TINY)(pred, target))
    assert RandomCNNPerceptualLoss(**TINY).comparison.balance == "init"
    assert torch.equal(random_cnn_distance(pred, target, spec=RandomCNNSpec(**TINY)),
                       random_cnn_distance(pred, target, spec=RandomCNNSpec(**TINY), balance="init"))
    with pytest.raises(ValueError, match="`balance` must be one of"):
        RandomCNNPerceptualLoss(**TINY, balance="layers")
    with pytest.raises(ValueError, match="`balance`"):
        random_cnn_distance(pred, target, spec=RandomCNNSpec(**TINY), balance=True)


# ----------------------------------------------------------------------------------------------
# The floor: every compared layer counts (both tasks' inputs, the default layers)
# ----------------------------------------------------------------------------------------------
# The instance-mask inputs draw the toy COCO shapes with pycocotools (the mmdet extra, not the core tier).
_TASK_NEEDS = {"instance_masks": "pycocotools"}


@pytest.fixture(scope="module")
def default_shares():
    pytest.importorskip("skimage")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module-scoped: the function-scoped `one_thread` has not started yet
    try:
        available = [t for t in shares_mod.TASKS if t not in _TASK_NEEDS or _importable(_TASK_NEEDS[t])]
        return {(task, init, balance): shares_mod.layer_shares(task, init=init, balance=balance)
                for task in available
                for init, balance in (("gpl", "none"), ("gpl", "init"), ("gpl", "target"))}
    finally:
        torch.set_num_threads(threads)


def _importable(module):
    return importlib.util.find_spec(module) is not None


def _task_shares(default_shares, task, balance):
    if task in _TASK_NEEDS:
        pytest.importorskip(_TASK_NEEDS[task])
    return default_shares[(task, "gpl", balance)]


@pytest.mark.parametrize("task", shares_mod.TASKS)
def test_default_gpl_loss_is_in_effect_shallow(task, default_shares):
    # the problem the balances solve: with init='gpl' and no balance, relu3_4 is under 1% of both
    shares = _task_shares(default_shares, task, "none")
    assert list(shares) == list(rc.DEFAULT_LAYERS)
    assert shares["relu3_4"]["loss"] < 0.01 and shares["relu3_4"]["grad"] < 0.01
    assert min(min(s.values()) for s in shares.values()) < shares_mod.share_floor(3)


@pytest.mark.parametrize("balance", ["init", "target"])
@pytest.mark.parametrize("task", shares_mod.TASKS)
def test_balances_make_every_layer_count(task, balance, default_shares):
    shares = _task_shares(default_shares, task, balance)
    floor = shares_mod.share_floor(len(shares))
    assert floor == pytest.approx(1 / 9)
    for name, s in shares.items():
        assert s["loss"] >= floor and s["grad"] >= floor, (name, s)
    assert sum(s["loss"] for s in shares.values()) == pytest.approx(1.0)
    assert sum(s["grad"] for s in shares.values()) == pytest.approx(1.0)
