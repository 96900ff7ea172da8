"""The offline demo (``make demo``, ``tools/demo.py``): train baselines and the one-line variants through
the frameworks' own runners, compare them with ``tools/compare.py``'s code, and write a report.

    python tools/demo.py [--preset quick|cpu|gpu | --quick] [--device auto|cpu|cuda] [--out demo_report]
                         [--seeds N] [--iters N] [--parallel N]

Stages: (1) super-resolution through MMagic on scikit-image's photographs, a small EDSR x2 trained with
L1 against L1 + each loss; (2) segmentation through MMSegmentation on procedurally drawn
scenes with thin structures, cross-entropy against cross-entropy + each loss; (3) the comparison:
tables, curves and pictures per task, into ``--out``, and ``results.json`` (every seed's final values,
the run's preset, device and machine), from which the report's lead (``README.md``: the answer per task,
first whether the baselines reached the regime where the question is real) is rendered. Every arm trains
with the same seeds, data and iterations.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time

from randperc_plugins.compare import load_arms, write_report

from . import report, segmentation, super_resolution

# Per preset and stage: seeds, iterations, validation interval, sizes and learning rate; and the
# training processes at a time. `cpu` is `make demo`'s on a machine without CUDA: chosen by measured
# per-iteration costs to finish in 12 minutes on 2 cores (docs/demo.md); `gpu` is the default where
# CUDA is available: more seeds, longer schedules, larger crops (not measured: see docs/demo.md).
PRESETS = {
    "quick": dict(
        parallel=2,
        super_resolution=super_resolution.SRSettings(seeds=2, iters=10, val_interval=5, log_interval=5),
        segmentation=segmentation.SegSettings(seeds=2, iters=20, val_interval=10, num_train=16, num_val=4,
                                              log_interval=5)),
    "cpu": dict(
        parallel=2,
        super_resolution=super_resolution.SRSettings(seeds=3, iters=1500, val_interval=250, gt_patch=32,
                                                     lr=2e-3, lr_halvings=(0.5, 0.75),
                                                     arms=("l1", "l1+gpl"), log_interval=50),
        segmentation=segmentation.SegSettings(seeds=3, iters=400, val_interval=100, num_train=64,
                                              num_val=16, lr=0.1, arms=("ce", "ce+gpl"), log_interval=50)),
    "gpu": dict(
        parallel=6,
        super_resolution=super_resolution.SRSettings(seeds=6, iters=3000, val_interval=500, width=32,
                                                     blocks=8, gt_patch=96, batch_size=16,
                                                     lr_halvings=(0.5, 0.75), log_interval=100),
        segmentation=segmentation.SegSettings(seeds=6, iters=1500, val_interval=250, num_train=256,
                                              num_val=64, size=128, lr=0.1, batch_size=8,
                                              log_interval=50)),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Offline demo: baseline against each loss, through the "
                                                 "frameworks' own runners, compared with tools/compare.py")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--preset", choices=sorted(PRESETS),
                      help="cpu: 3 seeds, fits 12 minutes on 2 CPU cores; gpu: 6 seeds, longer schedules "
                           "and larger crops; quick: 2 seeds x 10 / 20 iterations, checks the pipeline "
                           "and learns nothing (default: gpu when the device is cuda, else cpu)")
    size.add_argument("--quick", action="store_true", help="the same as --preset quick")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where the runs train (default auto: cuda when torch finds a GPU)")
    parser.add_argument("--out", default="demo_report", help="report folder (default: demo_report)")
    parser.add_argument("--work-dir", help="where runs are trained (default: OUT/runs)")
    parser.add_argument("--seeds", type=int, help="seeds per arm (at least 2), overrides the preset")
    parser.add_argument("--iters", type=int, help="training iterations per run of every stage, overrides "
                                                  "the preset")
    parser.add_argument("--parallel", type=int, help="training processes at a time (default: the "
                                                     "preset's, 2 on the CPU)")
    args = parser.parse_args(argv)
    if args.seeds is not None and args.seeds < 2:
        parser.error(f"`--seeds` must be at least 2 (a difference needs seeds to have an interval), "
                     f"got {args.seeds}")
    if args.iters is not None and args.iters < 2:
        parser.error(f"`--iters` must be at least 2, got {args.iters}")
    if args.parallel is not None and args.parallel < 1:
        parser.error(f"`--parallel` must be at least 1, got {args.parallel}")
    args.device = resolve_device(args.device)
    if args.device is None:
        parser.error("`--device cuda`: torch finds no CUDA device here")
    args.preset = "quick" if args.quick else args.preset or default_preset(args.device)
    return args


def resolve_device(device: str = "auto"):
    """``'cuda'`` or ``'cpu'`` for ``device`` (``'auto'``: cuda when ``torch.cuda.is_available()``); None
    for ``'cuda'`` where there is none."""
    import torch

    available = torch.cuda.is_available()
    if device == "auto":
        return "cuda" if available else "cpu"
    if device == "cuda" and not available:
        return None
    return device


def default_preset(device: str) -> str:
    return "gpu" if device == "cuda" else "cpu"


def _settings(args) -> dict:
    """The preset's settings of each stage, with ``--seeds`` / ``--iters`` applied."""
    preset = PRESETS[args.preset]
    return {stage: with_overrides(preset[stage], args.seeds, args.iters)
            for stage in ("super_resolution", "segmentation")}


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


def device_name(device: str) -> str:
    """The machine the runs trained on, in words: the GPU's name, or the CPU's model."""
    if device == "cuda":
        import torch

        return torch.cuda.get_device_name(0)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


PICTURES = {"super_resolution": "super_resolution/samples.png", "segmentation": "segmentation/samples.png"}


def main(argv=None) -> dict:
    import torch

    args = parse_args(argv)
    stages = _settings(args)
    parallel = args.parallel or PRESETS[args.preset]["parallel"]
    sr_settings, settings = stages["super_resolution"], stages["segmentation"]
    work = args.work_dir or os.path.join(args.out, "runs")
    os.makedirs(args.out, exist_ok=True)
    start, load_start = time.perf_counter(), os.getloadavg()[0]
    stage_lines, seconds, cpu_seconds = [], {}, {}
    cpu_start = time.process_time()

    def say(line):
        print(line, flush=True)
        stage_lines.append(line)

    print(f"preset '{args.preset}' on {args.device} ({device_name(args.device)}), {parallel} runs at a time",
          flush=True)
    t0 = time.perf_counter()
    sr_root = os.path.join(work, "super_resolution")
    sr_dirs, sr_times = super_resolution.run(sr_root, sr_settings, parallel, args.device)
    seconds["super_resolution"] = time.perf_counter() - t0
    cpu_seconds["super_resolution"] = sr_times["cpu_s"]
    say(f"[1/3] super-resolution (MMagic): {len(sr_dirs)} arms x {sr_settings.seeds} seeds, EDSR x2 "
        f"({sr_settings.width} channels, {sr_settings.blocks} blocks), {sr_settings.iters} iterations each "
        f"of {sr_settings.batch_size} {sr_settings.gt_patch}x{sr_settings.gt_patch} crops, validated on "
        f"'{super_resolution.PHOTOS[-1]}', trained in {seconds['super_resolution']:.0f} s "
        f"({cpu_seconds['super_resolution']:.0f} CPU-s)")

    t0 = time.perf_counter()
    work_dirs, seg_times = segmentation.run(os.path.join(work, "segmentation"), settings, parallel, args.device)
    seconds["segmentation"] = time.perf_counter() - t0
    cpu_seconds["segmentation"] = seg_times["cpu_s"]
    say(f"[2/3] segmentation (MMSegmentation): {len(work_dirs)} arms x {settings.seeds} seeds, "
        f"{settings.iters} iterations each of {settings.batch_size} scenes, {settings.num_train} training / "
        f"{settings.num_val} validation scenes of {settings.size}x{settings.size}, trained in "
        f"{seconds['segmentation']:.0f} s ({cpu_seconds['segmentation']:.0f} CPU-s)")

    t0 = time.perf_counter()
    sr_out = os.path.join(args.out, "super_resolution")
    sr_arms, sr_result = _compare(sr_root, sr_dirs, sr_out)
    sr_data = os.path.join(sr_root, "data")
    sr_picture = super_resolution.side_by_side(sr_dirs, sr_data, os.path.join(sr_out, "samples.png"))
    seg_out = os.path.join(args.out, "segmentation")
    arms, result = _compare(os.path.join(work, "segmentation"), work_dirs, seg_out)
    picture = segmentation.side_by_side(work_dirs, os.path.join(work, "segmentation", "data"),
                                        os.path.join(seg_out, "samples.png"))
    seconds["comparison"] = time.perf_counter() - t0
    cpu_seconds["comparison"] = time.process_time() - cpu_start  # this process: the data and the comparison
    say(f"[3/3] comparison: {sr_out}/compare.md, metrics.csv, {len(sr_result['curves'])} curves, "
        f"{os.path.basename(sr_picture)}; {seg_out}/compare.md, metrics.csv, per_class_iou.csv, "
        f"{len(result['curves'])} curves, {os.path.basename(picture)} ({seconds['comparison']:.0f} s)")

    elapsed = time.perf_counter() - start
    results = dict(
        run=dict(preset=args.preset, device=args.device, device_name=device_name(args.device),
                 command=" ".join(["python tools/demo.py"] + [shlex.quote(a) for a in
                                                               (sys.argv[1:] if argv is None else argv)]),
                 cpus=os.cpu_count(), torch=torch.__version__, python=platform.python_version(),
                 parallel=parallel, elapsed_s=round(elapsed, 1), stage_s={k: round(v, 1) for k, v in seconds.items()},
                 stage_cpu_s={k: round(v, 1) for k, v in cpu_seconds.items()},
                 load=[round(load_start, 2), round(os.getloadavg()[0], 2)]),
        settings={stage: vars(s) for stage, s in stages.items()},
        tasks=dict(super_resolution=report.collect_super_resolution(
                       sr_arms, super_resolution.bicubic_reference(sr_data)),
                   segmentation=report.collect_segmentation(arms)))
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
        f.write("\n")
    summary = report.render_summary(results, PICTURES)
    print("summary:")
    for line in report.regime_lines(results):
        print("  " + line)
    for task, record in results["tasks"].items():
        print(f"  {report.TASKS[task]['title']}: {report.headline(task, record)}")
    print(f"demo finished in {elapsed / 60:.1f} min; report: {os.path.join(args.out, 'README.md')}")
    with open(os.path.join(args.out, "README.md"), "w") as f:
        f.write("# randperc_plugins demo report\n\n" + summary + "\n## Stages\n\n"
                + "\n".join(f"- {line}" for line in stage_lines) + "\n\n"
                + "".join(f"{title}: [tables]({folder}/compare.md), [pictures]({folder}/samples.png), "
                          f"curves in `{folder}/curves/`, every seed's final values in `results.json`.\n"
                          for title, folder in (("Super-resolution", "super_resolution"),
                                                ("Segmentation", "segmentation"))))
    return dict(result=result, sr_result=sr_result, results=results, summary=summary,
                stage_lines=stage_lines, picture=picture, sr_picture=sr_picture, elapsed=elapsed)
