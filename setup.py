"""Build hook: the wheel carries every config under ``configs/`` as package data.

Everything else is declared in ``setup.cfg``. ``configs/`` stays a top-level folder of the repository
(the one source); building copies its ``*.py`` and ``*.yaml`` files to ``randperc_plugins/.mim/configs``
in the wheel, where OpenMMLab packages carry theirs and where ``python -m randperc_plugins.configs``
finds them in an installed package. An editable install reads the repository's folder instead.
"""
import os
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

CONFIGS = "configs"
CONFIG_SUFFIXES = (".py", ".yaml")  # as randperc_plugins.configs.CONFIG_SUFFIXES (tests/test_wheel.py checks)
PACKAGED_CONFIGS = os.path.join("randperc_plugins", ".mim", "configs")


class BuildPyWithConfigs(build_py):
    """``build_py`` that adds the configs to the package data of ``randperc_plugins``."""

    def _get_data_files(self):
        # (package, source dir, build dir, file names relative to both): the form build_py copies from,
        # lists as outputs and hands to sdist
        files = list(super()._get_data_files())
        configs = sorted(path.relative_to(CONFIGS).as_posix() for path in Path(CONFIGS).rglob("*")
                         if path.suffix in CONFIG_SUFFIXES and "__pycache__" not in path.parts)
        files.append(("randperc_plugins", CONFIGS, os.path.join(self.build_lib, PACKAGED_CONFIGS),
                      configs))
        return files


setup(cmdclass={"build_py": BuildPyWithConfigs})
