"""The offline demo (``make demo``, ``tools/demo.py``): train baselines and the one-line variants through
the frameworks' own runners, compare them with ``tools/compare.py``'s code, and write a report.

    python tools/demo.py [--quick | --long] [--out demo_report] [--seeds N] [--iters N] [--parallel 2]

Stages: (1) super-resolution through MMagic (not written yet: it needs the MMagic adapter and its
dataset writer; the demo says so and goes on); (2) segmentation through MMSegmentation on procedurally drawn
scenes with thin structures, cross-entropy against cross-entropy + each loss; (3) the comparison:
tables, curves and a side-by-side picture per task, into ``--out``. Every arm trains with the same
seeds, data and iterations.
"""
from __future__ import annotations

import argparse
import os
import time

from ..compare import load_arms, write_report
from ..compare.report import summary_lines
from . import segmentation, super_resolution

# seeds, iterations, validation interval, training / validation images
PRESETS = {
    "quick": segmentation.SegSettings(seeds=2, iters=20, val_interval=10, num_train=16, num_val=4,
                                      log_interval=5),
    # `make demo`: fits 15 minutes on 2 shared cores (measured: see the README's demo section)
    "default": segmentation.SegSettings(seeds=2, iters=100, val_interval=50, num_train=64, num_val=16),
    # enough seeds for Welch's t-interval (3 or more per arm)
    "long": segmentation.SegSettings(seeds=4, iters=300, val_interval=100, num_train=128, num_val=32),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Offline demo: baseline against each loss, through the "
                                                 "frameworks' own runners, compared with tools/compare.py")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="2 seeds x 20 iterations: checks the pipeline, "
                                                          "too short to learn the thin classes")
    size.add_argument("--long", action="store_true", help="4 seeds x 300 iterations on 128 scenes (Welch "
                                                         "intervals); default: 2 seeds x 100 iterations")
    parser.add_argument("--out", default="demo_report", help="report folder (default: demo_report)")
    parser.add_argument("--work-dir", help="where runs are trained (default: OUT/runs)")
    parser.add_argument("--seeds", type=int, help="seeds per arm (at least 2), overrides the preset")
    parser.add_argument("--iters", type=int, help="training iterations per run, overrides the preset")
    parser.add_argument("--parallel", type=int, default=2, help="training processes at a time (default 2)")
    args = parser.parse_args(argv)
    if args.seeds is not None and args.seeds < 2:
        parser.error(f"`--seeds` must be at least 2 (a difference needs seeds to have an interval), "
                     f"got {args.seeds}")
    if args.iters is not None and args.iters < 2:
        parser.error(f"`--iters` must be at least 2, got {args.iters}")
    return args


def _settings(args) -> segmentation.SegSettings:
    preset = PRESETS["quick" if args.quick else "long" if args.long else "default"]
    settings = segmentation.SegSettings(**vars(preset))
    if args.seeds is not None:
        settings.seeds = args.seeds
    if args.iters is not None:
        settings.iters = args.iters
        settings.val_interval = max(1, min(settings.val_interval, args.iters // 2))
        settings.log_interval = max(1, min(settings.log_interval, args.iters // 4))
    return settings


def main(argv=None) -> dict:
    args = parse_args(argv)
    settings = _settings(args)
    work = args.work_dir or os.path.join(args.out, "runs")
    os.makedirs(args.out, exist_ok=True)
    start, load_start = time.perf_counter(), os.getloadavg()[0]
    stage_lines = []

    def say(line):
        print(line, flush=True)
        stage_lines.append(line)

    missing = super_resolution.missing_modules()
    say(f"[1/3] super-resolution (MMagic): skipped: needs {' and '.join(missing)} (the MMagic adapter and "
        f"its SR dataset writer), which this checkout lacks" if missing else
        "[1/3] super-resolution (MMagic): skipped: this version of the demo has no SR stage yet")

    t0 = time.perf_counter()
    work_dirs = segmentation.run(os.path.join(work, "segmentation"), settings, args.parallel)
    say(f"[2/3] segmentation (MMSegmentation): {len(work_dirs)} arms x {settings.seeds} seeds, "
        f"{settings.iters} iterations each, {settings.num_train} training / {settings.num_val} validation "
        f"scenes of {settings.size}x{settings.size}, trained in {time.perf_counter() - t0:.0f} s")

    t0 = time.perf_counter()
    seg_out = os.path.join(args.out, "segmentation")
    arms = load_arms([os.path.join(work, "segmentation", arm) for arm in work_dirs], progress=False)
    result = write_report(arms, seg_out)
    picture = segmentation.side_by_side(work_dirs, os.path.join(work, "segmentation", "data"),
                                        os.path.join(seg_out, "samples.png"))
    say(f"[3/3] comparison: {seg_out}/compare.md, metrics.csv, per_class_iou.csv, "
        f"{len(result['curves'])} curves, {os.path.basename(picture)} ({time.perf_counter() - t0:.0f} s)")

    findings = [line for line in summary_lines(result["rows"]) if " final mIoU " in line]
    for r in result["class_rows"]:
        if r["cls"] in ("line", "blob"):
            findings.append(f"{r['arm']} vs {arms[0].name}: final IoU of class '{r['cls']}' "
                            f"{r['diff'].value:+.3g} [{r['diff'].low:+.3g}, {r['diff'].high:+.3g}] "
                            f"{r['diff'].verdict()} ({r['diff'].method})")
    elapsed = time.perf_counter() - start
    load_end = os.getloadavg()[0]
    timing = (f"demo finished in {elapsed / 60:.1f} min on {os.cpu_count()} CPUs (1-minute load average "
              f"{load_start:.1f} at the start, {load_end:.1f} at the end)")
    print("summary:")
    for line in findings:
        print("  " + line)
    print(timing)
    with open(os.path.join(args.out, "README.md"), "w") as f:
        f.write("# randperc_plugins demo report\n\n" + "\n".join(f"- {line}" for line in stage_lines)
                + "\n\n## Findings (95% intervals over seeds; \"not significant\" when they contain 0)\n\n"
                + "\n".join(f"- {line}" for line in findings)
                + f"\n\n{timing}.\n\nSegmentation: [tables](segmentation/compare.md), "
                  f"[side-by-side samples](segmentation/samples.png), curves in `segmentation/curves/`.\n")
    return dict(result=result, findings=findings, stage_lines=stage_lines, picture=picture, elapsed=elapsed)
