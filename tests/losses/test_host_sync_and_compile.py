"""The training path (``validate_args=False``) never synchronises with the host, launches a bounded
number of kernels, and compiles in one graph.

A host read (``bool(t)``, ``t.item()``, ``int(t)``, ...) makes the CPU wait for the GPU stream, a
tensor made from Python data (``torch.tensor(0.5, device='cuda')``) makes the GPU wait for the host,
and an op whose output size depends on values (``nonzero``, boolean-mask indexing) does both; each
breaks ``torch.compile``'s graph. On the CPU they are recorded by the fixture ``host_syncs``
(``tests/conftest.py``); on a GPU, ``torch.cuda.set_sync_debug_mode('error')`` turns any
synchronisation into an error. Kernel launches are counted as aten ops (about one launch each) on the
``meta`` device, which runs the same code as a GPU without computing anything, at the task defaults'
real shapes.
"""
import collections
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from randperc_plugins.losses import PatchMMDLoss, RandomCNNPerceptualLoss, tasks

TINY_CNN = dict(widths=((4,), (8,)), layers=("relu1_1", "relu2_1"))
LOSSES = {
    "random_cnn": lambda **kw: RandomCNNPerceptualLoss(**TINY_CNN, **kw),
    "random_cnn_redraw": lambda **kw: RandomCNNPerceptualLoss(**TINY_CNN, redraw=True, **kw),
    "random_cnn_balance_init": lambda **kw: RandomCNNPerceptualLoss(**TINY_CNN, balance="init", **kw),
    "random_cnn_balance_target": lambda **kw: RandomCNNPerceptualLoss(**TINY_CNN, balance="target", **kw),
    "random_cnn_redraw_balance_init": lambda **kw: RandomCNNPerceptualLoss(**TINY_CNN, redraw=True,
                                                                          balance="init", **kw),
    "patch_mmd_exact": lambda **kw: PatchMMDLoss(patch_size=3, levels=2, **kw),
    "patch_mmd_random_features": lambda **kw: PatchMMDLoss(
        patch_size=3, method="random_features", num_features=16, estimator="unbiased", **kw),
    "patch_mmd_random_cnn": lambda **kw: PatchMMDLoss(
        patch_size=3, kernel="random_cnn", levels=2, estimator="unbiased", **kw),
    "patch_mmd_random_cnn_features": lambda **kw: PatchMMDLoss(
        patch_size=3, kernel="random_cnn", depth=3, method="random_features", num_features=16,
        estimator="unbiased", **kw),
    "patch_mmd_windows_exact": lambda **kw: PatchMMDLoss(
        patch_size=3, window_size=6, window_stride=4, normalize="channel_mean", levels=2, **kw),
    "patch_mmd_windows_random_features": lambda **kw: PatchMMDLoss(
        patch_size=3, window_size=8, normalize="mean", method="random_features", num_features=16,
        **kw),
    "patch_mmd_random_features_groups": lambda **kw: PatchMMDLoss(
        patch_size=3, method="random_features", num_features=16, sigmas=(1.0, 0.3, 0.5), levels=2, **kw),
    "patch_mmd_random_features_masked_subset": lambda **kw: PatchMMDLoss(
        patch_size=3, method="random_features", num_features=16, max_patches=50, **kw),
    "patch_mmd_exact_blocks": lambda **kw: PatchMMDLoss(patch_size=3, block_size=40,
                                                        estimator="unbiased", **kw),
    "patch_mmd_random_cnn_windows": lambda **kw: PatchMMDLoss(
        patch_size=3, kernel="random_cnn", depth=2, window_size=8, **kw),
    "patch_mmd_segmentation": lambda **kw: PatchMMDLoss(
        **{**tasks.task_defaults("segmentation", "patch_mmd"), "max_size": 12}, **kw),
    "patch_mmd_restoration": lambda **kw: PatchMMDLoss(
        **{**tasks.task_defaults("restoration", "patch_mmd"), "patch_size": 3}, **kw),
    "patch_mmd_instance_masks": lambda **kw: PatchMMDLoss(
        **tasks.task_defaults("instance_masks", "patch_mmd"), **kw),
}


def _segmentation_batch(device="cpu"):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 16, 16, generator=g).to(device).requires_grad_()
    label = torch.randint(0, 4, (2, 16, 16), generator=g).to(device)
    label[:, :3] = 255
    return logits, label


def _step(loss, logits, label, validate_args):
    pred, target, mask = tasks.segmentation_inputs(logits, label, ignore_index=255,
                                                   validate_args=validate_args)
    loss(pred, target, mask).backward()


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_training_path_never_synchronises(name, host_syncs):
    loss = LOSSES[name](validate_args=False)
    logits, label = _segmentation_batch()
    _step(loss, logits, label, validate_args=False)  # first call: weights and features are drawn
    host_syncs.clear()
    _step(loss, logits, label, validate_args=False)
    assert host_syncs == []
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


def test_host_syncs_records_each_kind_of_synchronisation(host_syncs):
    # so that the test above can fail: a factory of Python data, a value-sized op, a host read
    x = torch.rand(4)
    torch.tensor(0.5)
    x[x > 0.5]
    torch.nonzero(x)
    bool(x.sum() > 0)
    assert host_syncs[0] == "torch.tensor"
    assert "aten.index.Tensor" in host_syncs and "aten.nonzero.default" in host_syncs
    assert "__bool__" in host_syncs


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_validate_args_reads_on_the_host(name, host_reads):
    # the counter sees the checks that validate_args=True runs (so the test above can fail)
    loss = LOSSES[name](validate_args=True)
    logits, label = _segmentation_batch()
    _step(loss, logits, label, validate_args=True)
    assert len(host_reads) >= 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_training_path_does_not_synchronise_cuda(name):
    loss = LOSSES[name](validate_args=False).cuda()
    logits, label = _segmentation_batch("cuda")
    _step(loss, logits, label, validate_args=False)  # warm-up: weights and features reach the GPU
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        _step(loss, logits, label, validate_args=False)
    finally:
        torch.cuda.set_sync_debug_mode("default")


# ----------------------------------------------------------------------------------------------
# torch.compile (backend 'aot_eager': the graph capture and autograd are what is tested; no C++
# code generation, so the test stays small)
# ----------------------------------------------------------------------------------------------
def _compiled_matches_eager(loss, fullgraph):
    torch._dynamo.reset()
    logits, label = _segmentation_batch()
    pred, target, mask = tasks.segmentation_inputs(logits, label, validate_args=False)
    expected = loss(pred, target, mask)
    (g_expected,) = torch.autograd.grad(expected, logits)
    pred, target, mask = tasks.segmentation_inputs(logits, label, validate_args=False)
    compiled = torch.compile(loss, fullgraph=fullgraph, backend="aot_eager")
    got = compiled(pred, target, mask)
    (g_got,) = torch.autograd.grad(got, logits)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(g_got, g_expected)


@pytest.mark.parametrize("name", ["random_cnn", "random_cnn_balance_target", "patch_mmd_exact",
                                  "patch_mmd_random_cnn", "patch_mmd_windows_exact"])
def test_compiles_in_one_graph(name):
    _compiled_matches_eager(LOSSES[name](validate_args=False), fullgraph=True)


@pytest.mark.parametrize("name", ["patch_mmd_random_features", "patch_mmd_random_features_groups",
                                  "patch_mmd_segmentation", "patch_mmd_instance_masks",
                                  "random_cnn_balance_init"])
def test_compiles_in_one_graph_after_the_first_call(name):
    # The random features and weights are drawn once, eagerly, from a seeded CPU torch.Generator
    # (the same on every rank and device; dynamo cannot trace a Generator): the first call compiles
    # around the draw, and from then on the loss is one graph.
    loss = LOSSES[name](validate_args=False)
    _compiled_matches_eager(loss, fullgraph=False)
    _compiled_matches_eager(loss, fullgraph=True)


def test_task_layer_reads_nothing_on_the_host_without_validation(host_reads):
    logits, label = _segmentation_batch()
    tasks.segmentation_inputs(logits, label, weight=torch.ones(2, 16, 16), validate_args=False)
    roi_logits = torch.randn(3, 5, 8, 8)
    tasks.instance_mask_inputs(roi_logits, torch.rand(3, 8, 8), torch.tensor([0, 4, 2]),
                               validate_args=False)
    tasks.restoration_inputs(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), validate_args=False)
    assert host_reads == []
    tasks.restoration_inputs(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
    tasks.instance_mask_inputs(roi_logits, torch.rand(3, 8, 8), torch.tensor([0, 4, 2]))
    assert len(host_reads) >= 3  # the finite target and the label range are read when validating


# ----------------------------------------------------------------------------------------------
# Kernel launches: aten ops per forward + backward at the task defaults' shapes
# ----------------------------------------------------------------------------------------------
#: At most this many aten ops (about one GPU kernel launch each) per forward + backward of a task
#: default, data preparation of the task layer included.
LAUNCH_BUDGET = 300


class _OpCount(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[str(func)] += 1
        return func(*args, **(kwargs or {}))


def _task_step(task, device):
    """A forward + backward of ``task``'s inputs at the shapes of its benchmark (segmentation: 2x19x
    512x1024 logits; restoration: EDSR x2's 16x3x96x96 output; instance masks: 256 ROIs of 28x28 of
    80 classes)."""
    g = torch.Generator().manual_seed(0)
    if task == "segmentation":
        logits = torch.randn(2, 19, 512, 1024, device=device, requires_grad=True)
        label = torch.randint(0, 19, (2, 512, 1024), generator=g).to(device)
        return lambda: tasks.segmentation_inputs(logits, label, validate_args=False)
    if task == "restoration":
        pred = torch.rand(16, 3, 96, 96, device=device, requires_grad=True)
        gt = torch.rand(16, 3, 96, 96, device=device)
        return lambda: tasks.restoration_inputs(pred, gt, validate_args=False)
    roi_logits = torch.randn(256, 80, 28, 28, device=device, requires_grad=True)
    roi_targets = (torch.rand(256, 28, 28, generator=g) > 0.5).float().to(device)
    labels = torch.randint(0, 80, (256,), generator=g).to(device)
    return lambda: tasks.instance_mask_inputs(roi_logits, roi_targets, labels, validate_args=False)


@pytest.mark.parametrize("loss_name", ["random_cnn", "patch_mmd"])
@pytest.mark.parametrize("task", ["segmentation", "restoration", "instance_masks"])
def test_task_defaults_launch_a_bounded_number_of_kernels(task, loss_name):
    cls = RandomCNNPerceptualLoss if loss_name == "random_cnn" else PatchMMDLoss
    loss = cls(**tasks.task_defaults(task, loss_name), validate_args=False)
    inputs = _task_step(task, "meta")
    loss(*inputs()).backward()  # first call: weights and features are drawn
    count = _OpCount()
    with count:
        loss(*inputs()).backward()
    total = sum(count.ops.values())
    assert 20 < total <= LAUNCH_BUDGET, count.ops.most_common(10)


# ----------------------------------------------------------------------------------------------
# Mixed precision: under autocast, with half-precision inputs, every path gives a finite value and
# gradient, within its tolerance of float32 on the same (rounded) inputs
# ----------------------------------------------------------------------------------------------
#: Relative tolerance per loss family: Patch-MMD computes in float32 whatever autocast says (its
#: ``|u|^2 + |v|^2 - 2 u.v`` products cancel in 16 bits); the random CNN's frozen network may run in
#: 16 bits under autocast, with its distances accumulated in float32.
AUTOCAST_RTOL = {"patch_mmd": 1e-4, "random_cnn": 5e-2}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_autocast_gives_finite_values_within_tolerance(name, dtype):
    loss = LOSSES[name](validate_args=False)
    logits, label = _segmentation_batch()
    pred, target, mask = tasks.segmentation_inputs(logits, label, validate_args=False)
    pred_h, target_h = pred.detach().to(dtype).requires_grad_(), target.to(dtype)
    with torch.autocast("cpu", dtype=dtype):
        value = loss(pred_h, target_h, mask)
    (grad,) = torch.autograd.grad(value, pred_h)
    expected = loss(pred_h.detach().float(), target_h.float(), mask)
    assert torch.isfinite(value).all() and torch.isfinite(grad).all()
    if "redraw" not in name:  # a redrawn network differs from call to call
        rtol = AUTOCAST_RTOL["patch_mmd" if name.startswith("patch_mmd") else "random_cnn"]
        torch.testing.assert_close(value.float(), expected, rtol=rtol, atol=1e-6)


def test_the_training_path_runs_on_meta_tensors():
    # the meta device runs the code a GPU runs with no data: a host read or a value-sized op fails
    # there, so every loss of the grid gets through a forward and backward on shapes alone
    for name in sorted(LOSSES):
        loss = LOSSES[name](validate_args=False)
        logits, label = (t.to("meta") for t in _segmentation_batch())
        logits = logits.detach().requires_grad_()
        pred, target, mask = tasks.segmentation_inputs(logits, label, validate_args=False)
        loss(pred, target, mask).backward()
        assert logits.grad.shape == logits.shape, name
