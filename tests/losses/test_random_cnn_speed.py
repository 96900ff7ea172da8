"""The random-CNN loss within its cost budgets at the task defaults, and its speed habits: a 16-bit
network under autocast with float32 distances, one graph under torch.compile (ROI buckets:
``tests/losses/test_validation.py``)."""
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from randperc_plugins.benchmarks.gpu import VGGPerceptualLoss
from randperc_plugins.losses import RandomCNNPerceptualLoss, tasks
from randperc_plugins.losses.random_cnn import VGG19_HALF_WIDTHS, VGG19_QUARTER_WIDTHS, VGG19_WIDTHS

#: A Mask R-CNN R50-FPN train step (torchvision's, 2x800x1333, 20 instances per image), forward and
#: backward, counted with `tools/benchmark.py gpu --cpu-flops --tasks masks` (docs/benchmarks.md).
MASK_RCNN_STEP_GFLOP = 2510.0


def _gflop(fn):
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def _loss_gflop(loss, shape):
    g = torch.Generator().manual_seed(0)
    pred = torch.rand(*shape, generator=g).requires_grad_()
    target = torch.rand(*shape, generator=g)
    loss(pred, target)  # draws the network and its gains outside the count
    return _gflop(lambda: loss(pred, target).backward())


def _default(task, **overrides):
    return RandomCNNPerceptualLoss(**{**tasks.task_defaults(task, "random_cnn"), **overrides})


def test_restoration_default_costs_at_most_035_of_the_vgg_loss():
    pytest.importorskip("torchvision", reason="mmagic's VGG-19 loss is torchvision's VGG-19")
    # at 16x3x96x96; every sample costs the same, so one sample is counted and multiplied by 16
    shape = (1, 3, 96, 96)
    ours = 16 * _loss_gflop(_default("restoration"), shape)
    vgg = 16 * _loss_gflop(VGGPerceptualLoss(), shape)
    assert 340 < vgg < 350  # mmagic's VGG-19 loss through layer 34: 344 GFLOP
    assert ours <= 0.35 * vgg, (ours, vgg)
    # the full-width network (release 0.2's) stays reachable, and costs 0.57 of it
    old = RandomCNNPerceptualLoss(**{**tasks.task_defaults("restoration", "random_cnn"),
                                     "widths": tasks.task_defaults("restoration", "random_cnn",
                                                                   release="0.2")["widths"]})
    assert 0.5 * vgg < 16 * _loss_gflop(old, shape) < 0.6 * vgg


def test_instance_mask_default_costs_at_most_one_percent_of_a_mask_rcnn_step():
    ours = _loss_gflop(_default("instance_masks"), (256, 1, 28, 28))
    assert ours <= 25.0 and ours <= 0.01 * MASK_RCNN_STEP_GFLOP, ours


def test_release_0_2_networks_are_reachable_by_name():
    for task in ("restoration", "instance_masks"):
        assert tasks.task_defaults(task, "random_cnn", release="0.2")["widths"] == VGG19_WIDTHS
        assert tasks.task_defaults(task, "random_cnn", release="0.2")["autocast"] is False
    assert tasks.task_defaults("instance_masks", "random_cnn")["widths"] == VGG19_QUARTER_WIDTHS
    assert tasks.task_defaults("restoration", "random_cnn")["widths"] == VGG19_HALF_WIDTHS


def test_autocast_setting_is_checked():
    with pytest.raises(TypeError, match="autocast"):
        RandomCNNPerceptualLoss(autocast="yes")


# ----------------------------------------------------------------------------------------------
# Autocast: the network in 16 bits, the distance in float32
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("task, shape", [("restoration", (4, 3, 64, 64)),
                                         ("instance_masks", (32, 1, 28, 28)),
                                         ("segmentation", (2, 4, 48, 48))])
def test_bf16_autocast_within_tolerance_of_float32(task, shape):
    g = torch.Generator().manual_seed(0)
    pred = torch.rand(*shape, generator=g)
    target = (pred + 0.2 * torch.randn(*shape, generator=g)).clamp(0, 1)
    loss = _default(task, loss_weight=1.0)
    p32 = pred.clone().requires_grad_()
    v32 = loss(p32, target)
    v32.backward()
    p16 = pred.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        v16 = loss(p16, target)
    v16.backward()
    assert v16.dtype == torch.float32 and torch.isfinite(v16) and torch.isfinite(p16.grad).all()
    # the stated tolerance: the value within 1% of float32's, the gradient's direction within 0.98
    torch.testing.assert_close(v16, v32, rtol=1e-2, atol=0)
    cosine = torch.nn.functional.cosine_similarity(p16.grad.flatten(), p32.grad.flatten(), dim=0)
    assert cosine > 0.98, cosine
    assert not torch.equal(v16, v32)  # the network did run in bfloat16

    # autocast=False keeps the network in float32 under autocast (release 0.2's behaviour)
    exact = _default(task, loss_weight=1.0, autocast=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        v = exact(pred, target)
    torch.testing.assert_close(v, v32, rtol=1e-6, atol=0)


def test_float64_inputs_stay_float64_under_autocast():
    loss = RandomCNNPerceptualLoss(widths=((4,), (8,)), layers=("relu1_1", "relu2_1"))
    pred = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    expected = loss(pred, pred.flip(-1))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = loss(pred, pred.flip(-1))
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, expected)


# ----------------------------------------------------------------------------------------------
# torch.compile: one graph after the first call
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("autocast", [False, True])
def test_instance_mask_default_compiles_in_one_graph(autocast):
    torch._dynamo.reset()
    loss = RandomCNNPerceptualLoss(**{**tasks.task_defaults("instance_masks", "random_cnn"),
                                      "widths": ((4,), (8,)), "layers": ("relu1_1", "relu2_1"),
                                      "validate_args": False})
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 3, 12, 12, generator=g, requires_grad=True)
    targets = (torch.rand(5, 12, 12, generator=g) > 0.5).float()
    labels = torch.tensor([0, 2, 1, 1, 0])

    def step(logits):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            prob, target = tasks.instance_mask_inputs(logits, targets, labels, validate_args=False)
            return loss(prob, target)

    expected = step(logits)  # the first call draws the network
    (g_expected,) = torch.autograd.grad(expected, logits)
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    got = compiled(logits)
    (g_got,) = torch.autograd.grad(got, logits)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(g_got, g_expected)
