"""Demo stage 1, super-resolution through MMagic's runner: what it needs.

The stage (EDSR, L1 against L1 + each loss) needs the MMagic adapter (``randperc_plugins.mmagic``) and
the SR dataset writer (``randperc_plugins.datasets.sr_photos``). Its training part is not written yet;
the demo reports which of these modules are missing and skips the stage.
"""
from __future__ import annotations

import importlib.util

REQUIRED_MODULES = ("randperc_plugins.mmagic", "randperc_plugins.datasets.sr_photos")


def missing_modules() -> list:
    """The modules the stage needs that this checkout lacks."""
    missing = []
    for name in REQUIRED_MODULES:
        try:
            if importlib.util.find_spec(name) is None:
                missing.append(name)
        except ModuleNotFoundError:
            missing.append(name)
    return missing
