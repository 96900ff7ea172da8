"""Benchmark of patch-MMD over local windows against the whole-image MMD, on an SR batch.

    python tools/benchmark.py patch-mmd-windows [--device cpu|cuda] [--repeat 3] [--side 96]

Every case is a forward and a backward pass of :func:`patch_mmd` (4 default bandwidths) between a
batch of 4 natural RGB crops (MMagic's EDSR x2 training crop, 96x96) and a degraded copy, with 3x3 and
7x7 patches at stride 1, for ``method='exact'`` and ``'random_features'`` (1024 features). For each
patch size and method, ``window_size=32, window_stride=16`` (the continuing work's windows) is timed
in turn with the whole image (``window_size=None``) in the same process (:func:`.common.time_in_turns`);
the peak memory of each call is measured once (:func:`.common.peak_memory_call`). Results are the
ratios windowed / whole.
"""
from __future__ import annotations

import argparse
from typing import List, Optional

import torch

from ..losses.patch_mmd import patch_mmd
from .common import format_table, mib, peak_memory_call, time_in_turns
from .patch_mmd import SR_BATCH, _degrade, _fwd_bwd, _image

PATCH_SIZES = (3, 7)
METHODS = ("exact", "random_features")
WINDOW = dict(window_size=32, window_stride=16)


def run(device: torch.device, side: int = 96, batch: int = SR_BATCH, repeat: int = 3,
        patch_sizes=PATCH_SIZES, methods=METHODS) -> List[dict]:
    """One row per (patch size, method): times and peak memories of whole and windowed, and ratios."""
    x = _image(side, batch=batch, seed=7).to(device)
    y = _degrade(x.cpu()).to(device)
    rows = []
    for k in patch_sizes:
        for method in methods:
            runs = {name: _fwd_bwd(lambda a, b, kw=kw: patch_mmd(a, b, patch_size=k, method=method,
                                                                 **kw), x, y)
                    for name, kw in (("whole", {}), ("windows", WINDOW))}
            for fn in runs.values():  # warm-up (cached features, allocator)
                fn()
            times = time_in_turns(runs, device, repeat)
            peaks = {name: mib(peak_memory_call(fn, device)) for name, fn in runs.items()}
            row = {"patch": f"{k}x{k}", "method": method, "whole_s": times["whole"],
                   "windows_s": times["windows"], "time_ratio": times["windows"] / times["whole"],
                   "whole_mib": peaks["whole"], "windows_mib": peaks["windows"]}
            row["mem_ratio"] = (None if not peaks["whole"] or peaks["windows"] is None
                                else peaks["windows"] / peaks["whole"])
            rows.append(row)
    return rows


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--side", type=int, default=96, help="crop side (default 96, EDSR x2)")
    parser.add_argument("--repeat", type=int, default=3, help="turns of each case (median)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    rows = run(device, side=args.side, repeat=args.repeat)
    print(f"## Patch-MMD over 32x32 windows at stride 16 against the whole image, fwd+bwd, "
          f"{SR_BATCH}x3x{args.side}x{args.side}, {device}, {torch.get_num_threads()} threads\n")
    print(format_table(rows, ["patch", "method", "whole_s", "windows_s", "time_ratio", "whole_mib",
                              "windows_mib", "mem_ratio"]))
    print("\ntime_ratio, mem_ratio: windowed over whole image (median of the turns; peak memory of "
          "one call).")


if __name__ == "__main__":
    main()
