"""Detectron2 in the pinned environment: its compiled ops load and its PyPI dependencies are pinned."""
import importlib
import importlib.metadata

import pytest
from packaging.requirements import Requirement
from pins import normalise, read_constraints

pytestmark = pytest.mark.detectron2


def test_compiled_ops_load():
    importlib.import_module("detectron2._C")


def test_every_dependency_of_detectron2_is_pinned_at_the_installed_version():
    pins = read_constraints()
    requires = importlib.metadata.requires("detectron2") or []
    direct = [req for req in map(Requirement, requires)
              if req.marker is None or req.marker.evaluate({"extra": ""})]
    assert direct, "detectron2 declares no dependencies: the wheel's metadata is not what we expect"
    for req in direct:
        name = normalise(req.name)
        assert name in pins, f"constraints.txt has no line for {req.name}, a dependency of detectron2"
        installed = importlib.metadata.version(req.name)
        assert pins[name].specifier.contains(installed, prereleases=True), \
            f"{req.name} {installed} is installed, constraints.txt asks {pins[name].specifier}"
