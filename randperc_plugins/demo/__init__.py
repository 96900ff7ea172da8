"""The offline demo (``make demo``, ``tools/demo.py``): train baselines and the one-line variants through
the frameworks' own runners, compare them with ``tools/compare.py``'s code, and write a report.

    python tools/demo.py [--quick | --long] [--out demo_report] [--seeds N] [--iters N] [--parallel 2]

Stages: (1) super-resolution through MMagic on scikit-image's photographs, a small EDSR x2 trained with
L1 against L1 + each loss; (2) segmentation through MMSegmentation on procedurally drawn
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

# per stage: seeds, iterations, validation interval (and the segmentation's training / validation scenes)
PRESETS = {
    "quick": dict(
        super_resolution=super_resolution.SRSettings(seeds=2, iters=10, val_interval=5, log_interval=5),
        segmentation=segmentation.SegSettings(seeds=2, iters=20, val_interval=10, num_train=16, num_val=4,
                                              log_interval=5)),
    # `make demo`: fits 15 minutes on 2 shared cores (measured: see the README's demo section)
    "default": dict(
        super_resolution=super_resolution.SRSettings(seeds=2, iters=300, val_interval=100, log_interval=20),
        segmentation=segmentation.SegSettings(seeds=2, iters=100, val_interval=50, num_train=64,
                                              num_val=16)),
    # enough seeds for Welch's t-interval (3 or more per arm)
    "long": dict(
        super_resolution=super_resolution.SRSettings(seeds=4, iters=1000, val_interval=250, width=32,
                                                     log_interval=50),
        segmentation=segmentation.SegSettings(seeds=4, iters=300, val_interval=100, num_train=128,
                                              num_val=32)),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Offline demo: baseline against each loss, through the "
                                                 "frameworks' own runners, compared with tools/compare.py")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="2 seeds x 10 (SR) / 20 (segmentation) "
                                                          "iterations: checks the pipeline, learns nothing")
    size.add_argument("--long", action="store_true", help="4 seeds x 1000 (SR) / 300 (segmentation) "
                                                         "iterations (Welch intervals); default: 2 seeds "
                                                         "x 300 / 100 iterations")
    parser.add_argument("--out", default="demo_report", help="report folder (default: demo_report)")
    parser.add_argument("--work-dir", help="where runs are trained (default: OUT/runs)")
    parser.add_argument("--seeds", type=int, help="seeds per arm (at least 2), overrides the preset")
    parser.add_argument("--iters", type=int, help="training iterations per run of every stage, overrides "
                                                  "the preset")
    parser.add_argument("--parallel", type=int, default=2, help="training processes at a time (default 2)")
    args = parser.parse_args(argv)
    if args.seeds is not None and args.seeds < 2:
        parser.error(f"`--seeds` must be at least 2 (a difference needs seeds to have an interval), "
                     f"got {args.seeds}")
    if args.iters is not None and args.iters < 2:
        parser.error(f"`--iters` must be at least 2, got {args.iters}")
    return args


def _settings(args) -> dict:
    """The preset's settings of each stage, with ``--seeds`` / ``--iters`` applied."""
    preset = PRESETS["quick" if args.quick else "long" if args.long else "default"]
    return {stage: with_overrides(defaults, args.seeds, args.iters) for stage, defaults in preset.items()}


def with_overrides(defaults, seeds=None, iters=None):
    """A copy of a stage's settings with ``seeds`` and ``iters`` (and the validation and logging
    intervals that fit them) replaced where given."""
    settings = type(defaults)(**vars(defaults))
    if seeds is not None:
        settings.seeds = seeds
    if iters is not None:
        settings.iters = iters
        settings.val_interval = max(1, min(settings.val_interval, iters // 2))
        settings.log_interval = max(1, min(settings.log_interval, iters // 4))
    return settings


def _compare(work_root: str, work_dirs: dict, out: str) -> tuple:
    arms = load_arms([os.path.join(work_root, arm) for arm in work_dirs], progress=False)
    return arms, write_report(arms, out)


def main(argv=None) -> dict:
    args = parse_args(argv)
    stages = _settings(args)
    sr_settings, settings = stages["super_resolution"], stages["segmentation"]
    work = args.work_dir or os.path.join(args.out, "runs")
    os.makedirs(args.out, exist_ok=True)
    start, load_start = time.perf_counter(), os.getloadavg()[0]
    stage_lines = []

    def say(line):
        print(line, flush=True)
        stage_lines.append(line)

    t0 = time.perf_counter()
    sr_root = os.path.join(work, "super_resolution")
    sr_dirs = super_resolution.run(sr_root, sr_settings, args.parallel)
    say(f"[1/3] super-resolution (MMagic): {len(sr_dirs)} arms x {sr_settings.seeds} seeds, EDSR x2 "
        f"({sr_settings.width} channels, {sr_settings.blocks} blocks), {sr_settings.iters} iterations each "
        f"of {sr_settings.batch_size} {sr_settings.gt_patch}x{sr_settings.gt_patch} crops, validated on "
        f"'{super_resolution.PHOTOS[-1]}', trained in {time.perf_counter() - t0:.0f} s")

    t0 = time.perf_counter()
    work_dirs = segmentation.run(os.path.join(work, "segmentation"), settings, args.parallel)
    say(f"[2/3] segmentation (MMSegmentation): {len(work_dirs)} arms x {settings.seeds} seeds, "
        f"{settings.iters} iterations each, {settings.num_train} training / {settings.num_val} validation "
        f"scenes of {settings.size}x{settings.size}, trained in {time.perf_counter() - t0:.0f} s")

    t0 = time.perf_counter()
    sr_out = os.path.join(args.out, "super_resolution")
    sr_arms, sr_result = _compare(sr_root, sr_dirs, sr_out)
    sr_picture = super_resolution.side_by_side(sr_dirs, os.path.join(sr_root, "data"),
                                               os.path.join(sr_out, "samples.png"))
    seg_out = os.path.join(args.out, "segmentation")
    arms, result = _compare(os.path.join(work, "segmentation"), work_dirs, seg_out)
    picture = segmentation.side_by_side(work_dirs, os.path.join(work, "segmentation", "data"),
                                        os.path.join(seg_out, "samples.png"))
    say(f"[3/3] comparison: {sr_out}/compare.md, metrics.csv, {len(sr_result['curves'])} curves, "
        f"{os.path.basename(sr_picture)}; {seg_out}/compare.md, metrics.csv, per_class_iou.csv, "
        f"{len(result['curves'])} curves, {os.path.basename(picture)} ({time.perf_counter() - t0:.0f} s)")

    findings = [line for line in summary_lines(sr_result["rows"]) if " final PSNR " in line
                or " final SSIM " in line]
    findings += [line for line in summary_lines(result["rows"]) if " final mIoU " in line]
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
                + f"\n\n{timing}.\n\n"
                + "".join(f"{title}: [tables]({folder}/compare.md), [side-by-side samples]({folder}/samples.png), "
                          f"curves in `{folder}/curves/`.\n" for title, folder in
                          (("Super-resolution", "super_resolution"), ("Segmentation", "segmentation"))))
    return dict(result=result, sr_result=sr_result, findings=findings, stage_lines=stage_lines,
                picture=picture, sr_picture=sr_picture, elapsed=elapsed)
