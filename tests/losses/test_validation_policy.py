"""The validation policy of the core losses and the task layer (docs/losses.md, "What is checked, and when").

Settings are checked when a loss is built; values (NaN/Inf, value range, weight sign, label range) per
call only with ``validate_args=True``; without it every case has one documented meaning, the same in
both losses, and nothing is read on the host. Legitimate edge cases (an empty batch, no ROI) give a
finite 0 with a gradient.
"""
import math

import numpy as np
import pytest
import torch

from randperc_plugins.losses import (PatchMMDLoss, RandomCNNPerceptualLoss, patch_mmd_loss,
                                     random_cnn_perceptual_loss, tasks)

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(widths=((4,), (8,)), layers=("relu1_1", "relu2_1"))
#: each loss as a module and as a function, with small settings
BUILD = {
    "random_cnn": lambda **kw: RandomCNNPerceptualLoss(**TINY, **kw),
    "patch_mmd": lambda **kw: PatchMMDLoss(patch_size=3, **kw),
}
CALL = {
    "random_cnn": lambda p, t, w=None, **kw: random_cnn_perceptual_loss(
        p, t, w, spec=__import__("randperc_plugins").losses.RandomCNNSpec(**TINY), **kw),
    "patch_mmd": lambda p, t, w=None, **kw: patch_mmd_loss(p, t, w, patch_size=3, **kw),
}
LOSSES = sorted(BUILD)


def _images(n=2, c=3, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, c, size, size, generator=g, dtype=torch.float64),
            torch.rand(n, c, size, size, generator=g, dtype=torch.float64))


# ----------------------------------------------------------------------------------------------
# Settings, checked when the loss is built
# ----------------------------------------------------------------------------------------------
BAD_WEIGHTS = [(-0.5, ValueError), (float("nan"), ValueError), (float("inf"), ValueError),
               ("0.5", TypeError), (None, TypeError), (True, TypeError), (torch.tensor(0.5), TypeError)]


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("value, error", BAD_WEIGHTS, ids=[repr(b[0]) for b in BAD_WEIGHTS])
def test_bad_loss_weight_is_refused_by_module_and_function(loss, value, error):
    with pytest.raises(error, match=r"`loss_weight` must be a (finite, )?non-negative number.*got"):
        BUILD[loss](loss_weight=value)
    x, y = _images()
    with pytest.raises(error, match=r"`loss_weight` must be a (finite, )?non-negative number.*got"):
        CALL[loss](x, y, loss_weight=value)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("value", [0, 0.0, 2, np.float32(0.5)])
def test_legitimate_loss_weights_are_accepted(loss, value):
    x, y = _images()
    out = BUILD[loss](loss_weight=value)(x, y)
    assert torch.isfinite(out) and math.isclose(float(out), float(value) * float(BUILD[loss]()(x, y)),
                                                rel_tol=1e-6, abs_tol=1e-12)


BAD_BOOLS = [("random_cnn", "redraw", "False"), ("random_cnn", "normalize", "no"),
             ("random_cnn", "redraw", 1), ("patch_mmd", "redraw", "False"),
             ("patch_mmd", "squared", "no"), ("patch_mmd", "squared", 0)]


@pytest.mark.parametrize("loss, name, value", BAD_BOOLS)
def test_booleans_must_be_bools(loss, name, value):
    with pytest.raises(TypeError, match=rf"`{name}` must be True or False, got {type(value).__name__} {value!r}"):
        BUILD[loss](**{name: value})


BAD_SEQUENCES = [("patch_mmd", "sigmas", "0.5", TypeError), ("patch_mmd", "sigmas", [0.5, "1"], TypeError),
                 ("patch_mmd", "sigmas", [0.5, float("nan")], ValueError),
                 ("patch_mmd", "sigma_weights", "ab", TypeError),
                 ("random_cnn", "layer_weights", "12", TypeError),
                 ("random_cnn", "layer_weights", [1.0, float("inf")], ValueError),
                 ("random_cnn", "init_std", "0.1", TypeError)]


@pytest.mark.parametrize("loss, name, value, error", BAD_SEQUENCES)
def test_numbers_given_as_strings_are_refused(loss, name, value, error):
    kw = {name: value}
    if name == "sigma_weights":
        kw["sigmas"] = (0.5, 1.0)
    if name == "init_std":
        kw["init"] = "normal"
    with pytest.raises(error, match=rf"`{name}` must"):
        BUILD[loss](**kw)


# ----------------------------------------------------------------------------------------------
# Values, checked per call with validate_args=True
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("which", ["pred", "target"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nan_and_inf_are_refused_in_pred_and_target(loss, which, bad):
    x, y = _images()
    (x if which == "pred" else y)[0, 0, 2, 2] = bad
    with pytest.raises(ValueError, match=rf"`{which}` must be finite, but it holds NaN or Inf"):
        BUILD[loss]()(x, y)


def test_patch_mmd_refuses_images_in_0_255_with_its_default_bandwidths():
    x, y = _images()
    with pytest.raises(ValueError, match=r"`pred` or `target` holds values of magnitude 2\d\d.*, but the "
                                         r"default `sigmas` are for images in \[0, 1\]"):
        PatchMMDLoss(patch_size=3)(x * 255, y * 255)
    # why: every kernel value between different patches is 0 there, so the loss is one constant,
    # the same for any pair of images, with a zero gradient
    pred = (x * 255).requires_grad_()
    a = PatchMMDLoss(patch_size=3, validate_args=False)(pred, y * 255)
    b = PatchMMDLoss(patch_size=3, validate_args=False)(torch.flip(x, (2,)) * 255, y.flip(3) * 255)
    a.backward()
    assert torch.allclose(a, b) and pred.grad.abs().max() < 1e-20
    # bandwidths chosen for the range are the user's call; the random-CNN kernel has none
    PatchMMDLoss(patch_size=3, sigmas=(100.0, 300.0))(x * 255, y * 255)
    PatchMMDLoss(patch_size=3, kernel="random_cnn")(x * 255, y * 255)
    # masked pixels may hold anything finite
    w = torch.ones(2, 8, 8)
    w[:, 4:] = 0
    x2 = x.clone()
    x2[:, :, 4:] = 255
    PatchMMDLoss(patch_size=3)(x2, y, w)


def test_random_cnn_accepts_any_range():
    # positively homogeneous: 255x the images give 255x the loss, a valid (if unscaled) value
    x, y = _images()
    small = RandomCNNPerceptualLoss(**TINY, balance="none")(x, y)
    large = RandomCNNPerceptualLoss(**TINY, balance="none")(x * 255, y * 255)
    assert torch.allclose(large, 255 * small)


# ----------------------------------------------------------------------------------------------
# One meaning for each case, the same in both losses
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("bad", [-1.0, float("nan")])
def test_negative_or_nan_pixel_weight_is_an_error_or_ignores_the_pixel(loss, bad):
    x, y = _images(size=10)
    w = torch.ones(2, 10, 10, dtype=torch.float64)
    w[:, 6:] = bad
    with pytest.raises(ValueError, match="`weight` must be"):
        BUILD[loss](validate_args=True)(x, y, w)
    zero = w.clone()
    zero[:, 6:] = 0
    got = BUILD[loss](validate_args=False, reduction="none")(x, y, w)
    expected = BUILD[loss](validate_args=False, reduction="none")(x, y, zero)
    assert torch.isfinite(got).all() and torch.equal(got, expected)


@pytest.mark.parametrize("loss", LOSSES)
def test_target_is_a_constant_in_both_losses(loss):
    x, y = _images()
    pred, target = x.clone().requires_grad_(), y.clone().requires_grad_()
    out = BUILD[loss]()(pred, target)
    out.backward()
    assert target.grad is None and pred.grad is not None and pred.grad.abs().max() > 0
    assert torch.equal(out, BUILD[loss]()(x, y))


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_empty_batch_gives_zero_with_a_gradient(loss, reduction):
    pred = torch.rand(0, 3, 8, 8, requires_grad=True)
    out = BUILD[loss](reduction=reduction)(pred, torch.rand(0, 3, 8, 8))
    assert out.shape == ((0,) if reduction == "none" else ())
    assert torch.isfinite(out).all() and (out == 0).all()
    out.sum().backward()
    assert pred.grad is not None and pred.grad.shape == pred.shape


# ----------------------------------------------------------------------------------------------
# The task layer
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("loss", LOSSES)
def test_zero_rois_give_zero_with_a_gradient(loss):
    logits = torch.randn(0, 5, 12, 12, requires_grad=True)
    prob, target = tasks.instance_mask_inputs(logits, torch.zeros(0, 12, 12),
                                              torch.zeros(0, dtype=torch.long))
    out = BUILD[loss]()(prob, target)
    assert float(out.detach()) == 0.0
    out.backward()
    assert logits.grad is not None and logits.grad.shape == logits.shape


@pytest.mark.parametrize("channels, bad_label", [(1, 3), (1, 2), (4, 4), (4, 200)])
def test_labels_that_are_no_class_are_ignored_without_validation(channels, bad_label):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, channels, 8, 8, generator=g)
    label = torch.randint(0, max(channels, 2), (2, 8, 8), generator=g)
    label[:, :2] = bad_label
    probs, one_hot, mask = tasks.segmentation_inputs(logits, label, validate_args=False)
    ignored = label.clone()
    ignored[:, :2] = 255
    probs2, one_hot2, mask2 = tasks.segmentation_inputs(logits, ignored, validate_args=False)
    assert torch.equal(mask, mask2) and float(mask[:, :, :2].abs().sum()) == 0
    assert one_hot.max() <= 1  # never a target of 3.0
    for loss in LOSSES:
        core = BUILD[loss](validate_args=False)
        assert torch.equal(core(probs, one_hot, mask), core(probs2, one_hot2, mask2))
    with pytest.raises(ValueError, match=rf"`label` holds class {bad_label}, but `logits` has "
                                         rf"{channels} channels"):
        tasks.segmentation_inputs(logits, label, validate_args=True)


def test_roi_with_an_unknown_class_contributes_zero_without_validation():
    logits = torch.randn(3, 4, 10, 10, requires_grad=True)
    targets = (torch.rand(3, 10, 10) > 0.5).float()
    labels = torch.tensor([1, 7, -1])
    prob, target = tasks.instance_mask_inputs(logits, targets, labels, validate_args=False)
    for loss in LOSSES:
        per_roi = BUILD[loss](validate_args=False, reduction="none")(prob, target)
        assert per_roi[0] > 0 and per_roi[1] == 0 and per_roi[2] == 0
    (g,) = torch.autograd.grad(BUILD["random_cnn"](validate_args=False)(prob, target), logits)
    assert g[0].abs().max() > 0 and g[1:].abs().max() == 0
    with pytest.raises(ValueError, match=r"`labels` must be classes in \[0, 4\)"):
        tasks.instance_mask_inputs(logits, targets, labels)


@pytest.mark.parametrize("targets, seen", [
    (lambda: (torch.rand(3, 10, 10) > 0.5).to(torch.uint8) * 255, r"\[0, 255\]"),
    (lambda: torch.rand(3, 10, 10) * 2 - 1, r"\[-0\.\d+, 0\.\d+\]")])
def test_mask_targets_outside_0_1_are_refused(targets, seen):
    with pytest.raises(ValueError, match=rf"`mask_targets` must be foreground fractions in \[0, 1\].*got "
                                         rf"values in {seen}"):
        tasks.instance_mask_inputs(torch.randn(3, 4, 10, 10), targets(), torch.tensor([0, 1, 2]))


@pytest.mark.parametrize("which", ["mask_logits", "mask_targets"])
def test_instance_masks_refuse_nan(which):
    logits, targets = torch.randn(2, 3, 6, 6), torch.rand(2, 6, 6)
    (logits if which == "mask_logits" else targets)[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=rf"`{which}` must be finite"):
        tasks.instance_mask_inputs(logits, targets, torch.tensor([0, 2]))


def test_segmentation_refuses_nan_logits():
    logits = torch.randn(1, 3, 4, 4)
    logits[0, 1, 1, 1] = float("inf")
    with pytest.raises(ValueError, match="`logits` must be finite"):
        tasks.segmentation_inputs(logits, torch.zeros(1, 4, 4, dtype=torch.long))


@pytest.mark.parametrize("scale, seen", [(255.0, r"\[[\d.]+, 2\d\d\.?\d*\]"), (-1.0, r"\[-0\.\d+, -0\.\d+\]")])
@pytest.mark.parametrize("which", ["pred", "target"])
def test_restoration_refuses_images_outside_0_1(scale, seen, which):
    x, y = _images()
    if which == "pred":
        x = x * scale
    else:
        y = y * scale
    with pytest.raises(ValueError, match=rf"`{which}` holds values in {seen}, but the restoration "
                                         rf"defaults .* assume RGB in \[0, 1\]"):
        tasks.restoration_inputs(x, y)
    tasks.restoration_inputs(x, y, validate_args=False)  # the training path: no host read, no check


@pytest.mark.parametrize("which", ["pred", "target"])
def test_restoration_refuses_nan(which):
    x, y = _images()
    (x if which == "pred" else y)[1, 2, 3, 4] = float("nan")
    with pytest.raises(ValueError, match=rf"`{which}` must be finite"):
        tasks.restoration_inputs(x, y)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("task", ["segmentation", "restoration"])
def test_empty_batch_through_the_task_layer_gives_zero_with_a_gradient(loss, task):
    if task == "segmentation":
        source = torch.randn(0, 3, 8, 8, requires_grad=True)
        pred, target, mask = tasks.segmentation_inputs(source, torch.zeros(0, 8, 8, dtype=torch.long))
    else:
        source = torch.rand(0, 3, 8, 8, requires_grad=True)
        (pred, target), mask = tasks.restoration_inputs(source, torch.rand(0, 3, 8, 8)), None
    out = BUILD[loss]()(pred, target, mask)
    assert out.shape == () and float(out.detach()) == 0.0
    out.backward()
    assert source.grad is not None and source.grad.shape == source.shape


PATCH_MMD_PATHS = [dict(), dict(method="random_features", num_features=16), dict(window_size=6),
                   dict(window_size=6, method="random_features", num_features=16), dict(levels=2),
                   dict(kernel="random_cnn"), dict(kernel="random_cnn", method="random_features",
                                                   num_features=16, depth=2), dict(max_patches=10)]


@pytest.mark.parametrize("settings", PATCH_MMD_PATHS, ids=[str(s) for s in PATCH_MMD_PATHS])
@pytest.mark.parametrize("masked", [False, True])
def test_empty_batch_gives_zero_on_every_patch_mmd_path(settings, masked):
    pred = torch.rand(0, 3, 12, 12, requires_grad=True)
    weight = torch.ones(0, 12, 12) if masked else None
    out = PatchMMDLoss(patch_size=3, **settings)(pred, torch.rand(0, 3, 12, 12), weight)
    assert out.shape == () and float(out.detach()) == 0.0
    out.backward()
    assert pred.grad is not None and pred.grad.shape == pred.shape
    squared, terms = PatchMMDLoss(patch_size=3, squared=True, reduction="none", **settings)(
        pred, torch.rand(0, 3, 12, 12), weight, return_terms=True)
    assert squared.shape == (0,) and all(v.shape == (0,) for v in terms.values()) and terms
