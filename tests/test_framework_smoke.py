"""The frameworks' own baselines build from their shipped configs and run a forward pass on the CPU."""
import pytest
import torch

from randperc_plugins.benchmarks import _framework_models as fm


def test_pspnet_r50_from_mmseg_config_forward():
    model = fm.build_pspnet_r50(size=(64, 64)).eval()
    data = fm.seg_batch(model, size=(64, 64), batch=1)
    with torch.no_grad():
        logits = model(data["inputs"], data["data_samples"], mode="tensor")
    assert logits.shape == (1, 19, 8, 8)  # output stride 8
    assert torch.isfinite(logits).all()


def test_edsr_from_mmagic_config_forward():
    model = fm.build_edsr().eval()
    data = fm.sr_batch(model, lq_size=8, batch=1)
    with torch.no_grad():
        out = model(data["inputs"], data["data_samples"], mode="tensor")
    assert out.shape == (1, 3, 32, 32)
    assert torch.isfinite(out).all()


def test_mask_rcnn_from_mmdet_config_forward():
    model = fm.build_mask_rcnn()
    data = fm.det_batch(model, size=(128, 160))
    model.train()
    with torch.no_grad():
        losses = model(data["inputs"], data["data_samples"], mode="loss")
    assert {"loss_rpn_cls", "loss_cls", "loss_bbox", "loss_mask"} <= set(losses)
    assert torch.isfinite(fm.total_loss(losses))


@pytest.mark.parametrize("size", [(64, 64)])
def test_train_step_changes_weights(size):
    model = fm.build_pspnet_r50(size=size)
    before = model.decode_head.conv_seg.weight.detach().clone()
    data = fm.seg_batch(model, size=size, batch=2)
    fm.train_step(model, data, torch.optim.SGD(model.parameters(), lr=0.1))
    assert not torch.equal(before, model.decode_head.conv_seg.weight)
