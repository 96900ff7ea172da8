"""Train several configs through ``tools/train.py`` (each framework's own runner), a few processes at a time."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from tqdm import tqdm

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN_SCRIPT = os.path.join(REPO, "tools", "train.py")


@dataclass
class TrainJob:
    config: str
    work_dir: str
    options: Sequence[str]  # --cfg-options key=value ...


def write_arm_configs(root: str, stem: str, base_text: str, arms: Mapping[str, str]) -> Dict[str, str]:
    """Write ``{stem}_base.py`` (``base_text``) and, per arm, ``{stem}_{arm}.py``: the base plus the arm's
    one line; return ``{arm: path}``."""
    os.makedirs(root, exist_ok=True)
    base = os.path.join(root, f"{stem}_base.py")
    with open(base, "w") as f:
        f.write(base_text)
    configs = {}
    for arm, line in arms.items():
        path = os.path.join(root, f"{stem}_{arm.replace('+', '_')}.py")
        with open(path, "w") as f:
            f.write(f"_base_ = {os.path.basename(base)!r}\n{line}\n")
        configs[arm] = path
    return configs


def seeded_jobs(work_root: str, configs: Mapping[str, str], seeds: int,
                options: Sequence[str]) -> Tuple[List["TrainJob"], Dict[str, List[str]]]:
    """One job per seed and arm, into ``work_root/{arm}/seed{n}`` with ``options`` and the seed; return
    the jobs and the work dirs per arm."""
    jobs, work_dirs = [], {}
    for seed in range(seeds):  # seed-major, so that an interrupted demo has every arm's seed 0
        for arm, config in configs.items():
            work_dir = os.path.join(work_root, arm, f"seed{seed}")
            work_dirs.setdefault(arm, []).append(work_dir)
            jobs.append(TrainJob(config, work_dir, [*options, f"randomness.seed={seed}"]))
    return jobs, work_dirs


def training_env(device: Optional[str] = None) -> Dict[str, str]:
    """The environment of a training process: one CPU thread (runs go in parallel, one per core), this
    checkout first on the path; ``device='cpu'`` hides every GPU from the runner (mmengine otherwise
    trains on a GPU when it finds one), ``'cuda'`` or None leaves the runner's choice."""
    if device not in (None, "cpu", "cuda"):
        raise ValueError(f"`device` must be 'cpu', 'cuda' or None, got {device!r}")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]),
               PYTHONWARNINGS="ignore")
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def costly_first(jobs: List[TrainJob], work_dirs: Mapping[str, List[str]]) -> List[TrainJob]:
    """``jobs`` with the baseline's runs (the first arm of ``work_dirs``) last, each group in its order: the
    arms with a loss term cost several times the baseline per iteration, so started first they leave the
    cheap baseline runs to fill the other processes' time instead of one costly run finishing alone."""
    baseline = set(next(iter(work_dirs.values()), []))
    return [j for j in jobs if j.work_dir not in baseline] + [j for j in jobs if j.work_dir in baseline]


def _run(job: TrainJob, device: Optional[str] = None) -> Tuple[float, float]:
    """Train ``job``; return its wall time and the CPU time of its process (user + system: what the run
    costs a dedicated core, whatever else the machine runs), both in seconds, also written to
    ``work_dir/times.json``."""
    os.makedirs(job.work_dir, exist_ok=True)
    log_path = os.path.join(job.work_dir, "train_stdout.txt")
    env = training_env(device)
    start = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, TRAIN_SCRIPT, job.config, "--work-dir", job.work_dir,
                                 "--cfg-options", *job.options], env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall, cpu = time.perf_counter() - start, usage.ru_utime + usage.ru_stime
    if proc.returncode != 0:
        with open(log_path) as f:
            tail = f.read()[-3000:]
        raise RuntimeError(f"training {job.config} into {job.work_dir} failed (exit {proc.returncode}); "
                           f"its output is in {log_path}:\n{tail}")
    with open(os.path.join(job.work_dir, "times.json"), "w") as f:
        json.dump(dict(wall_s=round(wall, 2), cpu_s=round(cpu, 2)), f)
    return wall, cpu


def train_all(jobs: List[TrainJob], parallel: int, desc: str, device: Optional[str] = None) -> Dict[str, float]:
    """Run every job (``parallel`` at a time, one thread each; ``device`` as :func:`training_env`), with a
    progress bar; return the wall time (``wall_s``) and the runs' summed CPU time (``cpu_s``)."""
    if not os.path.isfile(TRAIN_SCRIPT):
        raise FileNotFoundError(f"{TRAIN_SCRIPT} not found: the demo runs from a checkout of the repository")
    start, cpu = time.perf_counter(), 0.0
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool, \
            tqdm(total=len(jobs), desc=desc, unit="run") as bar:
        futures = [pool.submit(_run, job, device) for job in jobs]
        for future in as_completed(futures):
            cpu += future.result()[1]
            bar.update(1)
    return dict(wall_s=time.perf_counter() - start, cpu_s=cpu)


def select_arms(arms: Dict[str, str], names: Optional[Sequence[str]]) -> Dict[str, str]:
    """``arms`` (name -> config line, the baseline first) restricted to ``names``, in that order (None:
    every arm); the baseline must come first."""
    if names is None:
        return dict(arms)
    baseline = next(iter(arms))
    unknown = [n for n in names if n not in arms]
    if unknown or not names or names[0] != baseline:
        raise ValueError(f"`arms` must name arms of {list(arms)}, the baseline {baseline!r} first, "
                         f"got {tuple(names)!r}")
    return {n: arms[n] for n in names}
