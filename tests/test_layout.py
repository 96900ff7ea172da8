"""The layout of the repository: which code may import which, read from the source with ``ast`` (nothing
is imported), and what the installed package holds.

    randperc_plugins/losses/   the core: torch only, nothing else of the package, no framework
    randperc_plugins/          the product (the wheel): never the research code or the tests
    randperc_plugins/{mmseg,mmagic,mmdet,detectron2,openmmlab}.py
                               the adapters: the core and each other, never a tool module
    experiments/               research code beside the product, not installed
    tests/                     the tests and their helpers

``tests/test_wheel.py`` checks the built wheel against :data:`PRODUCT_TOP_LEVEL`.
"""
import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "randperc_plugins"

#: What the package holds at its first level: its modules, and its subpackages (``name/``). A module
#: added here must be the product's, not a research tool's (those go to experiments/).
PRODUCT_TOP_LEVEL = {
    "__init__.py",
    "_adapter.py",          # the base every framework adapter builds its term on
    "benchmarks/",          # tools/benchmark.py (with the framework models its steps train)
    "compare/",             # tools/compare.py
    "configs.py",           # python -m randperc_plugins.configs
    "detectron2.py",
    "detectron2_config.py",  # tools/train_net.py's config files
    "launch.py",            # tools/train.py and tools/test.py
    "losses/",
    "mmagic.py",
    "mmdet.py",
    "mmseg.py",
    "openmmlab.py",
}
ADAPTERS = ("_adapter", "mmseg", "mmagic", "mmdet", "detectron2", "openmmlab")
FRAMEWORKS = ("mmengine", "mmcv", "mmseg", "mmagic", "mmdet", "detectron2")
#: Modules of the package that serve the command-line tools; adapters, imported by users' configs,
#: must not pull them in.
TOOL_MODULES = ("randperc_plugins.compare", "randperc_plugins.benchmarks", "randperc_plugins.configs",
                "randperc_plugins.launch", "randperc_plugins.detectron2_config")
#: Top-level names of what is not installed: the research code, the tests and the tests' helper
#: modules (importable as top-level modules from tests/).
NOT_INSTALLED = {"experiments", "tests"} | {p.stem for p in (REPO / "tests").glob("*.py")}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, source=None):
    """Absolute names of everything ``path`` imports, at any depth (inside functions too): ``import a.b``
    gives ``a.b``; ``from a import b`` gives ``a`` and ``a.b`` (``b`` may be a module); relative imports
    are resolved against the file's package; ``importlib.import_module("a.b")`` with a literal gives
    ``a.b``."""
    tree = ast.parse(path.read_text() if source is None else source, filename=str(path))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names if alias.name != "*")
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None))
              in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str) and not node.args[0].value.startswith(".")):
            names.add(node.args[0].value)
    return names


def _is_within(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _files(folder: Path):
    files = sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)
    assert files, f"no Python files under {folder}"
    return files


def _offending(files, forbidden):
    """``{file: sorted forbidden imports}`` for the files that import something ``forbidden(name)``."""
    found = {}
    for path in files:
        bad = sorted(n for n in imported_modules(path) if forbidden(n))
        if bad:
            found[path.relative_to(REPO).as_posix()] = bad
    return found


def test_the_core_imports_nothing_of_the_package_outside_it_and_no_framework():
    def forbidden(name):
        return ((_is_within(name, ["randperc_plugins"]) and not _is_within(name, ["randperc_plugins.losses"]))
                or _is_within(name, FRAMEWORKS))
    assert _offending(_files(PACKAGE / "losses"), forbidden) == {}


def test_the_package_imports_neither_the_research_code_nor_the_tests():
    assert _offending(_files(PACKAGE), lambda name: name.split(".")[0] in NOT_INSTALLED) == {}


def test_the_adapter_base_imports_no_framework():
    # every adapter imports it, each with its own framework only
    assert _offending([PACKAGE / "_adapter.py"], lambda name: name.split(".")[0] in FRAMEWORKS) == {}


def test_the_adapters_import_no_tool_module():
    adapters = [PACKAGE / f"{name}.py" for name in ADAPTERS]
    assert _offending(adapters, lambda name: _is_within(name, TOOL_MODULES)) == {}


@pytest.mark.parametrize("line, expected", [
    ("from ..compare import load_arms", {"randperc_plugins.compare", "randperc_plugins.compare.load_arms"}),
    ("from . import _kernel_sums", {"randperc_plugins.losses", "randperc_plugins.losses._kernel_sums"}),
    ("def f():\n    import mmseg.registry", {"mmseg.registry"}),
    ("import importlib\nimportlib.import_module('experiments.demo')", {"importlib", "experiments.demo"}),
])
def test_imports_are_read_at_any_depth_and_resolved_to_absolute_names(line, expected):
    # a file of the core, as the checks above read it
    assert imported_modules(PACKAGE / "losses" / "tasks.py", source=line) == expected


def test_the_package_holds_the_product_only():
    top_level = {p.name + ("/" if p.is_dir() else "") for p in PACKAGE.iterdir()
                 if p.name != "__pycache__" and not p.name.endswith(".egg-info")
                 and (p.suffix == ".py" or (p / "__init__.py").is_file())}
    assert top_level == PRODUCT_TOP_LEVEL
    assert (REPO / "experiments" / "__init__.py").is_file()
