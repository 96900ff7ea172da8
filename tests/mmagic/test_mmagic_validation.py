"""The validation policy in the mmagic adapter (docs/losses.md, "What is checked, and when"): settings
checked when the config builds, no host read on the training path after the first call's range check,
errors with validate_args, and video frames (N, T, C, H, W) through a BasicVSR config."""
import pytest
import torch

pytest.importorskip("mmagic")
from mmengine.config import Config  # noqa: E402
from mmengine.optim import build_optim_wrapper  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmagic.registry import MODELS  # noqa: E402
from mmagic.structures import DataSample  # noqa: E402

from randperc_plugins import mmagic as adapter  # noqa: E402

TERMS = ["RandomCNNPerceptualLoss", "PatchMMDLoss"]
SMALL = {"RandomCNNPerceptualLoss": {}, "PatchMMDLoss": {"patch_size": 3, "method": "exact"}}
BAD_WEIGHTS = [(-0.1, ValueError), (float("nan"), ValueError), (float("inf"), ValueError),
               ("1", TypeError)]


def _images(n=2, size=16, seed=0, frames=None):
    g = torch.Generator().manual_seed(seed)
    shape = (n, 3, size, size) if frames is None else (n, frames, 3, size, size)
    target = torch.rand(shape, generator=g)
    pred = (target + 0.1 * torch.randn(shape, generator=g)).clamp(0, 1)
    return pred.requires_grad_(), target


@pytest.mark.parametrize("name", TERMS)
@pytest.mark.parametrize("value, error", BAD_WEIGHTS, ids=[repr(v) for v, _ in BAD_WEIGHTS])
def test_bad_loss_weight_is_refused_in_both_forms(name, value, error):
    with pytest.raises(error, match=r"loss_weight.*must be a (finite, )?non-negative number.*got"):
        MODELS.build(dict(type=f"randperc_plugins.mmagic.{name}", loss_weight=value))
    with pytest.raises(error, match=r"loss_weight.*must be a (finite, )?non-negative number.*got"):
        MODELS.build(dict(type=f"randperc_plugins.mmagic.Add{name}", perceptual=dict(loss_weight=value)))


@pytest.mark.parametrize("name", TERMS)
@pytest.mark.parametrize("key", ["sample_wise", "validate_args"])
def test_string_booleans_are_refused(name, key):
    with pytest.raises(TypeError, match=rf"`{key}` must be (a bool|True or False)"):
        MODELS.build(dict(type=f"randperc_plugins.mmagic.{name}", **{key: "False"}))


@pytest.mark.parametrize("name", TERMS)
def test_perceptual_that_is_not_a_dict_and_a_clashing_name_say_what_to_write(name):
    with pytest.raises(TypeError, match=r"`perceptual`.* must be a dict .*perceptual=dict\("):
        MODELS.build(dict(type=f"randperc_plugins.mmagic.Add{name}", perceptual="loss_weight=0.1"))
    with pytest.raises(ValueError, match=r"(?s)(?=.*loss_name)(?=.*'loss_pix')(?=.*(own name|must differ))"):
        MODELS.build(dict(type=f"randperc_plugins.mmagic.Add{name}", perceptual=dict(loss_name="loss_pix")))


@pytest.mark.parametrize("name", TERMS)
def test_training_path_reads_the_host_only_at_the_first_call(name, host_reads):
    loss = getattr(adapter, name)(**SMALL[name])
    pred, target = _images()
    loss(pred, target)  # the first call's range check: one read
    first = len(host_reads)
    assert first >= 1
    loss(pred, target).backward()
    loss(pred, target)
    assert len(host_reads) == first  # none after it


@pytest.mark.parametrize("name", TERMS)
@pytest.mark.parametrize("scale", [255.0, -1.0])
def test_validate_args_refuses_images_outside_0_1_at_every_call(name, scale):
    pred, target = _images()
    loss = getattr(adapter, name)(validate_args=True, **SMALL[name])
    for _ in range(2):
        with pytest.raises(ValueError, match=r"`pred` holds values in \[.*\], but the restoration "
                                             r"defaults .* assume RGB in \[0, 1\]"):
            loss(pred.detach() * scale, target)


@pytest.mark.parametrize("name", TERMS)
def test_video_frames_are_folded_into_the_batch(name):
    pred, target = _images(n=2, frames=3)
    loss = getattr(adapter, name)(reduction="none", **SMALL[name])
    per_clip = loss(pred, target)  # each clip's value: the mean over its frames
    assert per_clip.shape == (2,)
    frames = getattr(adapter, name)(reduction="none", **SMALL[name])(pred.flatten(0, 1), target.flatten(0, 1))
    torch.testing.assert_close(per_clip, frames.view(2, 3).mean(1))
    composite = getattr(adapter, f"Add{name}")(perceptual=SMALL[name])
    value = composite(pred, target)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(pred.grad).all() and pred.grad.abs().max() > 0


@pytest.mark.parametrize("name", ["AddRandomCNNPerceptualLoss"])
def test_basicvsr_config_trains_with_the_one_line(name):
    # mmagic's BasicVSR config, its pixel loss replaced by the one line; a tiny generator and no
    # SPyNet download, one train step on a clip of 2 frames (BasicVSR passes (N, T, C, H, W))
    cfg = Config.fromstring(
        "_base_ = 'mmagic::basicvsr/basicvsr_2xb4_reds4.py'\n"
        f"model = dict(pixel_loss=dict(type='randperc_plugins.mmagic.{name}'),\n"
        "             generator=dict(mid_channels=4, num_blocks=1, spynet_pretrained=None))\n", ".py")
    init_default_scope("mmagic")
    model = MODELS.build(cfg.model)
    g = torch.Generator().manual_seed(0)
    gts = [torch.rand(2, 3, 64, 64, generator=g) * 255]
    data = dict(inputs=[torch.nn.functional.avg_pool2d(gt, 4) for gt in gts],
                data_samples=[DataSample(gt_img=gt) for gt in gts])
    optim = build_optim_wrapper(model, dict(optimizer=dict(type="Adam", lr=1e-4)))
    before = [p.detach().clone() for p in model.generator.parameters()]
    losses = model.train_step(data, optim)
    assert torch.isfinite(losses["loss"])
    assert any(not torch.equal(b, p) for b, p in zip(before, model.generator.parameters()))
