"""Project-wide pytest options: the opt-in ``slow`` marker, the ``detectron2`` skip and its count."""
import collections
import importlib.util

import pytest

# Outcome of each `detectron2`-marked test, so that the run says how many ran (CI must run them).
_D2_OUTCOMES: "collections.Counter[str]" = collections.Counter()


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


def pytest_runtest_logreport(report):
    if "detectron2" not in report.keywords:
        return
    # one outcome per test: the call phase, or setup when it skipped or failed there
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        _D2_OUTCOMES[report.outcome] += 1


def pytest_terminal_summary(terminalreporter):
    if _D2_OUTCOMES:
        counts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(_D2_OUTCOMES.items()))
        terminalreporter.write_line(f"detectron2 tests: {counts}")
