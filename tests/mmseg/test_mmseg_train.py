"""Training through tools/train.py and tools/dist_train.sh: 2 CPU processes on gloo, resume, baseline
checkpoint compatibility, and a zero loss weight that reproduces the baseline exactly."""
import os
import sys

import pytest
import torch

pytest.importorskip("mmseg")
from mmengine.config import Config  # noqa: E402
from mmseg.registry import MODELS  # noqa: E402
from mmseg.utils import register_all_modules  # noqa: E402

from experiments.datasets.seg_scenes import make_seg_dataset  # noqa: E402
from train_runs import logged_scalars, loss_weights_on_ranks, write_config  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TOY_CONFIG = os.path.join(HERE, "data", "toy_fcn.py")
GPL_LINE = ("model = dict(decode_head=dict(loss_decode=dict("
            "type='randperc_plugins.mmseg.AddRandomCNNPerceptualLoss'{extra})))")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return make_seg_dataset(str(tmp_path_factory.mktemp("toy_seg")), num_train=8, num_val=2)


def _config(tmp_path, name, body):
    return write_config(tmp_path, TOY_CONFIG, name, body)


def _data_options(root):
    return ["--cfg-options", f"train_dataloader.dataset.data_root={root}",
            f"val_dataloader.dataset.data_root={root}", f"test_dataloader.dataset.data_root={root}"]


def _scalars(work_dir):
    """Logged training scalars of the latest run in ``work_dir`` (one run per timestamped folder)."""
    return [row for row in logged_scalars(work_dir) if "loss" in row]


def _baseline_model():
    register_all_modules(init_default_scope=True)
    return MODELS.build(Config.fromfile(TOY_CONFIG).model)


@pytest.mark.dist
def test_two_process_cpu_training_resumes_and_loads_into_the_baseline(tmp_path, data_root, run_tool,
                                                                     free_port):
    cfg = _config(tmp_path, "toy_gpl", GPL_LINE.format(extra="") +
                  "\nmodel.update(auxiliary_head=dict(loss_decode=dict("
                  "type='randperc_plugins.mmseg.AddPatchMMDLoss')))"
                  "\ncustom_hooks = [dict(type='loss_weights_probe.LossWeightsProbe', match='loss_decode')]")
    work_dir = str(tmp_path / "work")
    dist = ["bash", "tools/dist_train.sh", cfg, "2", "--work-dir", work_dir]
    log = run_tool(dist + _data_options(data_root), pythonpath=[HERE], PORT=str(free_port()))
    assert "mIoU" in log  # the validation at the last iteration ran

    # The random loss network is the same on both ranks (compared, not assumed).
    ranks = loss_weights_on_ranks(work_dir)
    assert ranks[0] == ranks[1] and "loss_decode" in ranks[0]

    ckpt = torch.load(os.path.join(work_dir, "iter_4.pth"), map_location="cpu", weights_only=False)
    assert ckpt["meta"]["iter"] == 4
    assert not any("loss_decode" in k for k in ckpt["state_dict"])
    _baseline_model().load_state_dict(ckpt["state_dict"], strict=True)

    # --resume continues from the latest checkpoint of the work dir.
    log = run_tool(dist + ["--resume"] + _data_options(data_root) + ["train_cfg.max_iters=6"],
                   pythonpath=[HERE], PORT=str(free_port()))
    resumed = torch.load(os.path.join(work_dir, "iter_6.pth"), map_location="cpu", weights_only=False)
    assert resumed["meta"]["iter"] == 6
    losses = _scalars(work_dir)
    assert [row["iter"] for row in losses] == [5, 6]  # continued, not restarted
    for row in losses:
        assert all(torch.isfinite(torch.tensor(row[k])) for k in ("decode.loss_gpl", "aux.loss_patch_mmd"))


def test_zero_loss_weight_reproduces_the_baseline_run(tmp_path, data_root, run_tool):
    runs = {}
    for name, body in (("baseline", ""),
                       ("zero", GPL_LINE.format(extra=", perceptual=dict(loss_weight=0.0)"))):
        work_dir = str(tmp_path / name)
        run_tool([sys.executable, "tools/train.py", _config(tmp_path, name, body), "--work-dir", work_dir]
                 + _data_options(data_root))
        ckpt = torch.load(os.path.join(work_dir, "iter_4.pth"), map_location="cpu", weights_only=False)
        runs[name] = (ckpt["state_dict"], _scalars(work_dir))
    (base_state, base_log), (zero_state, zero_log) = runs["baseline"], runs["zero"]
    assert list(base_state) == list(zero_state)
    for key in base_state:
        assert torch.equal(base_state[key], zero_state[key]), key
    assert len(base_log) == len(zero_log) == 4
    for base_row, zero_row in zip(base_log, zero_log):
        for key in ("loss", "decode.loss_ce", "aux.loss_ce", "decode.acc_seg"):
            assert base_row[key] == zero_row[key], key
        assert zero_row["decode.loss_gpl"] == 0.0
