"""One name per concept: the two core losses and the three tasks, defined here and imported
everywhere (task defaults, adapters, benchmarks, command-line tools).

Other spellings that earlier releases used in command lines and tables (``gpl``, ``patch-mmd``,
``sr``, ``super_resolution``, ``masks``, ``instance-masks``) are still accepted where a user may have
typed them, with a message naming the current spelling. Registered class names, config file names and
logged loss names (``loss_gpl``, ``*_gpl.py``, ``MaskRCNNConvUpsampleHeadWithGPL``) are API and stay.
Imports nothing.
"""
from __future__ import annotations

import argparse
import warnings

__all__ = ["LOSSES", "TASKS", "UnknownName", "LOSS_SPELLINGS", "TASK_SPELLINGS", "loss_name", "task_name"]

#: The core losses: the random-CNN Generic Perceptual Loss and Patch-MMD.
LOSSES = ("random_cnn", "patch_mmd")

#: The tasks the adapters translate into: per-pixel class maps, ROI masks, restored images.
TASKS = ("segmentation", "instance_masks", "restoration")

#: Earlier spellings -> the current name.
LOSS_SPELLINGS = {"gpl": "random_cnn", "random-cnn": "random_cnn", "patch-mmd": "patch_mmd"}
TASK_SPELLINGS = {"sr": "restoration", "super_resolution": "restoration",
                  "super-resolution": "restoration", "masks": "instance_masks",
                  "instance-masks": "instance_masks"}


class UnknownName(ValueError, argparse.ArgumentTypeError):
    """A name that is neither current nor an earlier spelling (an ``argparse`` type error too, so a
    command line prints this message rather than a generic one)."""


def _canonical(name, names, spellings, argument: str) -> str:
    if name in names:
        return name
    if name in spellings:
        warnings.warn(f"`{argument}` {name!r} is an earlier spelling of {spellings[name]!r}; write "
                      f"{spellings[name]!r}", FutureWarning, stacklevel=3)
        return spellings[name]
    raise UnknownName(f"`{argument}` must be one of {names}, got {name!r}")


def loss_name(name: str, argument: str = "loss") -> str:
    """The current name of core loss ``name`` (an earlier spelling warns; anything else raises).

    Example:
        >>> loss_name("patch_mmd")
        'patch_mmd'
    """
    return _canonical(name, LOSSES, LOSS_SPELLINGS, argument)


def task_name(name: str, argument: str = "task") -> str:
    """The current name of task ``name`` (an earlier spelling warns; anything else raises).

    Example:
        >>> task_name("restoration")
        'restoration'
    """
    return _canonical(name, TASKS, TASK_SPELLINGS, argument)
