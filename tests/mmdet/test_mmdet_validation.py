"""The validation policy in the mmdet adapter (docs/losses.md, "What is checked, and when"): settings
checked when the config builds (weights, a composite that lost its baseline's keys, a clashing name),
avg_factor=0 as mmdet's own losses treat it, no host read on the training path."""
import pytest
import torch

pytest.importorskip("mmdet")
from mmdet.models.losses.utils import weight_reduce_loss  # noqa: E402
from mmdet.registry import MODELS  # noqa: E402
from mmdet.utils import register_all_modules  # noqa: E402

import randperc_plugins.mmdet as rp_mmdet  # noqa: E402

register_all_modules(init_default_scope=True)

TERMS = ["RandomCNNPerceptualLoss", "PatchMMDLoss"]
BAD_WEIGHTS = [(-1.0, ValueError), (float("nan"), ValueError), (float("inf"), ValueError),
               ("0.2", TypeError)]


def _rois(r=4, k=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(r, k, 28, 28, generator=g, requires_grad=True)
    targets = (torch.rand(r, 28, 28, generator=g) > 0.6).float()
    return logits, targets, torch.randint(0, k, (r,), generator=g)


@pytest.mark.parametrize("name", TERMS)
@pytest.mark.parametrize("value, error", BAD_WEIGHTS, ids=[repr(v) for v, _ in BAD_WEIGHTS])
def test_bad_loss_weight_is_refused_in_both_forms(name, value, error):
    with pytest.raises(error, match=r"loss_weight.*must be a (finite, )?non-negative number.*got"):
        MODELS.build(dict(type=f"randperc_plugins.mmdet.{name}", loss_weight=value))
    with pytest.raises(error, match=r"loss_weight.*must be a (finite, )?non-negative number.*got"):
        MODELS.build(dict(type=f"randperc_plugins.mmdet.Add{name}", use_mask=True,
                          perceptual=dict(loss_weight=value)))


@pytest.mark.parametrize("name", TERMS)
def test_composite_without_the_baselines_use_mask_says_what_to_write(name):
    # what `loss_mask=dict(_delete_=True, type=...)` builds: mmdet's softmax cross-entropy on binary
    # mask targets would fail deep inside ("expected scalar type Long but found Float")
    with pytest.raises(ValueError, match=rf"needs `use_mask=True`.*write loss_mask=dict\(type="
                                         rf"'randperc_plugins.mmdet.Add{name}', use_mask=True, "
                                         rf"loss_weight=1.0\)"):
        MODELS.build(dict(type=f"randperc_plugins.mmdet.Add{name}"))
    MODELS.build(dict(type=f"randperc_plugins.mmdet.Add{name}", use_mask=True))
    MODELS.build(dict(type=f"randperc_plugins.mmdet.Add{name}", base_type="DiceLoss"))


@pytest.mark.parametrize("name", TERMS)
@pytest.mark.parametrize("clash", ["loss_mask", "loss_mask_ce"])
def test_term_named_like_the_baseline_is_refused(name, clash):
    with pytest.raises(ValueError, match=rf"(?s)(?=.*loss_name)(?=.*'{clash}')(?=.*(own name|must differ))"):
        MODELS.build(dict(type=f"randperc_plugins.mmdet.Add{name}", use_mask=True,
                          perceptual=dict(loss_name=clash)))
    with pytest.raises(TypeError, match=r"`perceptual`.* must be a dict .*perceptual=dict\("):
        MODELS.build(dict(type=f"randperc_plugins.mmdet.Add{name}", use_mask=True, perceptual="x"))


@pytest.mark.parametrize("name", TERMS)
@pytest.mark.parametrize("weight, avg_factor", [("zeros", 0), ("ones", 0), ("ones", 2.5), ("random", 1)])
def test_avg_factor_follows_mmdets_weight_reduce_loss(name, weight, avg_factor):
    # reference: mmdet's own weight_reduce_loss on our per-ROI values (avg_factor + eps: 0 gives no Inf)
    logits, targets, labels = _rois()
    w = {"zeros": torch.zeros(4), "ones": torch.ones(4),
         "random": torch.rand(4, generator=torch.Generator().manual_seed(5))}[weight]
    loss = getattr(rp_mmdet, name)()
    value = loss(logits, targets, labels, weight=w, avg_factor=avg_factor)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(logits.grad).all()
    per_roi = loss(logits, targets, labels, reduction_override="none").detach()
    expected = weight_reduce_loss(per_roi, w, reduction="mean", avg_factor=avg_factor)
    torch.testing.assert_close(value.detach(), expected)


@pytest.mark.parametrize("name", TERMS)
def test_validate_args_must_be_a_bool_or_none(name):
    with pytest.raises(TypeError, match="`validate_args` must be a bool"):
        getattr(rp_mmdet, name)(validate_args="True")


@pytest.mark.parametrize("name", TERMS)
def test_uint8_masks_in_0_255_are_refused_with_validate_args(name):
    logits, targets, labels = _rois()
    with pytest.raises(ValueError, match=r"`mask_targets` must be foreground fractions in \[0, 1\].*got values in \[0, 255\]"):
        getattr(rp_mmdet, name)(validate_args=True)(logits, (targets * 255).to(torch.uint8), labels)
