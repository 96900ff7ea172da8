"""One validation policy for both losses: settings are checked when a loss is built, values (NaN, Inf)
with ``validate_args=True``, and legitimate edge cases (an empty batch) give a finite value and a
gradient."""
import math

import pytest
import torch

from randperc_plugins.losses import (PatchMMDLoss, RandomCNNPerceptualLoss, patch_mmd_loss,
                                     random_cnn_perceptual_loss, tasks)
from randperc_plugins.losses.random_cnn import RandomCNNSpec

TINY_CNN = dict(widths=((4,), (8,)), layers=("relu1_1", "relu2_1"))
MODULES = {
    "random_cnn": lambda **kw: RandomCNNPerceptualLoss(**TINY_CNN, **kw),
    "patch_mmd": lambda **kw: PatchMMDLoss(patch_size=3, **kw),
}
FUNCTIONS = {
    "random_cnn": lambda x, y, **kw: random_cnn_perceptual_loss(x, y, spec=RandomCNNSpec(**TINY_CNN),
                                                                **kw),
    "patch_mmd": lambda x, y, **kw: patch_mmd_loss(x, y, patch_size=3, **kw),
}


@pytest.mark.parametrize("value, error", [
    (-1.0, ValueError), (-1, ValueError), (math.nan, ValueError), (math.inf, ValueError),
    ("1.0", TypeError), (True, TypeError), (None, TypeError)])
@pytest.mark.parametrize("loss", sorted(MODULES))
def test_loss_weight_must_be_a_finite_non_negative_number(loss, value, error):
    with pytest.raises(error, match=r"`loss_weight`.*non-negative"):
        MODULES[loss](loss_weight=value)
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(error, match=r"`loss_weight`"):
        FUNCTIONS[loss](x, x, loss_weight=value)


@pytest.mark.parametrize("loss", sorted(MODULES))
def test_a_zero_weight_is_legitimate(loss):
    x = torch.rand(1, 3, 8, 8, requires_grad=True)
    value = MODULES[loss](loss_weight=0)(x, torch.rand(1, 3, 8, 8))
    value.backward()
    assert float(value) == 0.0 and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("name, value", [("redraw", "False"), ("redraw", 0), ("squared", "no")])
def test_booleans_must_be_booleans(name, value):
    with pytest.raises(TypeError, match=rf"`{name}` must be True or False, got str|`{name}` must be True or False, got int"):
        PatchMMDLoss(patch_size=3, **{name: value})
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(TypeError, match=rf"`{name}`"):
        patch_mmd_loss(x, x, patch_size=3, **{name: value})
    if name == "redraw":
        with pytest.raises(TypeError, match=r"`redraw`"):
            RandomCNNPerceptualLoss(**TINY_CNN, redraw=value)


@pytest.mark.parametrize("sigmas", ["0.5", ["0.5", 1.0], (True,)])
def test_sigmas_must_be_numbers(sigmas):
    with pytest.raises(TypeError, match=r"`sigmas` must be a number or a sequence of numbers"):
        PatchMMDLoss(patch_size=3, sigmas=sigmas)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("side", ["pred", "target"])
@pytest.mark.parametrize("loss", sorted(MODULES))
def test_non_finite_values_are_refused_when_validating(loss, side, bad):
    x, y = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    (x if side == "pred" else y)[0, 0, 0, 0] = bad
    with pytest.raises(ValueError, match=rf"`{side}` must be finite"):
        MODULES[loss]()(x, y)


def _empty_case(task):
    if task == "segmentation":
        logits = torch.randn(0, 4, 16, 16, requires_grad=True)
        return logits, lambda: tasks.segmentation_inputs(logits, torch.zeros(0, 16, 16, dtype=torch.long))
    if task == "restoration":
        pred = torch.rand(0, 3, 16, 16, requires_grad=True)
        return pred, lambda: tasks.restoration_inputs(pred, torch.rand(0, 3, 16, 16))
    logits = torch.randn(0, 5, 28, 28, requires_grad=True)
    return logits, lambda: tasks.instance_mask_inputs(logits, torch.rand(0, 28, 28),
                                                      torch.zeros(0, dtype=torch.long))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("loss", ["random_cnn", "patch_mmd"])
@pytest.mark.parametrize("task", ["segmentation", "restoration", "instance_masks"])
def test_an_empty_batch_gives_zero_with_a_gradient(task, loss, reduction):
    cls = RandomCNNPerceptualLoss if loss == "random_cnn" else PatchMMDLoss
    module = cls(**{**tasks.task_defaults(task, loss), "reduction": reduction})
    leaf, inputs = _empty_case(task)
    value = module(*inputs())
    assert value.shape == ((0,) if reduction == "none" else ())
    value.sum().backward()
    assert leaf.grad is not None and leaf.grad.shape == leaf.shape
    if reduction != "none":
        assert float(value.detach()) == 0.0


def test_mask_targets_outside_zero_one_are_refused_when_validating():
    logits = torch.randn(3, 5, 8, 8)
    targets = (torch.rand(3, 8, 8) > 0.5).to(torch.uint8) * 255  # {0, 255} masks, a common mistake
    with pytest.raises(ValueError, match=r"`mask_targets` must be .* \[0, 1\].*got values in \[0, 255\]"):
        tasks.instance_mask_inputs(logits, targets, torch.tensor([0, 4, 2]))
    prob, target = tasks.instance_mask_inputs(logits, targets / 255, torch.tensor([0, 4, 2]))
    assert float(target.max()) == 1.0
    with pytest.raises(ValueError, match=r"`labels` must be classes in \[0, 5\).*\[0, 7\]"):
        tasks.instance_mask_inputs(logits, targets / 255, torch.tensor([0, 7, 2]))


def test_labels_that_are_no_class_are_ignored_without_validation():
    logits = torch.randn(1, 1, 4, 4)  # binary segmentation: classes 0 and 1
    label = torch.tensor([[[0, 1, 3, 255]] * 4])
    prob, target, mask = tasks.segmentation_inputs(logits, label, validate_args=False)
    assert target.max() <= 1 and mask[0, 0, :, 2:].sum() == 0 and mask[0, 0, :, :2].sum() == 8
    logits = torch.randn(1, 3, 4, 4)
    label = torch.tensor([[[0, 2, 7, -1]] * 4])
    _, target, mask = tasks.segmentation_inputs(logits, label, validate_args=False)
    assert mask[0, 0, :, 2:].sum() == 0 and target[0, 2, :, 2].sum() == 0  # 7 is no class 2 stand-in
    with pytest.raises(ValueError, match=r"`label` holds class 7"):
        tasks.segmentation_inputs(logits, label)


@pytest.mark.parametrize("loss", sorted(MODULES))
def test_a_negative_pixel_weight_means_ignored_in_both_losses(loss):
    # refused when validating; without validation, weight <= 0 leaves the pixel out, as weight 0
    x, y = torch.rand(1, 3, 12, 12), torch.rand(1, 3, 12, 12)
    negative, zero = torch.ones(1, 12, 12), torch.ones(1, 12, 12)
    negative[:, :5], zero[:, :5] = -1.0, 0.0
    with pytest.raises(ValueError, match=r"`weight`.*negative"):
        MODULES[loss]()(x, y, negative)
    torch.testing.assert_close(MODULES[loss](validate_args=False)(x, y, negative),
                               MODULES[loss](validate_args=False)(x, y, zero))


def test_patch_mmd_refuses_0_255_images_with_its_default_bandwidths_when_validating():
    x, y = torch.rand(1, 3, 12, 12) * 255, torch.rand(1, 3, 12, 12) * 255
    with pytest.raises(ValueError, match=r"values of magnitude 25.*, but the default `sigmas` are for images in \[0, 1\]"):
        PatchMMDLoss(patch_size=3)(x, y)
    # the mistake it catches: every 0..255 pair gives the same value with no gradient
    xg = x.clone().requires_grad_()
    value = PatchMMDLoss(patch_size=3, validate_args=False)(xg, y)
    value.backward()
    assert float(xg.grad.abs().max()) < 1e-20  # kernel values at the exponent floor, exp(-80)
    # bandwidths of the user's own are the user's choice; [0, 1] images pass
    PatchMMDLoss(patch_size=3, sigmas=(200.0,))(x, y)
    PatchMMDLoss(patch_size=3)(x / 255, y / 255)


@pytest.mark.parametrize("loss", ["random_cnn", "patch_mmd"])
@pytest.mark.parametrize("rois", [0, 1, 5, 8])
def test_roi_buckets_leave_each_rois_value_and_gradient_unchanged(loss, rois):
    cls = RandomCNNPerceptualLoss if loss == "random_cnn" else PatchMMDLoss
    core = cls(**{**tasks.task_defaults("instance_masks", loss), "reduction": "none"})
    g = torch.Generator().manual_seed(rois)
    logits = torch.randn(rois, 3, 28, 28, generator=g, dtype=torch.float64, requires_grad=True)
    targets = (torch.rand(rois, 28, 28, generator=g) > 0.5).double()
    labels = torch.randint(0, 3, (rois,), generator=g)
    prob, target = tasks.instance_mask_inputs(logits, targets, labels)
    expected = core(prob, target)
    (g_expected,) = (torch.autograd.grad(expected.sum(), logits, retain_graph=True) if rois
                     else (torch.zeros(0),))
    seen = []
    got = tasks.per_roi_in_buckets(lambda p, t: seen.append(p.shape[0]) or core(p, t), prob, target,
                                   bucket=8)
    assert seen == [8 if rois else 0] and got.shape == (rois,)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-15)
    if rois:
        (g_got,) = torch.autograd.grad(got.sum(), logits)
        torch.testing.assert_close(g_got, g_expected, rtol=1e-12, atol=1e-15)


def test_one_name_per_loss_and_task_and_earlier_spellings_warn():
    from randperc_plugins.losses import CORE_LOSSES, names

    assert tuple(CORE_LOSSES) == names.LOSSES
    assert set(tasks.TASK_DEFAULTS) == set(names.TASKS)
    assert all(set(per_task) == set(names.LOSSES) for per_task in tasks.TASK_DEFAULTS.values())
    with pytest.warns(FutureWarning, match="'sr' is an earlier spelling of 'restoration'"):
        assert tasks.task_defaults("sr", "gpl") == tasks.task_defaults("restoration", "random_cnn")
    with pytest.raises(ValueError, match=r"`task` must be one of \('segmentation', 'instance_masks', "
                                         r"'restoration'\), got 'depth'"):
        tasks.task_defaults("depth", "random_cnn")
    with pytest.raises(ValueError, match="`loss` must be one of"):
        tasks.task_defaults("segmentation", "vgg")
