"""The perceptual mask heads: detectron2's loss kept, our term against a per-ROI float64 reference,
checkpoint keys, RNG stream and layers of the baseline untouched, the no-foreground edge case."""
import pytest
import torch

pytestmark = pytest.mark.detectron2

d2 = pytest.importorskip("detectron2.config")  # not the tests/detectron2 folder
from detectron2.config import get_cfg  # noqa: E402
from detectron2.layers import ShapeSpec  # noqa: E402
from detectron2.modeling.roi_heads.mask_head import (ROI_MASK_HEAD_REGISTRY,  # noqa: E402
                                                     MaskRCNNConvUpsampleHead, mask_rcnn_loss)
from detectron2.structures import BitMasks, Boxes, Instances  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402

from randperc_plugins.detectron2 import (MaskRCNNConvUpsampleHeadWithGPL,  # noqa: E402
                                         MaskRCNNConvUpsampleHeadWithPatchMMD, add_randperc_config)
from randperc_plugins.losses import PatchMMDLoss, RandomCNNPerceptualLoss  # noqa: E402
from randperc_plugins.losses.tasks import task_defaults  # noqa: E402

HEADS = {"gpl": MaskRCNNConvUpsampleHeadWithGPL, "patch_mmd": MaskRCNNConvUpsampleHeadWithPatchMMD}
CORES = {"gpl": RandomCNNPerceptualLoss, "patch_mmd": PatchMMDLoss}
SHAPE = ShapeSpec(channels=8, width=14, height=14)
NUM_CLASSES = 3


def _head(cls, **kwargs):
    return cls(SHAPE, num_classes=NUM_CLASSES, conv_dims=[8, 8], **kwargs)


def _instances(counts, seed=0, size=32):
    gen = torch.Generator().manual_seed(seed)
    out = []
    for n in counts:
        inst = Instances((size, size))
        xy0 = torch.randint(0, size // 2, (n, 2), generator=gen).float()
        wh = torch.randint(6, size // 2, (n, 2), generator=gen).float()
        inst.proposal_boxes = Boxes(torch.cat([xy0, xy0 + wh], dim=1))
        inst.gt_classes = torch.randint(0, NUM_CLASSES, (n,), generator=gen)
        inst.gt_masks = BitMasks(torch.rand(n, size, size, generator=gen) > 0.5)
        out.append(inst)
    return out


def _features(num_rois, seed=1):
    return torch.randn(num_rois, SHAPE.channels, 14, 14, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind", sorted(HEADS))
def test_losses_are_detectron2s_mask_loss_plus_our_term_against_a_per_roi_reference(kind):
    head = _head(HEADS[kind], perceptual=dict(loss_weight=0.7)).train()
    with torch.no_grad():  # make the class channels differ clearly (detectron2 inits them near 0)
        head.predictor.weight.normal_(0, 1.0, generator=torch.Generator().manual_seed(2))
        head.predictor.bias.copy_(torch.tensor([-2.0, 0.0, 2.0]))
    instances = _instances([3, 0, 2])
    x = _features(5)
    with EventStorage():
        losses = head(x, instances)
        logits = head.layers(x)
        expected_mask = mask_rcnn_loss(logits, instances)
    assert set(losses) == {"loss_mask", head.loss_key}
    assert head.loss_key == {"gpl": "loss_mask_gpl", "patch_mmd": "loss_mask_patch_mmd"}[kind]
    torch.testing.assert_close(losses["loss_mask"], expected_mask)
    # reference: each ROI alone in float64, its ground-truth class channel, its own cropped target
    settings = {k: v for k, v in task_defaults("instance_masks", {"gpl": "random_cnn"}.get(kind, kind)).items()
                if k != "loss_weight"}
    core = CORES[kind](1, **settings) if kind == "gpl" else CORES[kind](**settings)
    terms = []
    row = 0
    for inst in instances:
        for i in range(len(inst)):
            target = inst.gt_masks[i].crop_and_resize(inst.proposal_boxes.tensor[i:i + 1], 28)
            prob = torch.sigmoid(logits[row, inst.gt_classes[i]].double())
            terms.append(core(prob.view(1, 1, 28, 28), target.double().view(1, 1, 28, 28)))
            row += 1
    expected = 0.7 * torch.stack(terms).mean()
    torch.testing.assert_close(losses[head.loss_key].double(), expected, rtol=1e-4, atol=1e-6)
    assert losses[head.loss_key] > 0


@pytest.mark.parametrize("kind", sorted(HEADS))
def test_no_foreground_roi_gives_a_finite_zero_with_a_gradient(kind):
    head = _head(HEADS[kind]).train()
    x = _features(0).requires_grad_()
    with EventStorage():
        losses = head(x, _instances([0, 0]))
    term = losses[head.loss_key]
    assert torch.isfinite(term) and term == 0
    sum(losses.values()).backward()
    assert head.predictor.weight.grad is not None and torch.isfinite(head.predictor.weight.grad).all()


@pytest.mark.parametrize("kind", sorted(HEADS))
def test_term_has_a_gradient_on_the_mask_predictor(kind):
    head = _head(HEADS[kind]).train()
    with EventStorage():
        term = head(_features(4), _instances([4]))[head.loss_key]
    term.backward()
    grad = head.predictor.weight.grad
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize("kind", sorted(HEADS))
def test_checkpoint_keys_layers_and_rng_stream_are_the_baselines(kind):
    torch.manual_seed(0)
    base = _head(MaskRCNNConvUpsampleHead)
    after_base = torch.rand(3)
    torch.manual_seed(0)
    ours = _head(HEADS[kind])
    after_ours = torch.rand(3)
    assert torch.equal(after_base, after_ours), "building the loss advanced the global RNG"
    assert list(ours.state_dict()) == list(base.state_dict())
    for (name, a), b in zip(base.state_dict().items(), ours.state_dict().values()):
        assert torch.equal(a, b), name
    assert [type(m) for m in ours.children()] == [type(m) for m in base.children()]
    base.load_state_dict(ours.state_dict(), strict=True)
    x = _features(2)
    torch.testing.assert_close(ours.layers(x), base.layers(x), rtol=0, atol=0)


def test_random_network_ignores_the_global_seed():
    # detectron2 seeds every rank differently; the loss network must still be the same on each
    torch.manual_seed(1)
    a = _head(MaskRCNNConvUpsampleHeadWithGPL).perceptual_loss.random_weights()
    torch.manual_seed(2)
    b = _head(MaskRCNNConvUpsampleHeadWithGPL).perceptual_loss.random_weights()
    assert a and all(torch.equal(x, y) for x, y in zip(a, b))
    c = _head(MaskRCNNConvUpsampleHeadWithGPL, perceptual=dict(seed=5)).perceptual_loss.random_weights()
    assert not torch.equal(a[0], c[0])


@pytest.mark.parametrize("kind", sorted(HEADS))
def test_zero_weight_gives_the_baseline_bit_for_bit(kind):
    torch.manual_seed(0)
    base = _head(MaskRCNNConvUpsampleHead).train()
    torch.manual_seed(0)
    ours = _head(HEADS[kind], perceptual=dict(loss_weight=0.0)).train()
    x, instances = _features(3), _instances([3])
    with EventStorage():
        lb, lo = base(x, instances), ours(x, instances)
    sum(lb.values()).backward()
    sum(lo.values()).backward()
    assert torch.equal(sum(lb.values()), sum(lo.values()))
    for (name, pb), po in zip(base.named_parameters(), ours.parameters()):
        assert torch.equal(pb.grad, po.grad), name


def test_bad_perceptual_argument_names_it():
    with pytest.raises(TypeError, match="`perceptual`"):
        _head(MaskRCNNConvUpsampleHeadWithGPL, perceptual=[1.0])


def test_yaml_keys_reach_the_head():
    cfg = add_randperc_config(get_cfg())
    cfg.merge_from_list(["MODEL.ROI_MASK_HEAD.NAME", "MaskRCNNConvUpsampleHeadWithPatchMMD",
                         "MODEL.ROI_MASK_HEAD.RANDPERC.LOSS_WEIGHT", "0.25",
                         "MODEL.ROI_MASK_HEAD.RANDPERC.SEED", "3"])
    cfg.MODEL.ROI_MASK_HEAD.RANDPERC.OPTIONS.PATCH_SIZE = 5
    head = ROI_MASK_HEAD_REGISTRY.get(cfg.MODEL.ROI_MASK_HEAD.NAME)(cfg, SHAPE)
    assert isinstance(head, MaskRCNNConvUpsampleHeadWithPatchMMD)
    assert head.perceptual_weight == 0.25
    assert head.perceptual_loss.spec.patch_size == 5 and head.perceptual_loss.seed == 3
    # without add_randperc_config the head builds with the defaults
    plain = get_cfg()
    plain.MODEL.ROI_MASK_HEAD.NAME = "MaskRCNNConvUpsampleHeadWithGPL"
    head = ROI_MASK_HEAD_REGISTRY.get(plain.MODEL.ROI_MASK_HEAD.NAME)(plain, SHAPE)
    default_weight = task_defaults("instance_masks", "random_cnn").get("loss_weight", 1.0)
    assert head.perceptual_weight == default_weight and head.perceptual_loss.seed == 0


def test_add_randperc_config_rejects_a_non_cfgnode():
    with pytest.raises(TypeError, match="`cfg`"):
        add_randperc_config({"MODEL": {}})


@pytest.mark.parametrize("kind", sorted(HEADS))
def test_perceptual_reduction_sum_is_honoured_and_none_refused(kind):
    instances, x = _instances([3, 0, 2]), _features(5)
    with EventStorage():
        mean = _head(HEADS[kind], perceptual=dict(loss_weight=0.5)).train()(x, instances)
        total = _head(HEADS[kind], perceptual=dict(loss_weight=0.5, reduction="sum")).train()(x, instances)
    key = _head(HEADS[kind]).loss_key
    torch.testing.assert_close(total[key], mean[key] * 5, rtol=1e-4, atol=1e-6)  # 5 foreground ROIs
    with pytest.raises(ValueError, match=r"`perceptual\['reduction'\]` must be 'mean' or 'sum'"):
        _head(HEADS[kind], perceptual=dict(reduction="none"))
    with pytest.raises(ValueError, match=r"`perceptual\['loss_weight'\]`.*non-negative.*-1"):
        _head(HEADS[kind], perceptual=dict(loss_weight=-1))
