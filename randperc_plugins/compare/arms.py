"""Arms of a comparison: the runs (seeds) named by one command-line argument."""
from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from typing import List, Optional, Sequence

from tqdm import tqdm

from .logs import LogError, Run, detect_framework, read_run

__all__ = ["Arm", "resolve_arm", "load_arms"]


@dataclass
class Arm:
    name: str
    runs: List[Run]

    @property
    def framework(self) -> str:
        return self.runs[0].framework


def _is_work_dir(path: str) -> bool:
    try:
        detect_framework(path)
        return True
    except LogError:
        return False


def resolve_arm(spec: str) -> tuple:
    """``(default name, work dirs)`` of one argument: a work dir, a folder of work dirs, or a glob."""
    if glob.has_magic(spec):
        dirs = sorted(p for p in glob.glob(spec) if os.path.isdir(p))
        if not dirs:
            raise LogError(f"{spec}: the pattern matches no folder; expected work dirs (one per seed)")
        stem = os.path.commonprefix([os.path.basename(p.rstrip(os.sep)) for p in dirs])
        # "runs/gpl_seed*" -> "gpl"; "gpl/seed*" -> "gpl" (the parent folder's name)
        name = (re.sub(r"[_\-.]*(seed)?[_\-.]*$", "", stem)
                or os.path.basename(os.path.dirname(os.path.normpath(dirs[0]))) or spec)
        return name, dirs
    if not os.path.isdir(spec):
        raise LogError(f"{spec}: no such folder; expected a work dir, a folder of work dirs (one per "
                       f"seed) or a glob of work dirs")
    name = os.path.basename(os.path.normpath(spec))
    if _is_work_dir(spec):
        return name, [spec]
    dirs = sorted(os.path.join(spec, d) for d in os.listdir(spec) if os.path.isdir(os.path.join(spec, d)))
    seeds = [d for d in dirs if _is_work_dir(d)]
    if not seeds:
        detect_framework(spec)  # raises, naming the files it expected
    return name, seeds


def load_arms(specs: Sequence[str], names: Optional[Sequence[str]] = None, progress: bool = True) -> List[Arm]:
    """Read every run of every arm; refuse runs of different frameworks or metric sets."""
    if names and len(names) != len(specs):
        raise ValueError(f"`--name` given {len(names)} times for {len(specs)} arms; give it once per "
                         f"arm, in order, or not at all")
    resolved = [resolve_arm(spec) for spec in specs]
    arm_names = list(names) if names else [name for name, _ in resolved]
    if len(set(arm_names)) != len(arm_names):
        raise ValueError(f"two arms have the same name ({', '.join(arm_names)}); name them with `--name`")
    all_dirs = [(i, d) for i, (_, dirs) in enumerate(resolved) for d in dirs]
    runs: List[List[Run]] = [[] for _ in specs]
    for i, work_dir in tqdm(all_dirs, desc="reading runs", unit="run", disable=not progress):
        runs[i].append(read_run(work_dir))
    arms = [Arm(name, arm_runs) for name, arm_runs in zip(arm_names, runs)]
    first = arms[0].runs[0]
    for arm in arms:
        for run in arm.runs:
            if run.framework != first.framework:
                raise ValueError(f"{run.path} was written by {run.framework} but {first.path} by "
                                 f"{first.framework}; compare runs of one framework")
            if set(run.metrics) != set(first.metrics):
                raise ValueError(f"{run.path} logs the metrics {sorted(run.metrics)} but {first.path} logs "
                                 f"{sorted(first.metrics)}; compare runs evaluated with the same metrics")
    return arms
