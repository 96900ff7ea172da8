"""``tools/compare.py``: compare training runs (seeds of arms) against a baseline arm."""
from __future__ import annotations

import argparse
import os
import sys

from .arms import load_arms
from .logs import LogError
from .report import summary_lines, write_report


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Compare runs against a baseline: final and best validation metrics (mean ± std over "
                    "seeds, difference with a 95%% interval), per-class IoU of segmentation runs, and "
                    "training curves. Reads "
                    "mmengine's vis_data/scalars.json (MMSegmentation, MMagic, MMDetection) or "
                    "detectron2's metrics.json; the framework is detected.")
    parser.add_argument("baseline", help="the baseline arm: a work dir, a folder of work dirs (seeds) or a "
                                         "quoted glob of work dirs")
    parser.add_argument("runs", nargs="+", help="the other arms, in the same forms")
    parser.add_argument("--name", action="append", help="arm names, once per arm in order (default: the "
                                                        "folder's name, or the glob's common prefix)")
    parser.add_argument("--out", default="compare_report", help="folder for compare.md, metrics.csv, "
                                                                "per_class_iou.csv and curves/")
    parser.add_argument("--ci", choices=["auto", "welch", "bootstrap"], default="auto",
                        help="interval of the difference: Welch's t with >= 3 seeds per arm, else a "
                             "bootstrap (auto)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    try:
        arms = load_arms([args.baseline] + args.runs, args.name, progress=not args.no_progress)
    except (LogError, ValueError) as err:
        sys.exit(f"compare: {err}")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        sys.exit(f"compare: --out {args.out} is a file; give a folder for compare.md, metrics.csv and "
                 f"curves/")
    try:
        result = write_report(arms, args.out, args.ci, progress=not args.no_progress)
    except OSError as err:
        sys.exit(f"compare: cannot write the report into {args.out}: {err.strerror or err}")
    print(result["markdown"])
    for line in summary_lines(result["rows"]):
        print(line)
    print(f"report written to {args.out}/ (compare.md, metrics.csv, curves/)")
    return result


def console_main() -> int:
    """``randperc-compare``: :func:`main` with the exit status a console script returns."""
    main()
    return 0
