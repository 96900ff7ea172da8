"""Project-wide pytest options: the opt-in ``slow`` marker and the ``detectron2`` skip."""
import importlib.util

import pytest
import torch

#: Tensor methods that read a tensor's value on the host: on a GPU each one waits for the stream.
HOST_READS = ("__bool__", "item", "__int__", "__float__", "__index__", "tolist", "numpy")



def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False,
                     help="also run tests marked slow (end-to-end training runs)")


def pytest_collection_modifyitems(config, items):
    skip_slow = pytest.mark.skip(reason="slow test: run with --runslow")
    has_d2 = importlib.util.find_spec("detectron2") is not None
    skip_d2 = pytest.mark.skip(reason="detectron2 is not installed; build it from its source "
                                      "(see README, 'Detectron2')")
    for item in items:
        if "slow" in item.keywords and not config.getoption("--runslow"):
            item.add_marker(skip_slow)
        if "detectron2" in item.keywords and not has_d2:
            item.add_marker(skip_d2)


@pytest.fixture
def host_reads(monkeypatch):
    """A list that records every read of a tensor value on the host (``bool(t)``, ``t.item()``,
    ``int(t)``, ``float(t)``, ``t.tolist()``, ...) made while the test runs, by name."""
    calls = []
    for name in HOST_READS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return calls
