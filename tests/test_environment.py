"""The pinned environment: installed versions match constraints.txt, and the frameworks import together."""
import importlib
import importlib.metadata

import pytest
from pins import read_constraints

PINNED = ("torch", "torchvision", "mmengine", "mmcv", "mmsegmentation", "mmagic", "mmdet")


def test_constraints_pin_every_framework():
    reqs = read_constraints()
    for name in PINNED:
        assert name in reqs, f"constraints.txt has no line for {name}"
        assert str(reqs[name].specifier).startswith("=="), f"{name} is not pinned exactly"


@pytest.mark.parametrize("name", PINNED)
def test_installed_version_matches_constraints(name):
    req = read_constraints()[name]
    installed = importlib.metadata.version(name)
    assert req.specifier.contains(installed, prereleases=True), \
        f"{name} {installed} is installed, constraints.txt asks {req.specifier}"


def test_mmcv_is_the_full_build_with_ops():
    importlib.import_module("mmcv._ext")


def test_frameworks_import_together():
    for module in ("mmseg.models", "mmagic.models", "mmdet.models"):
        importlib.import_module(module)
