"""The validation policy in the detectron2 heads (docs/losses.md, "What is checked, and when"): `perceptual`
checked when the head is built (a weight >= 0 in a LazyConfig or Python, where -1 is no "default";
`reduction` and `loss_name` honoured or refused), and YAML's -1 still meaning the task default."""
import pytest
import torch

pytestmark = pytest.mark.detectron2

pytest.importorskip("detectron2.config")  # not the tests/detectron2 folder
from detectron2.config import get_cfg  # noqa: E402
from detectron2.modeling.roi_heads.mask_head import ROI_MASK_HEAD_REGISTRY  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402
# the mask-head tests' heads, shapes and random instances (tests/detectron2 is on the path)
from test_detectron2_mask_head import HEADS, SHAPE, _head, _instances  # noqa: E402

from randperc_plugins.detectron2 import add_randperc_config  # noqa: E402
from randperc_plugins.losses.tasks import task_defaults  # noqa: E402

BAD_WEIGHTS = [(-1.0, ValueError), (-0.5, ValueError), (float("nan"), ValueError),
               (float("inf"), ValueError), ("0.5", TypeError)]


def _losses(head, counts=(3, 2), seed=1):
    x = torch.randn(sum(counts), SHAPE.channels, 14, 14, generator=torch.Generator().manual_seed(seed))
    with EventStorage():
        return head.train()(x, _instances(counts))


@pytest.mark.parametrize("kind", sorted(HEADS))
@pytest.mark.parametrize("value, error", BAD_WEIGHTS, ids=[repr(v) for v, _ in BAD_WEIGHTS])
def test_lazyconfig_weight_must_be_finite_and_non_negative(kind, value, error):
    # in a LazyConfig (or Python) -1 is no "task default": a negative weight would flip the term
    with pytest.raises(error, match=r"loss_weight.*must be a (finite, )?non-negative number.*got"):
        _head(HEADS[kind], perceptual=dict(loss_weight=value))


@pytest.mark.parametrize("kind", sorted(HEADS))
def test_yaml_minus_one_is_the_task_default_and_other_negatives_are_errors(kind):
    name = HEADS[kind].__name__
    cfg = add_randperc_config(get_cfg())
    cfg.MODEL.ROI_MASK_HEAD.NAME = name
    head = ROI_MASK_HEAD_REGISTRY.get(name)(cfg, SHAPE)
    core = {"gpl": "random_cnn", "patch_mmd": "patch_mmd"}[kind]
    assert head.perceptual_weight == task_defaults("instance_masks", core)["loss_weight"]
    cfg.MODEL.ROI_MASK_HEAD.RANDPERC.LOSS_WEIGHT = -0.5
    with pytest.raises(ValueError, match=r"loss_weight.* must be a finite, non-negative number.*got -0.5"):
        ROI_MASK_HEAD_REGISTRY.get(name)(cfg, SHAPE)


@pytest.mark.parametrize("kind", sorted(HEADS))
def test_reduction_sum_is_honoured_and_none_refused(kind):
    mean_head = _head(HEADS[kind], perceptual=dict(loss_weight=0.5))
    sum_head = _head(HEADS[kind], perceptual=dict(loss_weight=0.5, reduction="sum"))
    sum_head.load_state_dict(mean_head.state_dict())  # the same layers: only the reduction differs
    mean, total = _losses(mean_head), _losses(sum_head)
    key = _head(HEADS[kind]).loss_key
    torch.testing.assert_close(total[key], mean[key] * 5)  # 5 foreground ROIs
    torch.testing.assert_close(total["loss_mask"], mean["loss_mask"])
    with pytest.raises(ValueError, match=r"reduction.* must be 'mean' or 'sum'"):
        _head(HEADS[kind], perceptual=dict(reduction="none"))


@pytest.mark.parametrize("kind", sorted(HEADS))
def test_loss_name_is_honoured_and_a_clash_refused(kind):
    head = _head(HEADS[kind], perceptual=dict(loss_name="loss_mask_term"))
    assert set(_losses(head)) == {"loss_mask", "loss_mask_term"}
    with pytest.raises(ValueError, match=r"(?s)(?=.*loss_name)(?=.*'loss_mask')(?=.*(own name|must differ))"):
        _head(HEADS[kind], perceptual=dict(loss_name="loss_mask"))
    with pytest.raises(TypeError, match=r"`perceptual`.* must be a dict .*perceptual=dict\("):
        _head(HEADS[kind], perceptual="loss_weight=0.5")


@pytest.mark.parametrize("kind", sorted(HEADS))
def test_string_booleans_are_refused(kind):
    with pytest.raises(TypeError, match=r"`redraw` must be (a bool|True or False)"):
        _head(HEADS[kind], perceptual=dict(redraw="False"))
