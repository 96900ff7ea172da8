"""The wheel a user installs: built with ``python -m build``, installed into a fresh virtual environment,
used from a directory outside the repository.

The fresh environment reuses the project environment's packages (torch, mmcv, mmseg, ...) through a
``.pth`` line naming its site-packages: ``venv --system-site-packages`` would reuse the base
interpreter's packages, not the project environment's. A ``.pth`` line adds a path without running the
``.pth`` files found there, so the project environment's editable install of randperc_plugins stays
inactive and every import below comes from the installed wheel (checked). The build runs without
isolation (the environment's setuptools and wheel), so the test needs no network.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

from randperc_plugins.configs import CONFIG_SUFFIXES, find_configs, format_configs
from test_layout import PRODUCT_TOP_LEVEL

pytest.importorskip("build")

REPO = Path(__file__).resolve().parent.parent
SOURCE_VERSION = re.search(r'^__version__ = "([^"]+)"',
                           (REPO / "randperc_plugins" / "__init__.py").read_text(), re.M).group(1)
SHIPPED = sorted(p.relative_to(REPO / "configs").as_posix() for p in (REPO / "configs").rglob("*")
                 if p.suffix in CONFIG_SUFFIXES and "__pycache__" not in p.parts)
CONFIG = "pspnet_r50-d8_gpl_4xb2-80k_cityscapes-512x1024"
# A folder added to the copy the wheel is built from: a framework no code knows, a nested folder and
# a YAML file must reach the wheel and its `list` as well.
PROBE = ("zz_probe/nested/probe_patch-mmd.yaml",
         "_BASE_: COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml\n"
         "MODEL:\n  ROI_MASK_HEAD:\n    NAME: PatchMMDMaskHead\n")
PROBE_ROW = ["probe_patch-mmd", "zz_probe", "patch-mmd",
             "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml"]
# what a checkout holds besides its source (top level: environment, build outputs, training runs, data)
NOT_SOURCE_TOP = {".git", ".venv", "build", "dist", "work_dirs", "data"}


def _is_virtualenv(path):
    return (path / "pyvenv.cfg").is_file()


def _not_source(directory, names):
    """``shutil.copytree``'s ``ignore``: what is not source, at the top level and anywhere. Any
    virtual environment is left out by what it is, whatever its name (CI's core tier, `.venv-core`,
    is several GB: copying it once filled the disk)."""
    top = Path(directory) == REPO
    return {n for n in names if (top and (n in NOT_SOURCE_TOP or _is_virtualenv(REPO / n)))
            or n.endswith(".egg-info") or n in ("__pycache__", ".pytest_cache")}


def _run(cmd, cwd, timeout=300):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing from the checkout
    env["OMP_NUM_THREADS"] = "2"
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python of a fresh venv with the wheel installed, a directory outside the repository, dist dir)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source, dist, venv, outside = tmp / "source", tmp / "dist", tmp / "venv", tmp / "outside"
    # build from a copy, so that the build's egg-info and build/ never land in the checkout
    shutil.copytree(REPO, source, ignore=_not_source, symlinks=True)
    assert not list(source.glob("*/pyvenv.cfg")), "a virtual environment was copied as source"
    probe = source / "configs" / PROBE[0]
    probe.parent.mkdir(parents=True)
    probe.write_text(PROBE[1])
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, source], cwd=tmp)

    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp)
    python = venv / "bin" / "python"
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=tmp).strip())
    project_site = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "project-environment.pth").write_text("".join(f"{p}\n" for p in sorted(project_site)))
    wheel = next(dist.glob("*.whl"))
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
          "--disable-pip-version-check", "-q", wheel], cwd=tmp)
    outside.mkdir()
    return python, outside, dist, site


def test_wheel_and_sdist_carry_every_config_and_the_project_files(installed):
    _, _, dist, _ = installed
    wheels, sdists = list(dist.glob("*.whl")), list(dist.glob("*.tar.gz"))
    assert [w.name for w in wheels] == [f"randperc_plugins-{SOURCE_VERSION}-py3-none-any.whl"]
    assert [s.name for s in sdists] == [f"randperc_plugins-{SOURCE_VERSION}.tar.gz"]

    names = zipfile.ZipFile(wheels[0]).namelist()
    prefix = "randperc_plugins/.mim/configs/"
    assert sorted(n[len(prefix):] for n in names if n.startswith(prefix)) == sorted(SHIPPED + [PROBE[0]])
    assert any(n.endswith(".dist-info/LICENSE") or n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not any(n.startswith(("configs/", "tests/", "tools/")) for n in names)

    top = f"randperc_plugins-{SOURCE_VERSION}/"
    members = set(tarfile.open(sdists[0]).getnames())
    # the sdist carries the research code too: its tools/ and tests/ import it
    for needed in ["LICENSE", "CITATION.cff", "CHANGELOG.md", "README.md", "setup.py", "setup.cfg",
                   "constraints.txt", "tools/train.py", "tests/mmseg/data/toy_fcn.py",
                   "experiments/__init__.py", "experiments/datasets/seg_scenes.py"] + [
            f"configs/{c}" for c in SHIPPED]:
        assert top + needed in members, needed


def test_wheel_holds_the_product_only(installed):
    _, _, dist, _ = installed
    names = zipfile.ZipFile(next(dist.glob("*.whl"))).namelist()
    assert {n.split("/")[0] for n in names} == {"randperc_plugins", f"randperc_plugins-{SOURCE_VERSION}.dist-info"}
    package = [n[len("randperc_plugins/"):] for n in names if n.startswith("randperc_plugins/")]
    # the first level of the package: its modules, its subpackages (`name/`) and the configs (.mim/)
    first_level = {n.split("/")[0] + ("/" if "/" in n else "") for n in package}
    assert first_level == PRODUCT_TOP_LEVEL | {".mim/"}
    assert all(n.endswith(".py") for n in package if not n.startswith(".mim/"))


def test_installed_package_imports_with_its_version(installed):
    python, outside, _, site = installed
    out = _run([python, "-c", "import json, importlib.metadata as m, randperc_plugins as r; "
                "print(json.dumps([r.__version__, m.version('randperc_plugins'), r.__file__]))"], cwd=outside)
    version, dist_version, location = json.loads(out)
    assert version == dist_version == SOURCE_VERSION
    assert Path(location).parent == site / "randperc_plugins"  # the wheel's copy, not the checkout


def test_cli_lists_locates_and_copies_configs_from_outside_the_repository(installed):
    python, outside, _, site = installed
    cli = [python, "-m", "randperc_plugins.configs"]
    def rows(table):
        return [re.split(r"\s{2,}", line.strip()) for line in table.strip().splitlines()]

    listed = rows(_run(cli + ["list"], cwd=outside))
    # the checkout's configs with the same names, losses and baselines, and the probe (sorted last)
    assert listed == rows(format_configs(find_configs())) + [PROBE_ROW]
    assert len(listed) == len(SHIPPED) + 2

    path = Path(_run(cli + ["path", CONFIG], cwd=outside).strip())
    assert path == site / "randperc_plugins" / ".mim" / "configs" / "mmseg" / "pspnet" / f"{CONFIG}.py"
    assert path.read_bytes() == (REPO / "configs" / "mmseg" / "pspnet" / f"{CONFIG}.py").read_bytes()

    copy = Path(_run(cli + ["copy", CONFIG, "mine"], cwd=outside).strip())
    assert (outside / copy).resolve() == (outside / "mine" / f"{CONFIG}.py").resolve()
    assert (outside / copy).read_bytes() == path.read_bytes()


BUILD_AND_RUN = """
import json, subprocess, sys
import torch
from mmengine.config import Config
from mmseg.registry import MODELS
from mmseg.utils import register_all_modules
from randperc_plugins.benchmarks._framework_models import bn_instead_of_syncbn, seg_batch, total_loss

path = subprocess.run([sys.executable, "-m", "randperc_plugins.configs", "path", sys.argv[1]],
                      check=True, capture_output=True, text=True).stdout.strip()
cfg = Config.fromfile(path)
cfg.model.data_preprocessor.size = (64, 64)  # a small input: the model itself is the config's
register_all_modules(init_default_scope=True)
model = MODELS.build(bn_instead_of_syncbn(cfg.model))
model.train()
batch = seg_batch(model, size=(64, 64), batch=2)  # BN after PSP's 1x1 pooling needs 2 samples
losses = model(**batch, mode="loss")
total_loss(losses).backward()
print(json.dumps(dict(path=path, module=type(model.decode_head.loss_decode[1]).__module__,
                      losses={k: float(v) for k, v in losses.items() if "loss" in k})))
"""


def test_model_of_a_config_found_through_the_cli_builds_and_trains_a_step(installed):
    pytest.importorskip("mmseg")
    python, outside, _, site = installed
    result = json.loads(_run([python, "-c", BUILD_AND_RUN, CONFIG], cwd=outside).splitlines()[-1])
    assert Path(result["path"]).is_relative_to(site)
    assert result["module"] == "randperc_plugins.mmseg"
    assert set(result["losses"]) == {"decode.loss_ce", "decode.loss_gpl", "aux.loss_ce"}
    assert all(value > 0 and value < float("inf") for value in result["losses"].values())


# What a user appends to a copied config to try it on a toy dataset: one iteration on 64x64 scenes in
# mmseg's folder format, nothing downloaded, no validation.
TOY_RUN = """
crop_size = (64, 64)
model.update(data_preprocessor=dict(size=crop_size), pretrained=None)
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(type='BaseSegDataset', data_root='toy', img_suffix='.png', seg_map_suffix='.png',
                 data_prefix=dict(img_path='img_dir/train', seg_map_path='ann_dir/train'),
                 pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
                           dict(type='PackSegInputs')]))
train_cfg = dict(type='IterBasedTrainLoop', max_iters=1, val_interval=100)
val_dataloader = val_cfg = val_evaluator = None
test_dataloader = test_cfg = test_evaluator = None
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1))
"""


def test_copied_config_trains_with_mmsegs_own_train_script(installed):
    pytest.importorskip("mmseg")
    python, outside, _, _ = installed
    work = outside / "train"
    work.mkdir()
    copy = Path(_run([python, "-m", "randperc_plugins.configs", "copy", CONFIG, "."], cwd=work).strip())
    with open(work / copy, "a") as f:
        f.write(TOY_RUN)
    # the toy data generator is research code of the checkout (experiments/), not in the wheel
    _run([sys.executable, REPO / "tools" / "make_seg_scenes.py", "toy", "--num-train", "2", "--num-val", "1"],
         cwd=work)
    # the train script mmseg's wheel ships (what `mim train mmseg CONFIG` runs)
    mmseg_train = _run([python, "-c", "import mmseg, os; "
                        "print(os.path.join(os.path.dirname(mmseg.__file__), '.mim', 'tools', 'train.py'))"],
                       cwd=work).strip()
    log = _run([python, mmseg_train, copy, "--work-dir", "work_dir"], cwd=work)
    assert re.search(r"Iter\(train\) \[1/1\].* decode\.loss_gpl: \d", log), log[-2000:]
    checkpoint = work / "work_dir" / "iter_1.pth"
    assert checkpoint.is_file()
    checkpoint.unlink()  # ~390 MB of PSPNet-R50 weights, read by nothing after this


def test_console_scripts_run_the_products_tools(installed):
    python, outside, _, _ = installed
    bin_dir = Path(python).parent
    out = _run([bin_dir / "randperc-benchmark", "--help"], cwd=outside)
    assert "patch-mmd-exact" in out and "    gpu " in out
    assert "--ci" in _run([bin_dir / "randperc-compare", "--help"], cwd=outside)
    assert "list" in _run([bin_dir / "randperc-configs", "--help"], cwd=outside)
