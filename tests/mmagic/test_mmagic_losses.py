"""The mmagic adapter: mmagic's loss contract (reduction, sample_wise, weight), the one-line composites
(sum and separate log entries), bad input, the once-only range warning and the GAN perceptual slot."""
import warnings

import pytest
import torch

pytest.importorskip("mmagic")
from mmengine.logging import MessageHub  # noqa: E402
from mmagic.registry import MODELS  # noqa: E402
from mmagic.structures import DataSample  # noqa: E402

from randperc_plugins import mmagic as adapter  # noqa: E402
from randperc_plugins.losses import PatchMMDLoss as CorePatchMMD  # noqa: E402
from randperc_plugins.losses import RandomCNNPerceptualLoss as CoreRandomCNN  # noqa: E402
from randperc_plugins.losses.tasks import task_defaults  # noqa: E402
from randperc_plugins.benchmarks._framework_models import load_config  # noqa: E402

LOSSES = [("RandomCNNPerceptualLoss", CoreRandomCNN, "random_cnn", "loss_gpl"),
          ("PatchMMDLoss", CorePatchMMD, "patch_mmd", "loss_patch_mmd")]
ESRGAN_CONFIG = "mmagic::esrgan/esrgan_x4c64b23g32_1xb16-400k_div2k.py"


def _images(n=3, size=20, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(n, 3, size, size, generator=g, dtype=dtype)
    pred = (target + 0.1 * torch.randn(n, 3, size, size, generator=g, dtype=dtype)).clamp(0, 1)
    return pred.requires_grad_(), target


@pytest.mark.parametrize("name, core_cls, key, loss_name", LOSSES)
def test_defaults_come_from_the_restoration_task(name, core_cls, key, loss_name):
    loss = MODELS.build(dict(type=f"randperc_plugins.mmagic.{name}"))
    defaults = task_defaults("restoration", key)
    assert loss.loss_weight == defaults.pop("loss_weight")
    assert loss.loss_name == loss_name
    for k, v in defaults.items():
        # a setting of the network or patch sets lives in the core's frozen spec, the rest on the module
        spec = getattr(loss.core, "spec", None)
        assert (getattr(spec, k) if hasattr(spec, k) else getattr(loss.core, k)) == v, k
    assert len(loss.state_dict()) == 0


@pytest.mark.parametrize("name, core_cls, key, loss_name", LOSSES)
def test_reductions_and_sample_wise_match_the_per_sample_core(name, core_cls, key, loss_name):
    pred, target = _images(dtype=torch.float64)
    settings = task_defaults("restoration", key)
    settings.pop("loss_weight")
    per_sample = core_cls(reduction="none", **settings)(pred, target).detach()
    cls = getattr(adapter, name)
    assert torch.allclose(cls(loss_weight=2.0)(pred, target), 2.0 * per_sample.mean())
    assert torch.allclose(cls(loss_weight=2.0, reduction="sum")(pred, target), 2.0 * per_sample.sum())
    assert torch.allclose(cls(loss_weight=2.0, reduction="none")(pred, target), 2.0 * per_sample)

    # A mask: mmagic's element-wise weight, here (N, C, H, W) equal over channels.
    mask = torch.ones(3, 1, 20, 20, dtype=torch.float64)
    mask[0, :, :, :10] = 0
    weight = mask.expand(3, 3, 20, 20)
    masked = core_cls(reduction="none", **settings)(pred, target, weight=mask).detach()
    area = mask.flatten(1).sum(1)
    expected = (masked * area).sum() / area.sum()  # samples count by their weighted area
    assert torch.allclose(cls()(pred, target, weight), cls().loss_weight * expected)
    assert torch.allclose(cls(sample_wise=True)(pred, target, weight), cls().loss_weight * masked.mean())
    assert not torch.allclose(expected, masked.mean())  # the two conventions differ here


@pytest.mark.parametrize("name", ["AddRandomCNNPerceptualLoss", "AddPatchMMDLoss"])
def test_composite_sums_the_baseline_and_logs_each_term(name):
    hub = MessageHub.get_instance("test_composite_" + name)
    pred, target = _images()
    loss = MODELS.build(dict(type=f"randperc_plugins.mmagic.{name}", loss_weight=0.5, reduction="mean",
                             perceptual=dict(loss_weight=0.3)))
    assert type(loss.base).__name__ == "L1Loss" and loss.base.loss_weight == 0.5
    value = loss(pred, target)
    l1 = 0.5 * (pred - target).abs().mean()
    term = loss.perceptual(pred, target)
    assert torch.allclose(value, l1 + term)
    value.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    logged = hub.log_scalars
    assert logged["train/loss_pix"].current() == pytest.approx(l1.item(), rel=1e-6)
    assert logged[f"train/{loss.perceptual.loss_name}"].current() == pytest.approx(term.item(), rel=1e-5)
    assert len(loss.state_dict()) == 0


def test_composite_keeps_another_baseline_pixel_loss():
    loss = MODELS.build(dict(type="randperc_plugins.mmagic.AddPatchMMDLoss", base_type="CharbonnierLoss",
                             eps=1e-3, loss_weight=1.0))
    assert type(loss.base).__name__ == "CharbonnierLoss" and loss.base.eps == 1e-3


def test_zero_weight_composite_is_exactly_the_baseline():
    pred, target = _images()
    base = MODELS.build(dict(type="L1Loss"))(pred, target)
    (g_base,) = torch.autograd.grad(base, pred)
    zero = adapter.AddRandomCNNPerceptualLoss(perceptual=dict(loss_weight=0.0))(pred, target)
    (g_zero,) = torch.autograd.grad(zero, pred)
    assert torch.equal(base, zero) and torch.equal(g_base, g_zero)


@pytest.mark.parametrize("cls", [adapter.RandomCNNPerceptualLoss, adapter.PatchMMDLoss])
def test_bad_input_names_the_argument(cls):
    pred, target = _images()
    with pytest.raises(ValueError, match="`pred` and `target` must have the same shape"):
        cls()(pred, target[:, :, :10])
    with pytest.raises(TypeError, match="`pred` must be a floating-point tensor"):
        cls()((pred * 255).long(), target)
    with pytest.raises(TypeError, match="`target` must be a floating-point tensor"):
        cls()(pred, (target * 255).to(torch.uint8))
    bad = pred.detach().clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="`pred` must be finite"):
        cls()(bad, target)
    with pytest.raises(TypeError, match="`weight` must be a torch.Tensor"):
        cls()(pred, target, weight=[1.0])
    with pytest.raises(ValueError, match="`loss_name` must contain 'loss'"):
        cls(loss_name="gpl")
    with pytest.raises(ValueError, match="`reduction`"):
        cls(reduction="avg")


def test_channel_count_the_network_was_built_for():
    loss = adapter.RandomCNNPerceptualLoss(in_channels=3)
    with pytest.raises(ValueError, match="channel"):
        loss(torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16))


def test_composite_rejects_a_non_scalar_baseline_and_bad_arguments():
    pred, target = _images()
    with pytest.raises(ValueError, match="`reduction` must be 'mean' or 'sum'"):
        adapter.AddPatchMMDLoss(reduction="none")(pred, target)
    with pytest.raises(TypeError, match="`base_type`"):
        adapter.AddPatchMMDLoss(base_type=None)
    with pytest.raises(TypeError, match="`perceptual`"):
        adapter.AddPatchMMDLoss(perceptual=0.1)


@pytest.mark.parametrize("scale, low, high", [(255.0, 0.0, 255.0), (2.0, -1.0, 1.0)])
def test_out_of_range_images_warn_once_with_the_range(scale, low, high):
    pred, target = _images()
    pred, target = pred.detach() * scale - (1.0 if low < 0 else 0.0), target * scale - (1.0 if low < 0 else 0.0)
    loss = adapter.PatchMMDLoss()
    with pytest.warns(UserWarning, match=r"expects RGB images in \[0, 1\], got `pred` in \[") as record:
        loss(pred, target)
    message = str(record[0].message)
    assert f"`target` in [{target.min().item():.4g}, {target.max().item():.4g}]" in message
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss(pred, target)  # checked once: no second warning (and no second host read)
    checked = adapter.PatchMMDLoss(validate_args=True)
    for _ in range(2):  # validate_args checks every call, and refuses (docs/losses.md, "What is checked")
        with pytest.raises(ValueError, match=r"`pred` holds values in \[.*\], but the restoration defaults"):
            checked(pred, target)


def test_images_in_range_do_not_warn():
    pred, target = _images()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        adapter.RandomCNNPerceptualLoss()((pred * 1.2 - 0.1), target)  # a little overshoot is normal


def test_edge_cases_batch_of_one_and_half_precision():
    for cls in (adapter.RandomCNNPerceptualLoss, adapter.PatchMMDLoss):
        pred, target = _images(n=1, size=8)
        value = cls()(pred, target)
        value.backward()
        assert torch.isfinite(value) and torch.isfinite(pred.grad).all()
        pred, target = _images(n=2, size=12)
        value = cls()(pred.detach().half().requires_grad_(), target.bfloat16())
        assert torch.isfinite(value)


@pytest.mark.parametrize("name", ["GANRandomCNNPerceptualLoss",
                                  pytest.param("GANPatchMMDLoss", marks=pytest.mark.slow)])
def test_esrgan_trains_with_ours_in_its_perceptual_slot(name):
    """mmagic's shipped ESRGAN config with its VGG loss replaced: one generator + discriminator step."""
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope

    cfg = load_config(ESRGAN_CONFIG)
    # Two RRDB blocks instead of 23 (CPU time); no pretrained generator (nothing downloads offline).
    cfg.merge_from_dict({"model.generator.num_blocks": 2, "model.generator.init_cfg": None,
                         "model.perceptual_loss": dict(_delete_=True, type=f"randperc_plugins.mmagic.{name}")})
    init_default_scope("mmagic")
    model = MODELS.build(cfg.model)
    pair = model.perceptual_loss(*_images())
    assert pair[1] is None and pair[0].dim() == 0
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    # The discriminator takes 128x128 images: x4 from 32x32 inputs, one image.
    gt = torch.rand(3, 128, 128, generator=torch.Generator().manual_seed(0)) * 255
    data = dict(inputs=[torch.nn.functional.avg_pool2d(gt[None], 4)[0]],
                data_samples=[DataSample(gt_img=gt)])
    before = {k: v.clone() for k, v in model.generator.state_dict().items()}
    log_vars = model.train_step(data, optim)
    assert {"loss_pix", "loss_perceptual", "loss_gan", "loss_d_real", "loss_d_fake"} <= set(log_vars)
    assert "loss_style" not in log_vars
    assert all(torch.isfinite(torch.as_tensor(v)).all() for v in log_vars.values())
    assert log_vars["loss_perceptual"] > 0
    changed = [k for k, v in model.generator.state_dict().items() if not torch.equal(v, before[k])]
    assert changed  # the generator step ran with our term in its loss


def test_release_0_2_settings_are_reachable_by_name():
    # release 0.2's restoration patch-MMD differs from today's by one setting, which a config can pass
    old = task_defaults("restoration", "patch_mmd", release="0.2")
    new = task_defaults("restoration", "patch_mmd")
    assert {k: v for k, v in new.items() if old.get(k) != v} == {"normalize": "channel_mean"}
    pred, target = _images(size=24)
    as_0_2 = MODELS.build(dict(type="randperc_plugins.mmagic.PatchMMDLoss", normalize="none"))
    reference = CorePatchMMD(**old)
    torch.testing.assert_close(as_0_2(pred, target), reference(pred, target))
    today = MODELS.build(dict(type="randperc_plugins.mmagic.PatchMMDLoss"))
    assert not torch.allclose(today(pred, target), reference(pred, target))
    with pytest.raises(ValueError, match="`release`"):
        task_defaults("restoration", "patch_mmd", release="0.0")


@pytest.mark.parametrize("name", ["AddRandomCNNPerceptualLoss", "AddPatchMMDLoss"])
def test_composite_mistakes_say_what_to_write(name):
    cls = getattr(adapter, name)
    with pytest.raises(TypeError, match=r"`perceptual` must be a dict.*pixel_loss=dict"):
        cls(perceptual="loss_weight=0.1")
    with pytest.raises(ValueError, match=r"'loss_pix' is the baseline loss's own name"):
        cls(perceptual=dict(loss_name="loss_pix"))
    with pytest.raises(TypeError, match=r"`loss_weight`.*str"):
        cls(perceptual=dict(loss_weight="0.1"))


@pytest.mark.parametrize("name", ["RandomCNNPerceptualLoss", "PatchMMDLoss"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_video_frames_are_compared_as_images(name, reduction):
    # video editors (BasicVSR and others) pass (N, T, C, H, W)
    loss = getattr(adapter, name)(reduction=reduction)
    g = torch.Generator().manual_seed(0)
    pred = torch.rand(2, 3, 3, 24, 24, generator=g, requires_grad=True)
    gt = torch.rand(2, 3, 3, 24, 24, generator=g)
    got = loss(pred, gt)
    frames = loss(pred.detach().flatten(0, 1), gt.flatten(0, 1))
    expected = frames.view(2, 3).mean(1) if reduction == "none" else frames
    torch.testing.assert_close(got.detach(), expected)
    got.sum().backward()
    assert pred.grad.shape == pred.shape and torch.isfinite(pred.grad).all()


def test_training_path_reads_nothing_on_the_host_after_the_first_call(host_syncs):
    loss = adapter.PatchMMDLoss()
    pred, gt = torch.rand(1, 3, 24, 24, requires_grad=True), torch.rand(1, 3, 24, 24)
    loss(pred, gt).backward()  # the first call checks the value range once (a host read)
    host_syncs.clear()
    loss(pred, gt).backward()
    assert host_syncs == []


def test_composite_base_name_of_release_0_2_is_base_loss_name_with_a_deprecation_warning():
    with pytest.warns(DeprecationWarning, match="`base_name` is deprecated: write `base_loss_name`"):
        old = adapter.AddPatchMMDLoss(base_name="loss_l1")
    assert old.base_loss_name == "loss_l1" and not hasattr(old.base, "base_name")
    assert adapter.AddPatchMMDLoss(base_loss_name="loss_l1").base_loss_name == "loss_l1"
