"""The shipped configs: list them, locate the file, copy one to edit (in the spirit of ``mim search`` /
``mim download``).

    python -m randperc_plugins.configs list [FILTER ...]          # name, framework, loss, baseline
    python -m randperc_plugins.configs path NAME                  # the file, for any train script
    python -m randperc_plugins.configs copy NAME [DIR] [--force]  # a copy to edit (default: .)

``NAME`` is what ``list`` shows: a config's file name without its extension (with it, or its path under
``configs/``, where two files would share that name). Every ``FILTER`` must occur (case-insensitive) in
the name, framework, loss, baseline or path of a config for ``list`` to show it.

Where the files are: in a source checkout (``pip install -e .`` or ``PYTHONPATH``), the repository's
``configs/``; in an installed wheel, the copy it carries as package data under
``randperc_plugins/.mim/configs`` (where OpenMMLab packages carry theirs). The repository's folder is
the one source: the build copies it into the wheel.

Nothing is hard-coded per framework: every ``*.py`` and ``*.yaml`` file under ``configs/`` is a config,
except where a name on its path starts with ``_`` (``_base_/``, ``__init__.py``, ``__pycache__/``: parts
that configs import, which the wheel carries too). What ``list`` shows is read from the file itself,
without running it:

* framework: the first folder under ``configs/``;
* loss: which of the core losses the config's code names (comments are not read);
* baseline: the ``_base_`` of an OpenMMLab config (``'mmseg::pspnet/...py'``, a config the framework
  ships), the modules of ``with read_base():`` imports, the model-zoo path of a detectron2 LazyConfig
  (``model_zoo.get_config('new_baselines/...py')``), or the ``_BASE_`` of a detectron2 YAML config.

Example:
    >>> from randperc_plugins.configs import find_configs, get_config_file
    >>> info = find_configs("pspnet", "cityscapes", "gpl")[0]
    >>> info.name, info.framework, info.loss
    ('pspnet_r50-d8_gpl_4xb2-80k_cityscapes-512x1024', 'mmseg', 'gpl')
    >>> get_config_file(info.name).name
    'pspnet_r50-d8_gpl_4xb2-80k_cityscapes-512x1024.py'
"""
from __future__ import annotations

import argparse
import ast
import difflib
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple

#: file suffixes of configs: OpenMMLab and detectron2 LazyConfig (Python), detectron2 YAML
CONFIG_SUFFIXES = (".py", ".yaml")
#: where a wheel carries the configs, relative to the package (OpenMMLab's layout)
PACKAGED_CONFIGS = Path(".mim", "configs")
#: the loss labels ``list`` shows, and the markers that name them in a config's code: a marker is
#: looked for in every identifier and string, lower-cased with everything but letters and digits removed
LOSS_MARKERS = {
    "gpl": ("randomcnn", "gpl"),   # RandomCNNPerceptualLoss, logged as loss_gpl
    "patch-mmd": ("patchmmd",),    # PatchMMDLoss, logged as loss_patch_mmd
}
#: call names of detectron2's model zoo whose first argument is a config path inside the zoo
MODEL_ZOO_CALLS = ("get_config", "get_config_file")
UNKNOWN = "-"


@dataclass(frozen=True)
class ConfigInfo:
    """One shipped config, as ``list`` shows it."""

    name: str
    framework: str
    loss: str
    baseline: str
    path: Path            # the file
    relative_path: str    # its path under ``configs/``, with ``/`` separators


def config_root() -> Path:
    """The folder that holds the configs: the repository's ``configs/`` in a source checkout, else the
    wheel's packaged copy.

    Raises:
        FileNotFoundError: if neither exists (a broken install).
    """
    package = Path(__file__).resolve().parent
    checkout = package.parent
    # A source checkout: the package sits next to the project files (never the case in site-packages).
    if (checkout / "configs").is_dir() and (checkout / "pyproject.toml").is_file():
        return checkout / "configs"
    packaged = package / PACKAGED_CONFIGS
    if packaged.is_dir():
        return packaged
    raise FileNotFoundError(
        f"no configs found: expected the repository's {checkout / 'configs'} (source checkout) or the "
        f"installed package's {packaged} (wheel); reinstall randperc_plugins from a wheel or a checkout")


def _normalise(token: str) -> str:
    return re.sub(r"[^a-z0-9]", "", token.lower())


def _losses_named(tokens: Iterable[str]) -> str:
    words = {_normalise(t) for t in tokens}
    found = [label for label, markers in LOSS_MARKERS.items()
             if any(marker in word for marker in markers for word in words)]
    return " + ".join(found) or UNKNOWN


def _string(node: ast.AST) -> Optional[str]:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _called(node: ast.AST) -> Optional[str]:
    """The name a call calls: ``f`` of ``f(...)`` and of ``module.f(...)``."""
    if not isinstance(node, ast.Call):
        return None
    return node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)


def _python_tokens_and_baseline(text: str) -> Tuple[List[str], List[str]]:
    """Identifiers and strings of a Python config's code, and the baselines it names."""
    tree = ast.parse(text)
    tokens: List[str] = []
    read_base: List[str] = []     # `with read_base(): from ... import *` (OpenMMLab pure-Python configs)
    model_zoo: List[str] = []     # `model_zoo.get_config('...')` (detectron2 LazyConfig)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            tokens.append(node.id)
        elif isinstance(node, ast.Attribute):
            tokens.append(node.attr)
        elif isinstance(node, ast.ImportFrom):
            tokens += [node.module or ""] + [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            tokens += [alias.name for alias in node.names]
        elif _string(node) is not None:
            tokens.append(node.value)
        if _called(node) in MODEL_ZOO_CALLS and node.args and _string(node.args[0]) is not None:
            model_zoo.append(node.args[0].value)
        if isinstance(node, ast.With) and any(_called(i.context_expr) == "read_base" for i in node.items):
            read_base += ["." * stmt.level + (stmt.module or "") for stmt in node.body
                          if isinstance(stmt, ast.ImportFrom)]
    base: List[str] = []          # `_base_ = ...` (OpenMMLab); only a top-level one is the config's base
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and any(getattr(t, "id", None) == "_base_" for t in stmt.targets):
            values = stmt.value.elts if isinstance(stmt.value, (ast.List, ast.Tuple)) else [stmt.value]
            base += [s for s in map(_string, values) if s is not None]
    return tokens, base or read_base or model_zoo


def _yaml_tokens_and_baseline(text: str) -> Tuple[List[str], List[str]]:
    """Keys and values of a YAML config, and its ``_BASE_`` (detectron2)."""
    import yaml  # every framework's dependencies include PyYAML; the core losses do not need it

    tokens: List[str] = []

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                tokens.append(str(key))
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif node is not None:
            tokens.append(str(node))

    data = yaml.safe_load(text) or {}
    walk(data)
    base = data.get("_BASE_") if isinstance(data, dict) else None
    return tokens, [base] if isinstance(base, str) else []


def _describe(path: Path, root: Path, name: str) -> ConfigInfo:
    text = path.read_text(encoding="utf-8")
    try:
        read = _yaml_tokens_and_baseline if path.suffix == ".yaml" else _python_tokens_and_baseline
        tokens, baselines = read(text)
        loss, baseline = _losses_named(tokens), ", ".join(baselines) or UNKNOWN
    except ImportError:  # a YAML config without PyYAML installed
        loss = baseline = "? (needs PyYAML)"
    relative = path.relative_to(root)
    return ConfigInfo(name=name, framework=relative.parts[0], loss=loss, baseline=baseline, path=path,
                      relative_path=relative.as_posix())


def _names(paths: Sequence[Path], root: Path) -> List[str]:
    """Each config's shortest unique name: its stem, else its file name, else its path under ``root``."""
    def candidates(p: Path) -> Tuple[str, str, str]:
        return p.stem, p.name, p.relative_to(root).as_posix()

    names = []
    for path in paths:
        for level, name in enumerate(candidates(path)):
            if sum(candidates(other)[level] == name for other in paths) == 1:
                names.append(name)
                break
    return names


def find_configs(*filters: str) -> List[ConfigInfo]:
    """The shipped configs, sorted by path, whose name, framework, loss, baseline or path contains every
    one of ``filters`` (case-insensitive)."""
    root = config_root()
    paths = sorted(p for p in root.rglob("*") if p.suffix in CONFIG_SUFFIXES and p.is_file()
                   and not any(part.startswith("_") for part in p.relative_to(root).parts))
    infos = [_describe(p, root, name) for p, name in zip(paths, _names(paths, root))]
    wanted = [f.lower() for f in filters]
    return [info for info in infos
            if all(w in " ".join((info.name, info.framework, info.loss, info.baseline,
                                  info.relative_path)).lower() for w in wanted)]


def get_config_file(name: str) -> Path:
    """The file of the config called ``name``: as ``list`` shows it, or its file name with or without
    the extension, or its path under ``configs/``.

    Raises:
        ValueError: if no config, or more than one, is called ``name``.
    """
    configs = find_configs()
    matches = [c for c in configs if name in (c.name, c.path.stem, c.path.name, c.relative_path)]
    if len(matches) == 1:
        return matches[0].path
    if matches:
        raise ValueError(f"`name` {name!r} names several configs: "
                         f"{', '.join(c.relative_path for c in matches)}; give one of these paths")
    close = difflib.get_close_matches(name, [c.name for c in configs], n=3)
    hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
    raise ValueError(f"`name` must name a shipped config ({len(configs)} in {config_root()}; "
                     f"`python -m randperc_plugins.configs list` shows them), got {name!r}.{hint}")


def copy_config(name: str, directory: str | Path = ".", overwrite: bool = False) -> Path:
    """Copy the config ``name`` into ``directory`` (created if missing) and return the copy's path.

    A config that names its baseline by package (``_base_ = 'mmseg::...'``, ``model_zoo.get_config(...)``),
    as the shipped ones do, works from any directory; one that imports files beside it needs those too.

    Raises:
        ValueError: as :func:`get_config_file`.
        FileExistsError: if the copy exists and ``overwrite`` is false.
        NotADirectoryError: if ``directory`` is a file.
        OSError: if the copy cannot be written (no permission, ...), with the path.
    """
    source = get_config_file(name)
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"{directory} is a file, not a directory: give the directory to copy "
                                 f"{source.name} into")
    target = directory / source.name
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass `overwrite=True` (`--force`) to replace it")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    except OSError as err:  # no permission, a file on the way, a full disk: say where
        raise OSError(f"cannot write {target}: {err.strerror or err}") from err
    return target


def format_configs(configs: Sequence[ConfigInfo]) -> str:
    """A table with one line per config: name, framework, loss and the baseline it inherits."""
    columns = ("name", "framework", "loss", "baseline")
    rows = [columns] + [tuple(getattr(c, col) for col in columns) for c in configs]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m randperc_plugins.configs",
        description="List, locate and copy the configs randperc_plugins ships.")
    commands = parser.add_subparsers(dest="command", required=True)
    list_parser = commands.add_parser("list", help="list the configs (name, framework, loss, baseline)")
    list_parser.add_argument("filters", nargs="*", metavar="FILTER",
                             help="show only configs whose name, framework, loss, baseline or path "
                                  "contains every FILTER (case-insensitive)")
    path_parser = commands.add_parser("path", help="print the path of a config's file")
    path_parser.add_argument("name", metavar="NAME", help="a config's name, as `list` shows it")
    copy_parser = commands.add_parser("copy", help="copy a config into a directory, to edit it")
    copy_parser.add_argument("name", metavar="NAME", help="a config's name, as `list` shows it")
    copy_parser.add_argument("directory", nargs="?", default=".", metavar="DIR",
                             help="where to copy it (created if missing; default: the current directory)")
    copy_parser.add_argument("--force", action="store_true", help="replace an existing copy")
    args = parser.parse_args(argv)

    try:
        if args.command == "list":
            configs = find_configs(*args.filters)
            if not configs:
                print(f"no config matches {' '.join(args.filters)!r}", file=sys.stderr)
                return 1
            print(format_configs(configs))
        elif args.command == "path":
            print(get_config_file(args.name))
        else:
            print(copy_config(args.name, args.directory, overwrite=args.force))
    except (ValueError, OSError) as err:  # FileExistsError, NotADirectoryError, PermissionError, ...
        parser.exit(2, f"{parser.prog} {args.command}: error: {err}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
