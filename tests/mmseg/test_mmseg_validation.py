"""The validation policy in the mmseg adapter (docs/losses.md, "What is checked, and when"): settings
checked when the config builds, with an error that says what to write; out-of-range labels ignored on the
training path."""
import pytest
import torch

pytest.importorskip("mmseg")
from mmseg.registry import MODELS  # noqa: E402
from mmseg.utils import register_all_modules  # noqa: E402

import randperc_plugins.mmseg as rp_mmseg  # noqa: E402

register_all_modules(init_default_scope=True)

TERMS = ["RandomCNNPerceptualLoss", "PatchMMDLoss"]
COMPOSITES = ["AddRandomCNNPerceptualLoss", "AddPatchMMDLoss"]
BAD_WEIGHTS = [(-1.0, ValueError), (float("nan"), ValueError), (float("inf"), ValueError),
               ("0.5", TypeError)]


@pytest.mark.parametrize("name", TERMS)
@pytest.mark.parametrize("value, error", BAD_WEIGHTS, ids=[repr(v) for v, _ in BAD_WEIGHTS])
def test_bad_loss_weight_is_refused_in_both_forms(name, value, error):
    with pytest.raises(error, match=r"loss_weight.*must be a (finite, )?non-negative number.*got"):
        MODELS.build(dict(type=f"randperc_plugins.mmseg.{name}", loss_weight=value))
    with pytest.raises(error, match=r"loss_weight.*must be a (finite, )?non-negative number.*got"):
        MODELS.build(dict(type=f"randperc_plugins.mmseg.Add{name}", perceptual=dict(loss_weight=value)))


@pytest.mark.parametrize("name", COMPOSITES)
def test_perceptual_that_is_not_a_dict_says_what_to_write(name):
    with pytest.raises(TypeError, match=r"`perceptual`.* must be a dict .*perceptual=dict\(.*got.*'patch_size=3'"):
        MODELS.build(dict(type=f"randperc_plugins.mmseg.{name}", perceptual="patch_size=3"))


@pytest.mark.parametrize("name", COMPOSITES)
def test_term_named_like_the_baseline_is_refused(name):
    with pytest.raises(ValueError, match=r"(?s)(?=.*loss_name)(?=.*'loss_ce')(?=.*(own name|must differ))"):
        MODELS.build(dict(type=f"randperc_plugins.mmseg.{name}", loss_name="loss_ce",
                          perceptual=dict(loss_name="loss_ce")))
    # another name is fine, and so is the baseline's own name left to it
    built = MODELS.build(dict(type=f"randperc_plugins.mmseg.{name}", loss_name="loss_ce",
                              perceptual=dict(loss_name="loss_term")))
    assert [m.loss_name for m in built] == ["loss_ce", "loss_term"]


@pytest.mark.parametrize("name", TERMS)
def test_string_booleans_are_refused(name):
    key = "redraw"
    with pytest.raises(TypeError, match=rf"`{key}` must be (a bool|True or False)"):
        MODELS.build(dict(type=f"randperc_plugins.mmseg.{name}", **{key: "False"}))
    with pytest.raises(TypeError, match="`validate_args` must be a bool"):
        MODELS.build(dict(type=f"randperc_plugins.mmseg.{name}", validate_args="no"))


@pytest.mark.parametrize("name", TERMS)
def test_labels_that_are_no_class_are_ignored_on_the_training_path(name, host_reads):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 16, 16, generator=g, requires_grad=True)
    label = torch.randint(0, 4, (2, 16, 16), generator=g)
    label[:, :4] = 7  # not a class of 4 channels
    ignored = label.clone()
    ignored[:, :4] = 255
    kw = dict(patch_size=3, method="exact") if name == "PatchMMDLoss" else {}
    loss = getattr(rp_mmseg, name)(**kw)
    got = loss(logits, label)
    got.backward()
    assert host_reads == []
    assert torch.equal(got, loss(logits, ignored))
    assert logits.grad[:, :, :4].abs().max() == 0  # ignored pixels get no gradient
    with pytest.raises(ValueError, match=r"`label` holds class 7, but `logits` has 4 channels"):
        getattr(rp_mmseg, name)(validate_args=True, **kw)(logits, label)


@pytest.mark.parametrize("name", TERMS)
def test_nan_logits_are_refused_with_validate_args(name):
    logits = torch.randn(1, 3, 8, 8)
    logits[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="`logits` must be finite"):
        getattr(rp_mmseg, name)(validate_args=True)(logits, torch.zeros(1, 8, 8, dtype=torch.long))
