"""Training a small EDSR x2 from the one-line config through tools/train.py and tools/dist_train.sh: 2 CPU
processes on gloo, validation with mmagic's PSNR and SSIM, resume, baseline checkpoint compatibility,
and a zero loss weight that reproduces the baseline exactly."""
import os
import sys

import pytest
import torch

pytest.importorskip("mmagic")
from mmengine.config import Config  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmagic.registry import MODELS  # noqa: E402

from experiments.datasets.sr_photos import make_sr_dataset, skimage_photos  # noqa: E402
from train_runs import logged_scalars, loss_weights_on_ranks, write_config  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TOY_CONFIG = os.path.join(HERE, "data", "toy_edsr.py")
GPL_LINE = "model = dict(pixel_loss=dict(type='randperc_plugins.mmagic.AddRandomCNNPerceptualLoss'{extra}))"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    photos = skimage_photos(("astronaut", "coffee"))  # astronaut trains, coffee validates
    return make_sr_dataset(str(tmp_path_factory.mktemp("sr")), photos, scales=(2,), crop_size=96)


def _config(tmp_path, name, body):
    return write_config(tmp_path, TOY_CONFIG, name, body)


def _data_options(root):
    return ["--cfg-options", f"train_dataloader.dataset.data_root={root}/DIV2K",
            f"val_dataloader.dataset.data_root={root}/Set5"]


def _scalars(work_dir):
    rows = logged_scalars(work_dir)
    return [r for r in rows if "loss" in r], [r for r in rows if "PSNR" in r]


def _baseline_model():
    init_default_scope("mmagic")
    return MODELS.build(Config.fromfile(TOY_CONFIG).model)


@pytest.mark.dist
def test_two_process_cpu_training_validates_resumes_and_loads_into_the_baseline(tmp_path, data_root, run_tool,
                                                                                free_port):
    cfg = _config(tmp_path, "toy_gpl", GPL_LINE.format(extra="") +
                  "\ncustom_hooks = [dict(type='loss_weights_probe.LossWeightsProbe', match='pixel_loss.')]")
    work_dir = str(tmp_path / "work")
    dist = ["bash", "tools/dist_train.sh", cfg, "2", "--work-dir", work_dir]
    run_tool(dist + _data_options(data_root), pythonpath=[HERE], PORT=str(free_port()))
    losses, metrics = _scalars(work_dir)
    assert len(metrics) == 1 and metrics[0]["PSNR"] > 0 and 0 < metrics[0]["SSIM"] <= 1

    # The random loss network is the same on both ranks (compared, not assumed).
    ranks = loss_weights_on_ranks(work_dir)
    assert ranks[0] == ranks[1] and "pixel_loss.perceptual" in ranks[0]

    ckpt = torch.load(os.path.join(work_dir, "iter_4.pth"), map_location="cpu", weights_only=False)
    assert ckpt["meta"]["iter"] == 4
    assert not any("pixel_loss" in k for k in ckpt["state_dict"])
    _baseline_model().load_state_dict(ckpt["state_dict"], strict=True)

    # --resume continues from the latest checkpoint of the work dir.
    run_tool(dist + ["--resume"] + _data_options(data_root) + ["train_cfg.max_iters=6"],
             pythonpath=[HERE], PORT=str(free_port()))
    resumed = torch.load(os.path.join(work_dir, "iter_6.pth"), map_location="cpu", weights_only=False)
    assert resumed["meta"]["iter"] == 6
    losses, _ = _scalars(work_dir)
    assert [row["iter"] for row in losses] == [5, 6]  # continued, not restarted
    for row in losses:
        assert all(torch.isfinite(torch.tensor(row[k])) for k in ("loss", "loss_pix", "loss_gpl"))
        assert row["loss_gpl"] > 0


def test_zero_loss_weight_reproduces_the_baseline_run(tmp_path, data_root, run_tool):
    runs = {}
    for name, body in (("baseline", ""),
                       ("zero", GPL_LINE.format(extra=", perceptual=dict(loss_weight=0.0)"))):
        work_dir = str(tmp_path / name)
        run_tool([sys.executable, "tools/train.py", _config(tmp_path, name, body), "--work-dir", work_dir]
                 + _data_options(data_root), pythonpath=[HERE])
        ckpt = torch.load(os.path.join(work_dir, "iter_4.pth"), map_location="cpu", weights_only=False)
        runs[name] = (ckpt["state_dict"], _scalars(work_dir)[0])
    (base_state, base_log), (zero_state, zero_log) = runs["baseline"], runs["zero"]
    assert list(base_state) == list(zero_state)
    for key in base_state:
        assert torch.equal(base_state[key], zero_state[key]), key
    assert len(base_log) == len(zero_log) == 4
    for base_row, zero_row in zip(base_log, zero_log):
        assert base_row["loss"] == zero_row["loss"] == zero_row["loss_pix"]
        assert zero_row["loss_gpl"] == 0.0
