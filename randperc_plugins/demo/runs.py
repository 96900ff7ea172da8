"""Train several configs through ``tools/train.py`` (each framework's own runner), a few processes at a time."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Dict, List, Mapping, Sequence, Tuple

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


def _run(job: TrainJob) -> float:
    os.makedirs(job.work_dir, exist_ok=True)
    log_path = os.path.join(job.work_dir, "train_stdout.txt")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]),
               PYTHONWARNINGS="ignore")
    start = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.run([sys.executable, TRAIN_SCRIPT, job.config, "--work-dir", job.work_dir,
                               "--cfg-options", *job.options], env=env, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        with open(log_path) as f:
            tail = f.read()[-3000:]
        raise RuntimeError(f"training {job.config} into {job.work_dir} failed (exit {proc.returncode}); "
                           f"its output is in {log_path}:\n{tail}")
    return time.perf_counter() - start


def train_all(jobs: List[TrainJob], parallel: int, desc: str) -> float:
    """Run every job (``parallel`` at a time, one thread each), with a progress bar; return the wall time."""
    if not os.path.isfile(TRAIN_SCRIPT):
        raise FileNotFoundError(f"{TRAIN_SCRIPT} not found: the demo runs from a checkout of the repository")
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool, \
            tqdm(total=len(jobs), desc=desc, unit="run") as bar:
        futures = [pool.submit(_run, job) for job in jobs]
        for future in as_completed(futures):
            future.result()
            bar.update(1)
    return time.perf_counter() - start
