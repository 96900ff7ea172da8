"""Project-wide pytest options: the opt-in ``slow`` marker, the ``detectron2`` skip and the ``core`` tier."""
import importlib.util
import os

import pytest

TESTS = os.path.dirname(os.path.abspath(__file__))
# The framework-free tier (`make test-core`, in an environment with torch and the test extras only):
# folders and files under tests/ whose tests import torch and the core, never a training framework.
# tests/test_core_tier.py checks that they pass with every framework unimportable.
CORE_TESTS = ("losses", "test_readme.py", os.path.join("tools", "test_benchmarks.py"))


def _in_core_tier(path):
    relative = os.path.relpath(path, TESTS)
    return any(relative == core or relative.startswith(core + os.sep) for core in CORE_TESTS)


def pytest_ignore_collect(collection_path, config):
    # `-m core` (make test-core) does not import the other test files at all: they import frameworks.
    if (config.getoption("markexpr") == "core" and collection_path.suffix == ".py"
            and not _in_core_tier(str(collection_path))):
        return True
    return None


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False,
                     help="also run tests marked slow (end-to-end training runs)")


def pytest_collection_modifyitems(config, items):
    skip_slow = pytest.mark.skip(reason="slow test: run with --runslow")
    has_d2 = importlib.util.find_spec("detectron2") is not None
    skip_d2 = pytest.mark.skip(reason="detectron2 is not installed; build it from its source "
                                      "(see README, 'Detectron2')")
    for item in items:
        if _in_core_tier(str(item.path)):
            item.add_marker(pytest.mark.core)
        if "slow" in item.keywords and not config.getoption("--runslow"):
            item.add_marker(skip_slow)
        if "detectron2" in item.keywords and not has_d2:
            item.add_marker(skip_d2)
