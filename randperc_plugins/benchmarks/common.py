"""Timing and peak-memory measurement shared by the benchmarks (``tools/benchmark.py``).

Results are meant to be read as ratios between cases measured in the same process (same machine, same
threads), never as absolute numbers.

* Time: median wall-clock seconds of ``repeat`` calls after ``warmup`` calls, with CUDA synchronised.
* Peak memory: on CUDA, ``torch.cuda.max_memory_allocated`` above what was allocated before the call.
  On the CPU, torch's allocations are invisible to ``tracemalloc``, so each case runs once in a forked
  child process and reports the growth of the child's peak resident set size over its size at the start.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import resource
import statistics
import time
from typing import Callable, Dict, List, Optional, Sequence

import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device, warmup: int = 1, repeat: int = 3) -> float:
    """Median seconds of ``fn()`` over ``repeat`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_in_turns(fns: Dict[str, Callable[[], object]], device: torch.device,
                  repeat: int = 3) -> Dict[str, float]:
    """Median seconds of each of ``fns`` (already warmed up), run in turn ``repeat`` times (a, b, c,
    a, b, c, ...), so that a change in the machine's load affects all of them alike."""
    times: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            times[name].append(time_call(fn, device, warmup=0, repeat=1))
    return {name: statistics.median(t) for name, t in times.items()}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _child_peak(fn: Callable[[], object], queue) -> None:
    try:
        # A forked child inherits the parent's OpenMP pool in a broken state and can hang in its first
        # parallel region; one thread avoids it (only memory is measured here, never time).
        torch.set_num_threads(1)
        start = _rss_bytes()
        fn()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
        queue.put(max(peak - start, 0))
    except BaseException as exc:  # report the failure (e.g. out of memory) instead of hanging
        queue.put(exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))


def peak_memory_call(fn: Callable[[], object], device: torch.device) -> Optional[int]:
    """Bytes of peak memory that one ``fn()`` adds; ``None`` where it failed (e.g. out of memory)."""
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        try:
            fn()
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            return None
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    ctx = mp.get_context("fork")
    queue = ctx.SimpleQueue()
    proc = ctx.Process(target=_child_peak, args=(fn, queue))
    proc.start()
    proc.join()
    if proc.exitcode != 0 or queue.empty():
        return None  # killed, e.g. by the out-of-memory killer
    result = queue.get()
    return None if isinstance(result, Exception) else int(result)


def format_table(rows: Sequence[Dict[str, object]], columns: Sequence[str]) -> str:
    """A Markdown table of ``rows`` (dicts) restricted to ``columns``; floats get 3 significant digits."""
    def fmt(v: object) -> str:
        if v is None:
            return "n/a"
        if isinstance(v, float):
            return f"{v:.3g}"
        return str(v)

    lines: List[str] = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(fmt(row.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def step_ratio_rows(steps: Dict[str, Callable[[], object]], device: torch.device,
                    repeat: int = 3) -> List[Dict[str, object]]:
    """Rows ``{variant, step s, ratio to baseline, peak MiB, memory ratio}`` of warmed-up train steps.

    The first of ``steps`` is the baseline. Steps are timed in turn (:func:`time_in_turns`), then the
    peak memory of one more call of each is measured.
    """
    times = time_in_turns(steps, device, repeat)
    rows: List[Dict[str, object]] = []
    base_time = base_mem = None
    for name, step in steps.items():
        seconds = times[name]
        peak = peak_memory_call(step, device)
        if base_time is None:
            base_time, base_mem = seconds, peak
        rows.append({"variant": name, "step s": seconds, "ratio to baseline": seconds / base_time,
                     "peak MiB": mib(peak),
                     "memory ratio": None if not (peak and base_mem) else peak / base_mem})
    return rows


def mib(n: Optional[int]) -> Optional[float]:
    return None if n is None else n / 2**20
