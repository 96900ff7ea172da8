"""The core package imports torch and nothing from any training framework."""
import subprocess
import sys


def test_core_imports_no_framework():
    code = ("import sys, randperc_plugins, randperc_plugins.losses\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "{'mmengine', 'mmcv', 'mmseg', 'mmagic', 'mmdet', 'detectron2'})\n"
            "print(bad)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_public_names():
    import importlib

    import randperc_plugins

    random_cnn = importlib.import_module("randperc_plugins.losses.random_cnn")
    patch_mmd = importlib.import_module("randperc_plugins.losses.patch_mmd")
    assert randperc_plugins.RandomCNNPerceptualLoss is random_cnn.RandomCNNPerceptualLoss
    assert randperc_plugins.PatchMMDLoss is patch_mmd.PatchMMDLoss
    assert randperc_plugins.patch_mmd is patch_mmd.patch_mmd
