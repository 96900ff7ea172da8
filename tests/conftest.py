"""Project-wide pytest options: the opt-in ``slow`` marker, the ``detectron2`` skip and its count, and
the ``core`` tier."""
import collections
import importlib.util
import os
import socket
import subprocess

# Without a GPU, Triton kernels run under Triton's interpreter; it must be chosen before anything
# imports triton (torch does, lazily): triton's own library functions are compiled or interpreted
# once, when triton is imported.
if not os.path.exists("/dev/nvidia0") and not os.environ.get("CUDA_VISIBLE_DEVICES"):
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from train_runs import tool_env

#: Tensor methods that read a tensor's value on the host: on a GPU each one waits for the stream.
HOST_READS = ("__bool__", "item", "__int__", "__float__", "__index__", "tolist", "numpy")

TESTS = os.path.dirname(os.path.abspath(__file__))
# Configs, hooks and scripts that tests hand to the tools: modules, but no tests and no doctests (some
# import what only the tools' processes can, such as tools/train_net.py).
collect_ignore_glob = ["*/data/*"]
# The fused kernels' module imports triton (shipped with torch's CUDA wheels); elsewhere its doctests
# cannot be collected, and its tests skip.
if importlib.util.find_spec("triton") is None:
    collect_ignore_glob.append("*/_kernels/triton_sums.py")
REPO = os.path.dirname(TESTS)
# The framework-free tier (`make test-core`, in an environment with torch and the test extras only):
# folders and files of the repository whose tests import torch and the core, never a training
# framework (the core's own modules too, for their docstring examples under --doctest-modules).
# tests/test_core_tier.py checks that they pass with every framework unimportable.
CORE_TESTS = tuple(os.path.join(*path.split("/")) for path in (
    "tests/losses", "tests/test_layout.py", "tests/test_readme.py", "tests/tools/test_benchmarks.py",
    "randperc_plugins/losses"))


def _in_core_tier(path):
    relative = os.path.relpath(path, REPO)
    return any(relative == core or relative.startswith(core + os.sep) for core in CORE_TESTS)


def pytest_ignore_collect(collection_path, config):
    # `-m core` (make test-core) does not import the other test files at all: they import frameworks.
    if (config.getoption("markexpr") == "core" and collection_path.suffix == ".py"
            and not _in_core_tier(str(collection_path))):
        return True
    return None


# Outcome of each `detectron2`-marked test, so that the run says how many ran (CI must run them).
_D2_OUTCOMES: "collections.Counter[str]" = collections.Counter()


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False,
                     help="also run tests marked slow (end-to-end training runs)")


def _detectron2_installed() -> bool:
    # a submodule: the folder tests/detectron2 is on the path as a namespace package of that name;
    # finding it imports the parent, which may itself be missing or blocked (the core tier)
    try:
        return importlib.util.find_spec("detectron2.config") is not None
    except ImportError:
        return False


def pytest_collection_modifyitems(config, items):
    skip_slow = pytest.mark.skip(reason="slow test: run with --runslow")
    has_d2 = _detectron2_installed()
    skip_d2 = pytest.mark.skip(reason="detectron2 is not installed; build it from its source "
                                      "(see docs/getting_started.md, 'Detectron2')")
    for item in items:
        if _in_core_tier(str(item.path)):
            item.add_marker(pytest.mark.core)
        if "slow" in item.keywords and not config.getoption("--runslow"):
            item.add_marker(skip_slow)
        if "detectron2" in item.keywords and not has_d2:
            item.add_marker(skip_d2)


@pytest.fixture(scope="session")
def run_tool():
    """Run a command of ``tools/`` from the repository root as a user would, and return its output.

    The environment is ``train_runs.tool_env(pythonpath, **extra_env)``: this environment's python first
    on PATH, the checkout and tests/ on PYTHONPATH, ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` unset. A failed
    command fails the test with the tail of its output.
    """
    def run(cmd, pythonpath=(), **extra_env):
        proc = subprocess.run(cmd, cwd=REPO, env=tool_env(pythonpath, **extra_env), capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, \
            f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        return proc.stdout + proc.stderr
    return run


@pytest.fixture(scope="session")
def free_port():
    """A function that returns a TCP port free on this machine now (for a torchrun rendezvous)."""
    def port():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    return port


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


#: Factories that turn Python data into a tensor: on a GPU, a host-to-device copy that waits for the
#: host (``torch.tensor(0.5, device='cuda')`` synchronises), so none may run in a training step.
PYTHON_DATA_FACTORIES = (("torch", "tensor"), ("torch", "as_tensor"), ("torch", "from_numpy"),
                         ("torch", "asarray"), ("torch.Tensor", "new_tensor"))

#: aten ops whose output size depends on tensor values: the host must read that size from the GPU.
VALUE_SIZED_OPS = ("aten.nonzero", "aten.masked_select", "aten._unique", "aten.unique",
                   "aten.argwhere", "aten.masked_scatter", "aten.repeat_interleave.Tensor")


class _ValueSizedOps(TorchDispatchMode):
    """Records the value-sized ops dispatched while active, boolean-mask indexing included."""

    def __init__(self, calls):
        super().__init__()
        self.calls = calls

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func)
        if name.startswith(VALUE_SIZED_OPS) or (
                name.startswith(("aten.index.Tensor", "aten.index_put")) and any(
                    isinstance(i, torch.Tensor) and i.dtype == torch.bool
                    for i in (args[1] if len(args) > 1 and isinstance(args[1], (list, tuple)) else ()))):
            self.calls.append(name)
        return func(*args, **(kwargs or {}))


@pytest.fixture
def host_syncs(monkeypatch, host_reads):
    """A list that records, while the test runs, everything that makes a GPU wait for the host or the
    host for the GPU: every read of a tensor value (:func:`host_reads`), every tensor made from
    Python data (``torch.tensor``, ``as_tensor``, ``from_numpy``, ``asarray``, ``new_tensor``), and
    every op whose output size depends on tensor values (``nonzero``, ``masked_select``, ``unique``,
    boolean-mask indexing, ...)."""
    import importlib
    calls = host_reads
    for owner_name, name in PYTHON_DATA_FACTORIES:
        module, _, attr = owner_name.partition(".")
        owner = getattr(importlib.import_module(module), attr) if attr else importlib.import_module(module)
        original = getattr(owner, name)

        def counted(*args, _original=original, _name=f"{owner_name}.{name}", **kwargs):
            calls.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(owner, name, counted)
    with _ValueSizedOps(calls):
        yield calls


@pytest.fixture
def one_thread():
    """One torch thread while the test runs: tiny tensors are as fast, and immune to other processes
    on a small machine (``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
