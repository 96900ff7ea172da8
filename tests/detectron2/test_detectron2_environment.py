"""Detectron2 in the pinned environment: its compiled ops load and its PyPI dependencies are pinned."""
import importlib
import importlib.metadata
import os
import re

import pytest
from packaging.requirements import Requirement

pytestmark = pytest.mark.detectron2

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _pins():
    pins = {}
    with open(os.path.join(REPO_ROOT, "constraints.txt")) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                req = Requirement(line)
                pins[re.sub(r"[-_.]+", "-", req.name.lower())] = req
    return pins


def test_compiled_ops_load():
    importlib.import_module("detectron2._C")


def test_every_dependency_of_detectron2_is_pinned_at_the_installed_version():
    pins = _pins()
    requires = importlib.metadata.requires("detectron2") or []
    direct = [req for req in map(Requirement, requires)
              if req.marker is None or req.marker.evaluate({"extra": ""})]
    assert direct, "detectron2 declares no dependencies: the wheel's metadata is not what we expect"
    for req in direct:
        name = re.sub(r"[-_.]+", "-", req.name.lower())
        assert name in pins, f"constraints.txt has no line for {req.name}, a dependency of detectron2"
        installed = importlib.metadata.version(req.name)
        assert pins[name].specifier.contains(installed, prereleases=True), \
            f"{req.name} {installed} is installed, constraints.txt asks {pins[name].specifier}"
