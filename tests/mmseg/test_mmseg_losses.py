"""The mmseg adapter: registry, loss API, ignore handling, and the one-line config on unshipped baselines."""
import copy
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("mmseg")
from mmengine.config import Config  # noqa: E402
from mmseg.registry import MODELS  # noqa: E402
from mmseg.utils import register_all_modules  # noqa: E402

import randperc_plugins.mmseg as rp_mmseg  # noqa: E402
from randperc_plugins.benchmarks._framework_models import bn_instead_of_syncbn, load_config, seg_batch  # noqa: E402
from randperc_plugins.losses.patch_mmd import PatchMMDLoss as CorePatchMMD  # noqa: E402
from randperc_plugins.losses.random_cnn import RandomCNNPerceptualLoss as CoreRandomCNN  # noqa: E402
from randperc_plugins.losses.tasks import task_defaults  # noqa: E402

register_all_modules(init_default_scope=True)

ADAPTERS = [
    ("RandomCNNPerceptualLoss", CoreRandomCNN, "loss_gpl"),
    ("PatchMMDLoss", CorePatchMMD, "loss_patch_mmd"),
]
# Small settings so that every test runs in well under a second.
SMALL = {"RandomCNNPerceptualLoss": {}, "PatchMMDLoss": {"patch_size": 3, "method": "exact"}}


def _logits_and_label(n=2, c=4, h=24, w=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    label = torch.randint(0, c, (n, h, w), generator=g)
    label[:, :3] = 255
    return logits, label


@pytest.mark.parametrize("name,core_cls,default_name", ADAPTERS)
def test_registered_by_short_and_dotted_name(name, core_cls, default_name):
    by_short = MODELS.build(dict(type=name, **SMALL[name]))
    by_path = MODELS.build(dict(type=f"randperc_plugins.mmseg.{name}", **SMALL[name]))
    assert type(by_short) is type(by_path) is getattr(rp_mmseg, name)
    assert by_short.loss_name == default_name
    assert by_short.loss_weight == {"loss_gpl": 0.8, "loss_patch_mmd": 0.4}[default_name]
    assert by_short.state_dict() == {}


def test_dotted_name_needs_no_import_in_a_fresh_process():
    code = ("from mmseg.registry import MODELS\n"
            "from mmseg.utils import register_all_modules\n"
            "register_all_modules()\n"
            "import sys; assert 'randperc_plugins' not in sys.modules\n"
            "loss = MODELS.build(dict(type='randperc_plugins.mmseg.PatchMMDLoss'))\n"
            "print(loss.loss_name)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("loss_patch_mmd")


@pytest.mark.parametrize("name", ["gpl", "perceptual", "decode_mmd"])
def test_loss_name_without_loss_is_rejected(name):
    with pytest.raises(ValueError, match="loss_name"):
        rp_mmseg.RandomCNNPerceptualLoss(loss_name=name)


@pytest.mark.parametrize("name,core_cls,default_name", ADAPTERS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_value_is_core_on_softmax_vs_one_hot(name, core_cls, default_name, reduction):
    logits, label = _logits_and_label()
    loss = getattr(rp_mmseg, name)(loss_weight=0.7, reduction=reduction, **SMALL[name])
    got = loss(logits, label, ignore_index=255)

    # Independent construction of what the adapter should feed the core.
    probs = torch.softmax(logits, dim=1)
    valid = label != 255
    one_hot = F.one_hot(torch.where(valid, label, 0), 4).permute(0, 3, 1, 2).double()
    defaults = task_defaults("segmentation", getattr(rp_mmseg, name).core_loss)
    defaults.pop("loss_weight")
    core = core_cls(reduction=reduction, **{**defaults, **SMALL[name]})
    expected = 0.7 * core(probs, one_hot, weight=valid[:, None].double())
    torch.testing.assert_close(got, expected)
    assert got.shape == (() if reduction != "none" else (2,))


def test_release_0_2_random_cnn_term_is_reachable_by_name():
    # release 0.2's term: no layer balance, weight 5.0; a config passes both and gets 0.2's value
    old = task_defaults("segmentation", "random_cnn", release="0.2")
    assert old == {"loss_weight": 5.0, "balance": "none", "autocast": False}
    logits, label = _logits_and_label()
    probs = torch.softmax(logits, dim=1)
    valid = label != 255
    one_hot = F.one_hot(torch.where(valid, label, 0), 4).permute(0, 3, 1, 2).double()
    expected = 5.0 * CoreRandomCNN(balance="none")(probs, one_hot, weight=valid[:, None].double())
    as_0_2 = MODELS.build(dict(type="randperc_plugins.mmseg.RandomCNNPerceptualLoss", **old))
    torch.testing.assert_close(as_0_2(logits, label, ignore_index=255), expected)
    today = MODELS.build(dict(type="randperc_plugins.mmseg.RandomCNNPerceptualLoss"))
    assert today.loss_weight != 5.0
    assert not torch.allclose(today(logits, label, ignore_index=255) / today.loss_weight, expected / 5.0)


@pytest.mark.parametrize("name", ["RandomCNNPerceptualLoss", "PatchMMDLoss"])
def test_avg_factor_is_refused(name):
    # mmseg's weight_reduce_loss divides a sum of per-pixel losses by avg_factor; these losses have
    # one value per image, so no avg_factor has that meaning: refused, naming the argument.
    logits, label = _logits_and_label()
    loss = getattr(rp_mmseg, name)(**SMALL[name])
    with pytest.raises(ValueError, match="`avg_factor`"):
        loss(logits, label, avg_factor=4.0)


def test_reduction_override_follows_mmseg():
    logits, label = _logits_and_label()
    loss = rp_mmseg.RandomCNNPerceptualLoss()
    per_sample = loss(logits, label, reduction_override="none")
    torch.testing.assert_close(loss(logits, label), per_sample.mean())
    torch.testing.assert_close(loss(logits, label, reduction_override="sum"), per_sample.sum())
    with pytest.raises(ValueError, match="reduction"):
        loss(logits, label, reduction_override="max")


@pytest.mark.parametrize("name", ["RandomCNNPerceptualLoss", "PatchMMDLoss"])
def test_ignored_pixels_get_no_gradient(name):
    logits, label = _logits_and_label()
    logits.requires_grad_(True)
    loss = getattr(rp_mmseg, name)(**SMALL[name])
    loss(logits, label, ignore_index=255).backward()
    ignored = (label == 255)[:, None].expand_as(logits)
    assert torch.count_nonzero(logits.grad[ignored]) == 0
    assert torch.count_nonzero(logits.grad[~ignored]) > 0


@pytest.mark.parametrize("name", ["RandomCNNPerceptualLoss", "PatchMMDLoss"])
def test_all_pixels_ignored_gives_finite_zero_with_gradient(name):
    logits, _ = _logits_and_label(n=1)
    label = torch.full((1, 24, 20), 255)
    logits.requires_grad_(True)
    value = getattr(rp_mmseg, name)(**SMALL[name])(logits, label, ignore_index=255)
    assert torch.isfinite(value) and value.item() == 0.0
    value.backward()
    assert torch.isfinite(logits.grad).all()


def test_binary_segmentation_uses_sigmoid():
    logits = torch.randn(2, 1, 16, 16, dtype=torch.float64)
    label = (torch.rand(2, 16, 16) > 0.5).long()
    loss = rp_mmseg.RandomCNNPerceptualLoss(loss_weight=1.0)
    expected = CoreRandomCNN()(torch.sigmoid(logits), label[:, None].double(),
                               weight=torch.ones(2, 1, 16, 16, dtype=torch.float64))
    torch.testing.assert_close(loss(logits, label), expected)


def test_bad_inputs_name_the_argument():
    loss = rp_mmseg.RandomCNNPerceptualLoss()
    logits, label = _logits_and_label()
    with pytest.raises(ValueError, match="`label`"):
        loss(logits, label[:, :10])
    # the label range is a host read: checked only on request (validate_args=True in the config)
    with pytest.raises(ValueError, match="`label` holds class 7"):
        rp_mmseg.RandomCNNPerceptualLoss(validate_args=True)(logits, torch.full_like(label, 7))
    assert torch.isfinite(loss(logits, torch.full_like(label, 7)))
    with pytest.raises(TypeError, match="`label`"):
        loss(logits, label.double())


def test_add_form_keeps_the_baseline_arguments_and_logs_two_terms():
    base = dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=0.4,
                class_weight=[1.0, 2.0, 1.0, 0.5], loss_name="loss_ce")
    merged = copy.deepcopy(base)
    merged.update(type="randperc_plugins.mmseg.AddRandomCNNPerceptualLoss",
                  perceptual=dict(loss_weight=0.3))
    combined = MODELS.build(merged)
    ce, gpl = list(combined)
    assert ce.loss_weight == 0.4 and ce.class_weight == [1.0, 2.0, 1.0, 0.5]
    assert gpl.loss_name == "loss_gpl" and gpl.loss_weight == 0.3
    assert combined.state_dict() == {}
    logits, label = _logits_and_label()
    label = label.clamp(max=3)  # mmseg 1.2.2's class-weighted CE indexes its weights by 255 and fails
    reference = MODELS.build(base)(logits, label, ignore_index=255)
    torch.testing.assert_close(ce(logits, label, ignore_index=255), reference)


ONE_LINE = {
    "gpl": "model = dict(decode_head=dict(loss_decode=dict("
           "type='randperc_plugins.mmseg.AddRandomCNNPerceptualLoss')))",
    "patch_mmd": "model = dict(decode_head=dict(loss_decode=dict("
                 "type='randperc_plugins.mmseg.AddPatchMMDLoss')))",
}
UNSHIPPED_BASELINES = [
    "mmseg::fcn/fcn_r50-d8_4xb2-40k_cityscapes-512x1024.py",
    "mmseg::upernet/upernet_r50_4xb2-40k_cityscapes-512x1024.py",
    "mmseg::segformer/segformer_mit-b0_8xb1-160k_cityscapes-1024x1024.py",
]


def build_one_line_model(tmp_path, baseline, line, size=(64, 64)):
    cfg_file = tmp_path / "one_line.py"
    cfg_file.write_text(f"_base_ = '{baseline}'\n{line}\n")
    cfg = Config.fromfile(str(cfg_file))
    model_cfg = cfg.model.to_dict()
    bn_instead_of_syncbn(model_cfg)
    model_cfg["data_preprocessor"]["size"] = size
    model_cfg.pop("pretrained", None)
    model_cfg["backbone"].pop("init_cfg", None)
    return cfg, MODELS.build(model_cfg)


def _train_losses(model, size=(64, 64), num_classes=19):
    data = seg_batch(model, size=size, batch=2, num_classes=num_classes)
    model.train()
    return model.loss(data["inputs"], data["data_samples"])


@pytest.mark.parametrize("baseline", UNSHIPPED_BASELINES)
@pytest.mark.parametrize("loss", sorted(ONE_LINE))
def test_one_line_on_unshipped_baselines_trains(tmp_path, baseline, loss):
    cfg, model = build_one_line_model(tmp_path, baseline, ONE_LINE[loss])
    base_loss = load_config(baseline).model.decode_head.loss_decode
    # The baseline's own arguments survive the merge.
    assert cfg.model.decode_head.loss_decode.loss_weight == base_loss.loss_weight
    assert cfg.model.decode_head.loss_decode.use_sigmoid == base_loss.use_sigmoid
    losses = _train_losses(model)
    key = f"decode.loss_{loss}"
    assert {"decode.loss_ce", key} <= set(losses)
    for name, value in losses.items():
        assert torch.isfinite(value).all(), name
    total = sum(v for k, v in losses.items() if "loss" in k)
    total.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("loss", sorted(ONE_LINE))
def test_one_line_keeps_the_checkpoint_keys(tmp_path, loss):
    baseline = UNSHIPPED_BASELINES[0]
    _, with_loss = build_one_line_model(tmp_path, baseline, ONE_LINE[loss])
    _, without = build_one_line_model(tmp_path, baseline, "")
    assert list(with_loss.state_dict()) == list(without.state_dict())
    without.load_state_dict(with_loss.state_dict(), strict=True)


def test_auxiliary_head_takes_the_loss_too(tmp_path):
    line = ("model = dict(auxiliary_head=dict(loss_decode=dict("
            "type='randperc_plugins.mmseg.AddPatchMMDLoss', perceptual=dict(loss_weight=0.2))))")
    _, model = build_one_line_model(tmp_path, UNSHIPPED_BASELINES[0], line)
    losses = _train_losses(model)
    assert {"aux.loss_ce", "aux.loss_patch_mmd", "decode.loss_ce"} <= set(losses)
    assert "decode.loss_patch_mmd" not in losses


@pytest.mark.parametrize("name", ["RandomCNNPerceptualLoss", "PatchMMDLoss"])
def test_training_path_reads_nothing_on_the_host(name, host_reads):
    # forward and backward as mmseg's decode head calls it: no tensor value is read on the host
    # (each read would stall the GPU stream at every step); `host_reads` is in tests/conftest.py
    logits, label = _logits_and_label()
    logits.requires_grad_(True)
    loss = getattr(rp_mmseg, name)(**SMALL[name])
    loss(logits, label, ignore_index=255).backward()
    assert host_reads == []
    assert torch.count_nonzero(logits.grad) > 0
    rp_mmseg.RandomCNNPerceptualLoss(validate_args=True)(logits, label)
    assert host_reads  # the counter sees the checks that validate_args=True runs


@pytest.mark.parametrize("name", ["AddRandomCNNPerceptualLoss", "AddPatchMMDLoss"])
def test_composite_mistakes_say_what_to_write(name):
    cls = getattr(rp_mmseg, name)
    with pytest.raises(TypeError, match=r"`perceptual` must be a dict.*perceptual=dict\(.*got str 'patch_size=3'"):
        cls(perceptual="patch_size=3")
    with pytest.raises(ValueError, match=r"`perceptual\['loss_name'\]`='loss_ce' is the baseline loss's own name"):
        cls(perceptual=dict(loss_name="loss_ce"))
    with pytest.raises(ValueError, match=r"`loss_weight`"):
        cls(perceptual=dict(loss_weight=-1))
