"""The mmdet adapter: registry, the mask-head call, logging of each term, edge cases and bad input."""
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("mmdet")
from mmengine.config import Config  # noqa: E402
from mmengine.logging import MessageHub  # noqa: E402
from mmdet.registry import MODELS  # noqa: E402
from mmdet.utils import register_all_modules  # noqa: E402

import randperc_plugins.mmdet as rp_mmdet  # noqa: E402
from randperc_plugins.losses.patch_mmd import PatchMMDLoss as CorePatchMMD  # noqa: E402
from randperc_plugins.losses.random_cnn import RandomCNNPerceptualLoss as CoreRandomCNN  # noqa: E402
from randperc_plugins.losses.tasks import task_defaults  # noqa: E402

register_all_modules(init_default_scope=True)

ADAPTERS = [
    ("RandomCNNPerceptualLoss", CoreRandomCNN, "loss_mask_gpl", "random_cnn"),
    ("PatchMMDLoss", CorePatchMMD, "loss_mask_patch_mmd", "patch_mmd"),
]
COMPOSITES = [("AddRandomCNNPerceptualLoss", "loss_mask_gpl"), ("AddPatchMMDLoss", "loss_mask_patch_mmd")]
# mmdet's mask head's loss_mask, as its configs write it
BASELINE_MASK_LOSS = dict(type="CrossEntropyLoss", use_mask=True, loss_weight=1.0)
BASELINE_ARGS = dict(use_mask=True, loss_weight=1.0)  # what the merge leaves beside our type


def _rois(r=5, k=6, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(r, k, 28, 28, generator=g, dtype=dtype)
    targets = (torch.rand(r, 28, 28, generator=g) > 0.6).to(dtype)
    labels = torch.randint(0, k, (r,), generator=g)
    return logits.requires_grad_(), targets, labels


@pytest.mark.parametrize("name,core_cls,default_name,key", ADAPTERS)
def test_registered_by_short_and_dotted_name(name, core_cls, default_name, key):
    by_short = MODELS.build(dict(type=name))
    by_path = MODELS.build(dict(type=f"randperc_plugins.mmdet.{name}"))
    assert type(by_short) is type(by_path) is getattr(rp_mmdet, name)
    assert by_short.loss_name == default_name
    assert by_short.loss_weight == task_defaults("instance_masks", key)["loss_weight"]
    assert by_short.state_dict() == {}


@pytest.mark.parametrize("name,core_cls,default_name,key", ADAPTERS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_value_is_core_on_each_rois_own_class(name, core_cls, default_name, key, reduction):
    logits, targets, labels = _rois()
    loss = getattr(rp_mmdet, name)(loss_weight=0.7, reduction=reduction)
    got = loss(logits, targets, labels)
    # Independent reference: one ROI at a time, its channel picked by indexing, float64.
    core = core_cls(reduction="none", **{k: v for k, v in task_defaults("instance_masks", key).items()
                                         if k != "loss_weight"})
    per_roi = torch.cat([core(torch.sigmoid(logits[i, labels[i]])[None, None], targets[i][None, None])
                         for i in range(len(labels))])
    expected = 0.7 * {"mean": per_roi.mean(), "sum": per_roi.sum(), "none": per_roi}[reduction]
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("name", ["RandomCNNPerceptualLoss", "PatchMMDLoss"])
def test_gradient_reaches_only_the_ground_truth_channel(name):
    logits, targets, labels = _rois()
    getattr(rp_mmdet, name)()(logits, targets, labels).backward()
    touched = logits.grad.abs().sum((2, 3)) > 0
    expected = F.one_hot(labels, logits.shape[1]).bool()
    assert torch.equal(touched, expected)


@pytest.mark.parametrize("name", ["RandomCNNPerceptualLoss", "PatchMMDLoss"])
def test_class_agnostic_head(name):
    logits, targets, _ = _rois(k=1)
    loss = getattr(rp_mmdet, name)()
    # mmdet passes zeros as labels for a class-agnostic head
    value = loss(logits, targets, torch.zeros(5, dtype=torch.long))
    core_value = loss(logits.detach(), targets, torch.full((5,), 3))  # labels are ignored when K = 1
    torch.testing.assert_close(value.detach(), core_value)
    value.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


@pytest.mark.parametrize("name,default_name", COMPOSITES)
def test_composite_is_mmdet_mask_bce_plus_term_each_logged(name, default_name):
    cfg = Config(dict(model=dict(loss_mask=BASELINE_MASK_LOSS)))
    cfg.merge_from_dict({"model.loss_mask": dict(type=f"randperc_plugins.mmdet.{name}")})
    loss = MODELS.build(cfg.model.loss_mask)
    assert loss.base.use_mask and loss.base.loss_weight == 1.0  # the baseline's keys survive the merge
    logits, targets, labels = _rois(dtype=torch.float32)
    hub = MessageHub.get_instance("test_mmdet_composite_" + name)
    MessageHub._instance_dict.move_to_end(hub.instance_name)  # make it the current instance
    total = loss(logits, targets, labels)
    bce = F.binary_cross_entropy_with_logits(logits[torch.arange(5), labels], targets)
    term = loss.perceptual(logits, targets, labels)
    torch.testing.assert_close(total.reshape(()), (bce + term).reshape(()))
    assert hub.get_scalar("train/loss_mask_ce").current() == pytest.approx(bce.item(), rel=1e-6)
    assert hub.get_scalar(f"train/{default_name}").current() == pytest.approx(term.item(), rel=1e-6)
    total.sum().backward()
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("name,default_name", COMPOSITES)
def test_weight_zero_is_bit_identical_to_the_baseline(name, default_name):
    loss = MODELS.build(dict(type=name, perceptual=dict(loss_weight=0.0), **BASELINE_ARGS))
    base = MODELS.build(BASELINE_MASK_LOSS)
    logits, targets, labels = _rois(dtype=torch.float32)
    twin = logits.detach().clone().requires_grad_()
    got, ref = loss(logits, targets, labels), base(twin, targets, labels)
    got.sum().backward()
    ref.sum().backward()
    assert torch.equal(got, ref) and torch.equal(logits.grad, twin.grad)


@pytest.mark.parametrize("name", ["RandomCNNPerceptualLoss", "PatchMMDLoss", "AddRandomCNNPerceptualLoss"])
@pytest.mark.parametrize("k", [1, 6])
def test_no_positive_roi_gives_zero_with_gradient(name, k):
    loss = MODELS.build(dict(type=name, **(BASELINE_ARGS if name.startswith("Add") else {})))
    logits = torch.randn(0, k, 28, 28, requires_grad=True)
    value = getattr(loss, "perceptual", loss)(logits, torch.zeros(0, 28, 28), torch.zeros(0, dtype=torch.long))
    assert value.shape == () and value.item() == 0.0
    value.backward()
    assert logits.grad is not None and logits.grad.shape == logits.shape


@pytest.mark.parametrize("args,argument", [
    ((torch.randn(4, 6, 28, 28), torch.zeros(4, 14, 14), torch.zeros(4, dtype=torch.long)), "`mask_targets`"),
    ((torch.randn(4, 6, 28, 28), torch.zeros(3, 28, 28), torch.zeros(4, dtype=torch.long)), "`mask_targets`"),
    ((torch.randn(4, 6, 28, 28), torch.zeros(4, 28, 28), torch.zeros(3, dtype=torch.long)), "`labels`"),
    ((torch.randn(4, 6, 28, 28), torch.zeros(4, 28, 28), torch.tensor([0, 1, 6, 2])), "`labels`"),
    ((torch.randn(4, 6, 28, 28), torch.zeros(4, 28, 28), torch.tensor([0, -1, 2, 2])), "`labels`"),
    ((torch.randn(4, 28, 28), torch.zeros(4, 28, 28), torch.zeros(4, dtype=torch.long)), "`mask_logits`"),
])
def test_bad_input_names_the_argument(args, argument):
    # the label range is a value check (a host read): with validate_args=True, as in every adapter
    with pytest.raises((ValueError, TypeError), match=argument):
        rp_mmdet.RandomCNNPerceptualLoss(validate_args=True)(*args)


def test_without_validation_an_roi_whose_label_is_no_channel_contributes_nothing():
    logits = torch.randn(4, 6, 28, 28, requires_grad=True)
    targets = (torch.rand(4, 28, 28) > 0.5).float()
    loss = rp_mmdet.RandomCNNPerceptualLoss(reduction="none")
    per_roi = loss(logits, targets, torch.tensor([0, 1, 6, 2]))
    assert per_roi[2] == 0 and torch.isfinite(per_roi).all()
    per_roi.sum().backward()
    assert logits.grad[2].abs().sum() == 0


def test_bad_weight_and_config_are_named():
    logits, targets, labels = _rois()
    with pytest.raises(ValueError, match="`weight`"):
        rp_mmdet.PatchMMDLoss()(logits, targets, labels, weight=torch.ones(3))
    with pytest.raises(ValueError, match="`loss_name`"):
        rp_mmdet.PatchMMDLoss(loss_name="mask_mmd")
    with pytest.raises(TypeError, match="`perceptual`"):
        rp_mmdet.AddPatchMMDLoss(perceptual=0.5, use_mask=True)


@pytest.mark.parametrize("name", ["RandomCNNPerceptualLoss", "PatchMMDLoss"])
def test_avg_factor_zero_gives_a_finite_value(name):
    # as mmdet's weight_reduce_loss: the sum over an avg_factor of 0 plus float32's eps, not Inf
    logits, targets, labels = _rois()
    logits.requires_grad_()
    loss = getattr(rp_mmdet, name)(loss_weight=1.0)
    value = loss(logits, targets, labels, weight=torch.zeros(len(labels)), avg_factor=0)
    value.backward()
    assert torch.isfinite(value) and float(value) == 0.0 and torch.isfinite(logits.grad).all()
    per_roi = loss(logits, targets, labels, reduction_override="none")
    got = loss(logits, targets, labels, avg_factor=2.0)
    torch.testing.assert_close(got, per_roi.sum() / (2.0 + torch.finfo(torch.float32).eps))


@pytest.mark.parametrize("name", ["AddRandomCNNPerceptualLoss", "AddPatchMMDLoss"])
def test_composite_mistakes_say_what_to_write(name):
    cls = getattr(rp_mmdet, name)
    with pytest.raises(TypeError, match=r"`perceptual` must be a dict.*loss_mask=dict"):
        cls(perceptual=[("loss_weight", 0.1)], use_mask=True)
    with pytest.raises(ValueError, match=r"'loss_mask_ce' is the baseline loss's own name"):
        cls(perceptual=dict(loss_name="loss_mask_ce"), use_mask=True)
    with pytest.raises(ValueError, match=r"`loss_weight`.*non-negative"):
        cls(perceptual=dict(loss_weight=float("nan")), use_mask=True)
    # the baseline's keys dropped by `_delete_=True`: say what to write
    with pytest.raises(ValueError, match=rf"needs `use_mask=True`.*loss_mask=dict\(type='randperc_plugins.mmdet.{name}', use_mask=True"):
        cls()
    cls(use_mask=True, loss_weight=1.0)
