"""``python -m randperc_plugins.configs``: what it lists is read from the config files themselves, for the
shipped mmseg configs and for folders it has never seen (mmagic, detectron2 LazyConfig and YAML)."""
import doctest
import os
import shutil
import sys

import pytest

from randperc_plugins import configs as configs_cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO_CONFIGS = os.path.join(REPO, "configs")

# Configs of frameworks the CLI has no code for. Comments name the other loss and a wrong baseline:
# only the code may count.
EXTRA_CONFIGS = {
    "mmagic/edsr/edsr_x4c64b16_patch-mmd_1xb16-300k_div2k.py": (
        "# unlike the random-CNN loss (RandomCNNPerceptualLoss), _base_ = 'mmagic::wrong.py'\n"
        "_base_ = ['mmagic::edsr/edsr_x4c64b16_1xb16-300k_div2k.py']\n"
        "model = dict(pixel_loss=dict(_delete_=True, type='randperc_plugins.mmagic.L1PlusPatchMMDLoss'))\n"),
    "mmdet/mask_rcnn/mask-rcnn_r50_fpn_gpl_1x_coco.py": (
        "from mmengine.config import read_base\n"
        "with read_base():\n"
        "    from mmdet.configs.mask_rcnn.mask_rcnn_r50_fpn_1x_coco import *\n"
        "from randperc_plugins.mmdet import RandomCNNMaskLoss\n"
        "model.roi_head.mask_head.loss_mask = dict(type=RandomCNNMaskLoss)\n"),
    "mmdet/mask_rcnn/mask-rcnn_r50_fpn_patch-mmd_1x_coco.py": (
        "from mmengine import config\n"
        "with config.read_base():\n"
        "    from .._base_.models.mask_rcnn_r50_fpn import *\n"
        "    from .._base_.datasets.coco_instance import *\n"
        "model.roi_head.mask_head.loss_mask = dict(type='randperc_plugins.mmdet.PatchMMDMaskLoss')\n"),
    "detectron2/mask_rcnn_R_50_FPN_gpl.py": (
        "from detectron2 import model_zoo\n"
        "from randperc_plugins.detectron2 import RandomCNNPerceptualMaskHead\n"
        "_cfg = model_zoo.get_config('new_baselines/mask_rcnn_R_50_FPN_100ep_LSJ.py')\n"
        "model, train = _cfg.model, _cfg.train\n"
        "model.roi_heads.mask_head._target_ = RandomCNNPerceptualMaskHead\n"),
    "detectron2/mask_rcnn_R_50_FPN_gpl.yaml": (
        "# a patch-MMD head would be PatchMMDMaskHead\n"
        "_BASE_: COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml\n"
        "MODEL:\n  ROI_MASK_HEAD:\n    NAME: RandomCNNPerceptualMaskHead\n"),
}


def _expected_mmseg(path):
    """Framework, loss and baseline of a shipped mmseg config, from its file name (independent of the
    CLI, which reads the file's code): `<model>_r50-d8_<loss>_<schedule>.py` inherits
    `mmseg::<model>/<model>_r50-d8_<schedule>.py`."""
    name = os.path.basename(path)
    model, backbone, loss, schedule = name.split("_", 3)
    return "mmseg", loss, f"mmseg::{model}/{model}_{backbone}_{schedule}"


@pytest.fixture
def extra_root(tmp_path, monkeypatch):
    """A configs folder with the repository's mmseg configs plus the extra frameworks above."""
    root = tmp_path / "configs"
    shutil.copytree(os.path.join(REPO_CONFIGS, "mmseg"), root / "mmseg")
    for relative, text in EXTRA_CONFIGS.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    # not configs: compiled files, a module configs import, a folder of base fragments, other files
    (root / "detectron2" / "__pycache__").mkdir()
    (root / "detectron2" / "__pycache__" / "stale.py").write_text("x = 1\n")
    (root / "detectron2" / "__init__.py").write_text("")
    (root / "mmagic" / "_base_").mkdir()
    (root / "mmagic" / "_base_" / "sr_schedule_gpl.py").write_text("train_cfg = dict(max_iters=10)\n")
    (root / "detectron2" / "README.md").write_text("not a config\n")
    monkeypatch.setattr(configs_cli, "config_root", lambda: root)
    return root


def test_source_checkout_reads_the_repository_configs():
    assert configs_cli.config_root() == configs_cli.Path(REPO_CONFIGS)


def test_shipped_mmseg_configs_are_described_from_their_files():
    root = configs_cli.Path(REPO_CONFIGS)
    shipped = sorted(str(p) for p in root.rglob("*") if p.suffix in (".py", ".yaml")
                     and not any(part.startswith("_") for part in p.relative_to(root).parts))
    found = configs_cli.find_configs()
    assert [str(c.path) for c in found] == shipped
    mmseg = [c for c in found if c.framework == "mmseg"]
    assert len(mmseg) >= 12
    for info in mmseg:
        assert info.name == info.path.stem
        assert (info.framework, info.loss, info.baseline) == _expected_mmseg(info.path), info.name


def test_new_framework_folders_need_no_code(extra_root):
    found = {c.relative_path: c for c in configs_cli.find_configs()}
    assert set(EXTRA_CONFIGS) <= set(found)
    assert len(found) == len(EXTRA_CONFIGS) + len(list((extra_root / "mmseg").rglob("*.py")))
    described = {k: (found[k].name, found[k].framework, found[k].loss, found[k].baseline)
                 for k in EXTRA_CONFIGS}
    assert described == {
        "mmagic/edsr/edsr_x4c64b16_patch-mmd_1xb16-300k_div2k.py": (
            "edsr_x4c64b16_patch-mmd_1xb16-300k_div2k", "mmagic", "patch-mmd",
            "mmagic::edsr/edsr_x4c64b16_1xb16-300k_div2k.py"),
        "mmdet/mask_rcnn/mask-rcnn_r50_fpn_gpl_1x_coco.py": (
            "mask-rcnn_r50_fpn_gpl_1x_coco", "mmdet", "gpl",
            "mmdet.configs.mask_rcnn.mask_rcnn_r50_fpn_1x_coco"),
        "mmdet/mask_rcnn/mask-rcnn_r50_fpn_patch-mmd_1x_coco.py": (
            "mask-rcnn_r50_fpn_patch-mmd_1x_coco", "mmdet", "patch-mmd",
            ".._base_.models.mask_rcnn_r50_fpn, .._base_.datasets.coco_instance"),
        # the two detectron2 files share a stem: their file names tell them apart
        "detectron2/mask_rcnn_R_50_FPN_gpl.py": (
            "mask_rcnn_R_50_FPN_gpl.py", "detectron2", "gpl",
            "new_baselines/mask_rcnn_R_50_FPN_100ep_LSJ.py"),
        "detectron2/mask_rcnn_R_50_FPN_gpl.yaml": (
            "mask_rcnn_R_50_FPN_gpl.yaml", "detectron2", "gpl",
            "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml"),
    }


def test_list_filters_and_prints_a_table(extra_root, capsys):
    assert configs_cli.main(["list", "DETECTRON2", "gpl"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "framework", "loss", "baseline"]
    assert [line.split()[:3] for line in lines[1:]] == [
        ["mask_rcnn_R_50_FPN_gpl.py", "detectron2", "gpl"],
        ["mask_rcnn_R_50_FPN_gpl.yaml", "detectron2", "gpl"]]
    # every column starts at the same offset on every line
    assert len({line.index("detectron2") for line in lines[1:]} | {lines[0].index("framework")}) == 1

    assert configs_cli.main(["list", "pspnet", "ade20k", "160k"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert names == ["pspnet_r50-d8_gpl_4xb4-160k_ade20k-512x512",
                     "pspnet_r50-d8_patch-mmd_4xb4-160k_ade20k-512x512"]

    assert configs_cli.main(["list", "no-such-config"]) == 1
    assert "no config matches" in capsys.readouterr().err


def test_path_accepts_name_file_name_or_relative_path(extra_root, capsys):
    name = "deeplabv3plus_r50-d8_gpl_4xb2-80k_cityscapes-512x1024"
    expected = extra_root / "mmseg" / "deeplabv3plus" / f"{name}.py"
    for spelling in (name, f"{name}.py", f"mmseg/deeplabv3plus/{name}.py"):
        assert configs_cli.main(["path", spelling]) == 0
        assert capsys.readouterr().out.strip() == str(expected)
    assert configs_cli.get_config_file("mask_rcnn_R_50_FPN_gpl.yaml").suffix == ".yaml"


@pytest.mark.parametrize("name, message", [
    ("pspnet_r50-d8_gpl_4xb2-80k_cityscapes",
     "Did you mean 'pspnet_r50-d8_gpl_4xb2-80k_cityscapes-512x1024'"),
    ("mask_rcnn_R_50_FPN_gpl", "names several configs: detectron2/mask_rcnn_R_50_FPN_gpl.py, "
                               "detectron2/mask_rcnn_R_50_FPN_gpl.yaml"),
])
def test_unknown_or_ambiguous_name_is_a_clear_error(extra_root, capsys, name, message):
    with pytest.raises(SystemExit) as exit_info:
        configs_cli.main(["path", name])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "`name`" in err and repr(name) in err and message in err


def test_copy_writes_an_identical_file_and_keeps_an_existing_one(extra_root, tmp_path, capsys):
    name = "pspnet_r50-d8_patch-mmd_4xb2-80k_cityscapes-512x1024"
    target_dir = tmp_path / "work" / "mine"  # created by copy
    assert configs_cli.main(["copy", name, str(target_dir)]) == 0
    copy = target_dir / f"{name}.py"
    assert capsys.readouterr().out.strip() == str(copy)
    original = (extra_root / "mmseg" / "pspnet" / f"{name}.py").read_bytes()
    assert copy.read_bytes() == original

    copy.write_text("edited\n")
    with pytest.raises(SystemExit):
        configs_cli.main(["copy", name, str(target_dir)])
    assert "--force" in capsys.readouterr().err
    assert copy.read_text() == "edited\n"
    assert configs_cli.main(["copy", name, str(target_dir), "--force"]) == 0
    assert copy.read_bytes() == original


def test_yaml_configs_without_pyyaml_are_still_listed(extra_root, monkeypatch):
    monkeypatch.setitem(sys.modules, "yaml", None)  # `import yaml` raises ImportError
    found = {c.relative_path: c for c in configs_cli.find_configs("detectron2")}
    assert found["detectron2/mask_rcnn_R_50_FPN_gpl.yaml"].loss == "? (needs PyYAML)"
    assert found["detectron2/mask_rcnn_R_50_FPN_gpl.py"].loss == "gpl"


def test_no_configs_folder_is_a_clear_error(tmp_path, monkeypatch):
    fake_package = tmp_path / "site-packages" / "randperc_plugins"
    fake_package.mkdir(parents=True)
    monkeypatch.setattr(configs_cli, "__file__", str(fake_package / "configs.py"))
    with pytest.raises(FileNotFoundError, match=r"\.mim/configs"):
        configs_cli.config_root()
    (fake_package / ".mim" / "configs").mkdir(parents=True)
    assert configs_cli.config_root() == fake_package / ".mim" / "configs"


def test_module_docstring_example_runs():
    result = doctest.testmod(configs_cli, verbose=False)
    assert result.attempted > 0 and result.failed == 0


def test_copy_to_a_file_or_an_unwritable_folder_is_a_one_line_error(extra_root, tmp_path, capsys):
    name = "pspnet_r50-d8_patch-mmd_4xb2-80k_cityscapes-512x1024"
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    with pytest.raises(SystemExit) as exit_info:
        configs_cli.main(["copy", name, str(a_file)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(a_file) in err and "is a file, not a directory" in err
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root writes anywhere: make the parent a file instead
            target = a_file / "below"
        else:
            target = locked / "sub"
        with pytest.raises(SystemExit) as exit_info:
            configs_cli.main(["copy", name, str(target)])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err and str(target.parent) in err
    finally:
        locked.chmod(0o700)


def _unwritable_folder(tmp_path):
    """A folder this process may not write into: a read-only one, or (as root, whom permissions do not
    stop) one under /sys."""
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        return locked / "mine"
    if not os.path.isdir("/sys/kernel"):
        pytest.skip("no folder that root cannot write into here")
    return "/sys/randperc_plugins_test/mine"


@pytest.mark.parametrize("case", ["a file", "under a file", "no permission"])
def test_copy_onto_an_unusable_path_is_a_one_line_error_with_the_path(extra_root, tmp_path, capsys, case):
    name = "pspnet_r50-d8_patch-mmd_4xb2-80k_cityscapes-512x1024"
    (tmp_path / "notes.txt").write_text("a file\n")
    destination = {"a file": tmp_path / "notes.txt", "under a file": tmp_path / "notes.txt" / "sub",
                   "no permission": None}[case]
    if destination is None:
        destination = _unwritable_folder(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        configs_cli.main(["copy", name, str(destination)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    expected = str(tmp_path / "notes.txt") if case != "no permission" else str(destination)
    assert err.startswith("python -m randperc_plugins.configs copy: error: ") and expected.split("/mine")[0] in err
    if case != "no permission":
        assert ("is a file" in err or "Not a directory" in err) and (tmp_path / "notes.txt").read_text() == "a file\n"
    else:
        assert "cannot write" in err


def test_copy_errors_end_without_a_traceback_from_the_command_line(tmp_path):
    import subprocess

    (tmp_path / "notes.txt").write_text("a file\n")
    proc = subprocess.run([sys.executable, "-m", "randperc_plugins.configs", "copy",
                           "pspnet_r50-d8_gpl_4xb2-80k_cityscapes-512x1024", str(tmp_path / "notes.txt")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert str(tmp_path / "notes.txt") in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
