"""randperc_plugins.openmmlab: an added loss term reaches mmengine's message hub as train/<name>."""
import pytest
import torch

pytest.importorskip("mmengine")
from mmengine.logging import MessageHub  # noqa: E402

from randperc_plugins.openmmlab import check_loss_name, flush_loss_terms, log_loss_term  # noqa: E402


def test_cpu_terms_are_published_at_once_as_train_name():
    hub = MessageHub.get_instance("test_openmmlab_cpu")
    value = torch.tensor([0.25, 0.75], requires_grad=True) * 2  # a non-scalar term: its mean is logged
    log_loss_term("loss_gpl", value)
    log_loss_term("loss_gpl", torch.tensor(3.0))
    history = MessageHub.get_current_instance().log_scalars["train/loss_gpl"]
    assert MessageHub.get_current_instance() is hub
    assert history.data[0].tolist() == [1.0, 3.0]  # both calls, in order, detached numbers
    assert flush_loss_terms() == 0  # nothing pending on the CPU


def test_check_loss_name():
    assert check_loss_name("loss_patch_mmd") == "loss_patch_mmd"
    with pytest.raises(ValueError, match="`loss_name` must contain 'loss'"):
        check_loss_name("gpl")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_terms_are_published_after_the_copy():
    MessageHub.get_instance("test_openmmlab_gpu")
    log_loss_term("loss_pix", torch.tensor(0.5, device="cuda"))
    flush_loss_terms(wait=True)
    assert MessageHub.get_current_instance().log_scalars["train/loss_pix"].current() == 0.5
