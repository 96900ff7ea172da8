"""The command-line handling tools/train.py and tools/test.py share (randperc_plugins.launch) and
test.py's options, checked on the configs they build (no run)."""
import importlib.util
import os

import pytest

pytest.importorskip("mmseg")

from randperc_plugins import launch  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOY_CONFIG = os.path.join(REPO, "tests", "mmseg", "data", "toy_fcn.py")
PSPNET = "mmseg::pspnet/pspnet_r50-d8_4xb2-80k_cityscapes-512x1024.py"


def _tool(name):
    spec = importlib.util.spec_from_file_location(f"tools_{name}", os.path.join(REPO, "tools", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def test_tool():
    return _tool("test")


def _config(tmp_path, body):
    path = tmp_path / "cfg.py"
    path.write_text(f"_base_ = {TOY_CONFIG!r}\n{body}\n")
    return str(path)


def test_a_shipped_baseline_config_is_named_as_base_names_it(test_tool):
    cfg = test_tool.build_cfg(test_tool.parse_args([PSPNET, "ckpt.pth"]))
    assert cfg.model.decode_head.type == "PSPHead"
    assert cfg.load_from == "ckpt.pth" and cfg.launcher == "none"
    assert cfg.work_dir == os.path.join("./work_dirs", "pspnet_r50-d8_4xb2-80k_cityscapes-512x1024")
    assert "model_wrapper_cfg" not in cfg  # one process: no DDP wrapper


@pytest.mark.parametrize("path, message", [("nosuchpackage::a.py", "'nosuchpackage' is not an installed"),
                                           ("mmseg::pspnet/nope.py", "no such config shipped with mmseg")])
def test_unknown_shipped_config_is_refused(path, message):
    with pytest.raises(SystemExit, match=f"`config` '{path}': {message}"):
        launch.config_file(path)


def test_work_dir_and_cfg_options_apply_in_the_frameworks_order(test_tool, tmp_path):
    cfg = test_tool.build_cfg(test_tool.parse_args(
        [TOY_CONFIG, "c.pth", "--work-dir", str(tmp_path), "--cfg-options", "work_dir=ignored",
         "test_dataloader.batch_size=3"]))
    assert cfg.work_dir == str(tmp_path)  # the command line's --work-dir wins over the config's
    assert cfg.test_dataloader.batch_size == 3


def test_tta_wraps_the_model_and_swaps_the_pipeline(test_tool, tmp_path):
    config = _config(tmp_path, "tta_model = dict(type='SegTTAModel')\n"
                               "tta_pipeline = [dict(type='LoadImageFromFile'), dict(type='PackSegInputs')]")
    cfg = test_tool.build_cfg(test_tool.parse_args([config, "c.pth", "--tta"]))
    assert cfg.model.type == "SegTTAModel" and cfg.model.module.type == "EncoderDecoder"
    assert [t["type"] for t in cfg.test_dataloader.dataset.pipeline] == ["LoadImageFromFile", "PackSegInputs"]


def test_tta_without_its_config_keys_is_refused(test_tool):
    with pytest.raises(SystemExit, match="--tta needs `tta_model` and `tta_pipeline`"):
        test_tool.build_cfg(test_tool.parse_args([TOY_CONFIG, "c.pth", "--tta"]))


def test_show_dir_draws_through_mmsegs_visualizer(test_tool, tmp_path):
    config = _config(tmp_path, "default_hooks = dict(visualization=dict(type='SegVisualizationHook'))")
    cfg = test_tool.build_cfg(test_tool.parse_args([config, "c.pth", "--show-dir", "painted"]))
    assert cfg.default_hooks.visualization.draw is True
    assert cfg.visualizer.save_dir == "painted"
    with pytest.raises(SystemExit, match="need a visualization hook"):
        test_tool.build_cfg(test_tool.parse_args([TOY_CONFIG, "c.pth", "--show-dir", "painted"]))


def test_out_follows_the_configs_framework(test_tool, tmp_path):
    cfg = test_tool.build_cfg(test_tool.parse_args([TOY_CONFIG, "c.pth", "--out", "preds"]))
    assert cfg.test_evaluator.output_dir == "preds" and cfg.test_evaluator.keep_results is True
    mmdet = _config(tmp_path, "default_scope = 'mmdet'")
    with pytest.raises(SystemExit, match="--out must name a .pkl or .pickle file for an mmdet config, "
                                         "got 'preds'"):
        test_tool.build_cfg(test_tool.parse_args([mmdet, "c.pth", "--out", "preds"]))


def test_cpu_launcher_wraps_the_model_for_gloo(monkeypatch):
    from mmengine.config import Config

    monkeypatch.setattr(launch.torch.distributed, "is_initialized", lambda: True)  # no process group
    cfg = Config.fromfile(TOY_CONFIG)
    cfg.launcher = "pytorch"
    launch.use_cpu_distributed(cfg)
    assert cfg.model_wrapper_cfg == dict(type="MMDistributedDataParallel", broadcast_buffers=False,
                                         device_ids=None)
    assert cfg.env_cfg.dist_cfg.backend == "gloo"


@pytest.mark.parametrize("launcher, variables", [
    ("slurm", dict(SLURM_PROCID="3", SLURM_NTASKS="8", SLURM_LOCALID="1", MASTER_ADDR="node7")),
    ("mpi", dict(OMPI_COMM_WORLD_RANK="3", OMPI_COMM_WORLD_SIZE="8", OMPI_COMM_WORLD_LOCAL_RANK="1",
                 MASTER_ADDR="node7")),
])
def test_scheduler_variables_become_torchs(monkeypatch, launcher, variables):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    launch._set_torch_env_from_scheduler(launcher)
    assert {k: os.environ[k] for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")} \
        == dict(RANK="3", WORLD_SIZE="8", LOCAL_RANK="1", MASTER_ADDR="node7", MASTER_PORT="29500")


def test_slurm_launcher_outside_srun_is_refused(monkeypatch):
    monkeypatch.setenv("MASTER_ADDR", "node7")
    for name in ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SystemExit, match="--launcher slurm needs the scheduler's variables SLURM_PROCID, "
                                         "SLURM_NTASKS, SLURM_LOCALID; start the script through srun"):
        launch._set_torch_env_from_scheduler("slurm")


@pytest.mark.parametrize("config, scope", [("mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py", "mmdet"),
                                           ("mmagic::edsr/edsr_x2c64b16_1xb16-300k_div2k.py", "mmagic")])
def test_other_frameworks_shipped_configs_build(test_tool, config, scope):
    cfg = test_tool.build_cfg(test_tool.parse_args([config, "c.pth", "--out", "result.pkl"]))
    assert cfg.default_scope == scope and cfg.load_from == "c.pth"


def test_show_dir_follows_mmdets_hook(test_tool):
    cfg = test_tool.build_cfg(test_tool.parse_args(["mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py", "c.pth",
                                                    "--show-dir", "painted"]))
    assert cfg.default_hooks.visualization.draw is True
    assert cfg.default_hooks.visualization.test_out_dir == "painted"
