"""``tools/ablate.py``: train the arms of a demo task and compare them (against their loss's default arm
and against the task's baseline)."""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from randperc_plugins.compare import load_arms, write_report
from randperc_plugins.losses import names

from ..demo import with_overrides
from ..demo.runs import train_all
from .arms import LOSSES, select_arms
from .stages import STAGES, config_line
from .table import ablation_rows, markdown_table, weight_table, write_csv
from .weights import calibrated_weights

LOSS_CHOICES = {"random_cnn": ("random_cnn",), "patch_mmd": ("patch_mmd",), "both": ("random_cnn", "patch_mmd")}


def _loss_choice(value: str) -> str:
    """A core loss's name (an earlier spelling such as ``gpl`` warns) or ``both``."""
    return value if value == "both" else names.loss_name(value, "--loss")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Ablation of the perceptual losses' settings on a demo task: each arm (the loss's "
                    "default and its variants, experiments.ablation.ABLATIONS) trains through the "
                    "framework's runner beside the baseline over the same seeds, at a loss_weight giving "
                    "the default arm's gradient share, and is compared with tools/compare.py's code.")
    parser.add_argument("task", choices=sorted(STAGES))
    parser.add_argument("--loss", type=_loss_choice, choices=sorted(LOSS_CHOICES), default="both",
                        help="which loss's arms (default both; the earlier spelling gpl is accepted)")
    parser.add_argument("--seeds", type=int, help="seeds per arm, at least 3 (Welch's interval; default 3)")
    parser.add_argument("--iters", type=int, help="training iterations per run (default: the demo's, "
                                                  "segmentation 100, super-resolution 300)")
    parser.add_argument("--parallel", type=int, default=2, help="training processes at a time (default 2)")
    parser.add_argument("--out", default="ablation_report", help="report folder (default ablation_report)")
    parser.add_argument("--work-dir", help="where runs are trained (default: OUT/runs)")
    parser.add_argument("--arms", nargs="+", metavar="NAME", help="only these variants (each loss's "
                                                                  "default arm is always trained)")
    parser.add_argument("--quick", action="store_true",
                        help="3 seeds x 20 (segmentation) / 10 (super-resolution) iterations, the first "
                             "loss's default arm and first variant: checks the pipeline, learns nothing")
    args = parser.parse_args(argv)
    if args.seeds is not None and args.seeds < 3:
        parser.error(f"`--seeds` must be at least 3 (Welch's interval of a difference), got {args.seeds}")
    if args.iters is not None and args.iters < 2:
        parser.error(f"`--iters` must be at least 2, got {args.iters}")
    if args.parallel < 1:
        parser.error(f"`--parallel` must be at least 1, got {args.parallel}")
    return args


def estimate_seconds(task: str, runs: int, iters: int, parallel: int) -> float:
    """Expected wall time from the demo's measured per-run times (on 2 shared cores), linear in the
    iterations, ``min(parallel, cores)`` runs at a time."""
    stage = STAGES[task]
    per_run = stage.seconds_per_run * iters / stage.reference_iters
    return runs * per_run / max(1, min(parallel, os.cpu_count() or 1))


def main(argv=None) -> dict:
    args = parse_args(argv)
    stage = STAGES[args.task]
    settings = with_overrides(stage.quick if args.quick else stage.default, args.seeds, args.iters)
    try:
        chosen = select_arms(args.task, LOSS_CHOICES[args.loss], args.arms, args.quick)
    except ValueError as err:
        raise SystemExit(f"ablate: {err}") from None
    arms = {arm.name: arm for loss_arms in chosen.values() for arm in loss_arms}

    weights = {}
    threads = torch.get_num_threads()
    # One thread: on a shared, loaded machine torch's thread pool makes the calibration many times slower.
    torch.set_num_threads(1)
    try:
        for loss_arms in chosen.values():
            weights.update(calibrated_weights(args.task, loss_arms))
    finally:
        torch.set_num_threads(threads)
    weights_md = weight_table(list(arms.values()), weights)
    print(f"arms and their loss_weight (equal gradient share at the calibration point):\n{weights_md}")

    lines = {stage.baseline: ""}
    lines.update({name: config_line(args.task, arm, weights[name]) for name, arm in arms.items()})
    runs = len(lines) * settings.seeds
    expected = estimate_seconds(args.task, runs, settings.iters, args.parallel)
    print(f"{runs} runs ({len(lines)} arms incl. the baseline '{stage.baseline}' x {settings.seeds} seeds, "
          f"{settings.iters} iterations each, {args.parallel} at a time): about {expected / 60:.0f} min "
          f"expected from the demo's measured times (slower settings such as method='exact' take longer)",
          flush=True)

    work_root = os.path.join(args.work_dir or os.path.join(args.out, "runs"), args.task)
    os.makedirs(args.out, exist_ok=True)
    start = time.perf_counter()
    jobs, work_dirs = stage.prepare(work_root, settings, lines)
    train_all(jobs, args.parallel, desc=f"{args.task} ablation runs")
    trained = time.perf_counter() - start

    def compare(names, out):
        loaded = load_arms([os.path.join(work_root, name) for name in names], progress=False)
        return write_report(loaded, os.path.join(args.out, out), progress=False)

    rows_default, rows_baseline = [], []
    for loss, loss_arms in chosen.items():
        names = [arm.name for arm in loss_arms]
        if len(names) > 1:
            result = compare(names, f"{LOSSES[loss]}_vs_default")
            rows_default += ablation_rows(result, names[0], arms, weights)
    result = compare([stage.baseline, *arms], "vs_baseline")
    rows_baseline = ablation_rows(result, stage.baseline, arms, weights)

    write_csv(os.path.join(args.out, "ablation.csv"), rows_default + rows_baseline)
    md_default = markdown_table(rows_default, stage.headline_metrics)
    md_baseline = markdown_table(rows_baseline, stage.headline_metrics)
    command = "python tools/ablate.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = (f"# Ablation: {args.task}\n\n`{command}`: {len(lines)} arms x {settings.seeds} seeds, "
            f"{settings.iters} iterations each, trained in {trained / 60:.1f} min on {os.cpu_count()} "
            f"CPUs.\n\n## Arms\n\n{weights_md}\n## Each variant against its loss's default arm (final "
            f"values)\n\n{md_default}\n## Every arm against the baseline `{stage.baseline}` (final "
            f"values)\n\n{md_baseline}\n95% intervals of the difference of means over seeds (Welch's "
            f"t-interval); \"not significant\": the interval contains 0. All metrics and classes: "
            f"`ablation.csv`; the compare reports: "
            + ", ".join(f"`{LOSSES[loss]}_vs_default/`" for loss, a in chosen.items() if len(a) > 1)
            + ", `vs_baseline/`.\n")
    with open(os.path.join(args.out, "ablation.md"), "w") as f:
        f.write(text)
    print(text)
    return dict(rows_default=rows_default, rows_baseline=rows_baseline, weights=weights,
                work_dirs=work_dirs, markdown=text, expected_s=expected, trained_s=trained)
