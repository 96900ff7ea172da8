"""The pinned environment: installed versions match constraints.txt, and the frameworks import together."""
import importlib
import importlib.metadata
import os

import pytest
from packaging.requirements import Requirement


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PINNED = ("torch", "torchvision", "mmengine", "mmcv", "mmsegmentation", "mmagic", "mmdet")


def _constraints():
    reqs = {}
    with open(os.path.join(REPO_ROOT, "constraints.txt")) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                req = Requirement(line)
                reqs[req.name.lower()] = req
    return reqs


def test_constraints_pin_every_framework():
    reqs = _constraints()
    for name in PINNED:
        assert name in reqs, f"constraints.txt has no line for {name}"
        assert str(reqs[name].specifier).startswith("=="), f"{name} is not pinned exactly"


@pytest.mark.parametrize("name", PINNED)
def test_installed_version_matches_constraints(name):
    req = _constraints()[name]
    installed = importlib.metadata.version(name)
    assert req.specifier.contains(installed, prereleases=True), \
        f"{name} {installed} is installed, constraints.txt asks {req.specifier}"


def test_mmcv_is_the_full_build_with_ops():
    importlib.import_module("mmcv._ext")


def test_frameworks_import_together():
    for module in ("mmseg.models", "mmagic.models", "mmdet.models"):
        importlib.import_module(module)
