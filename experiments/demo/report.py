"""The demo's findings: the runs' final values per seed as a JSON-able record, and the report that leads
with the answer, rendered from that record alone (so a recorded run renders the same text anywhere).

``collect_*`` read the final values from the loaded arms (the runs' own logs); :func:`render_summary`
writes the answer per task (which arm is better on which metric, by how much, with the 95% Welch
interval and "significant" or "not significant"), preceded by the checks that the runs reached the
regime where the question is real: the segmentation baseline learned the thin classes, the
super-resolution baseline beats bicubic upsampling.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np

from randperc_plugins.compare.stats import Difference, difference, mean_std

__all__ = ["TASKS", "collect_segmentation", "collect_super_resolution", "comparisons", "regime_lines",
           "headline", "render_summary"]

#: Per task: its title, the headline metrics (the first is the one the demo asks about) and their format.
TASKS = {
    "segmentation": dict(title="Segmentation (MMSegmentation, thin-structure scenes)",
                         metrics=("IoU.line", "IoU.blob", "mIoU")),
    "super_resolution": dict(title="Super-resolution (MMagic, EDSR x2 on a photograph)",
                             metrics=("PSNR", "SSIM")),
}
THIN_CLASSES = ("line", "blob")


def _digits(task: str, metric: str) -> int:
    if metric == "SSIM":
        return 4
    return 2


def _fmt(task: str, metric: str, value: float) -> str:
    return f"{value:.{_digits(task, metric)}f}"


def _fmt_signed(task: str, metric: str, value: float) -> str:
    return f"{value:+.{_digits(task, metric)}f}"


def _final(values) -> float:
    return float(values[-1])


def collect_segmentation(arms) -> dict:
    """Final mIoU and thin-class IoU of every seed of every arm (``compare.load_arms``' arms; the first is
    the baseline)."""
    out = {}
    for arm in arms:
        values = {f"IoU.{cls}": [_final(run.per_class[cls]) for run in arm.runs] for cls in THIN_CLASSES}
        values["mIoU"] = [_final(run.metrics["mIoU"][1]) for run in arm.runs]
        out[arm.name] = values
    return dict(baseline=arms[0].name, arms=out)


def collect_super_resolution(arms, reference: Dict[str, float]) -> dict:
    """Final PSNR and SSIM of every seed of every arm, and ``reference`` (bicubic upsampling's PSNR and
    SSIM on the same validation image)."""
    out = {arm.name: {metric: [_final(run.metrics[metric][1]) for run in arm.runs]
                      for metric in TASKS["super_resolution"]["metrics"]} for arm in arms}
    return dict(baseline=arms[0].name, arms=out, reference=dict(name="bicubic", **reference))


def _verdict_word(diff: Difference, arm: str, baseline: str) -> str:
    if not diff.significant:
        return "no significant difference"
    return f"`{arm}` better" if diff.value > 0 else f"`{baseline}` better"


def comparisons(task: str, record: dict) -> List[dict]:
    """One row per headline metric and non-baseline arm: means, the difference with its 95% interval
    (Welch's with at least 3 seeds per arm), and which arm is better (every headline metric is higher
    is better)."""
    baseline = record["baseline"]
    rows = []
    for metric in TASKS[task]["metrics"]:
        base = record["arms"][baseline][metric]
        for arm, values in record["arms"].items():
            if arm == baseline:
                continue
            diff = difference(values[metric], base)
            rows.append(dict(metric=metric, arm=arm, baseline=baseline, base=mean_std(base),
                             ours=mean_std(values[metric]), seeds=(len(values[metric]), len(base)),
                             diff=diff, better=_verdict_word(diff, arm, baseline)))
    return rows


def regime_lines(results: dict) -> List[str]:
    """Whether the runs reached the regime where the comparison means something, per task: the
    segmentation baseline's thin-class IoU above 0 in every seed, the super-resolution baseline above
    bicubic upsampling (PSNR) in every seed; with the measured values, and the gap where not."""
    lines = []
    seg = results["tasks"].get("segmentation")
    if seg:
        base = seg["baseline"]
        for cls in THIN_CLASSES:
            values = seg["arms"][base][f"IoU.{cls}"]
            shown = ", ".join(f"{v:.2f}" for v in values)
            if all(v > 0 for v in values):
                lines.append(f"Segmentation: the baseline `{base}` learned the thin class '{cls}' in every "
                             f"seed (final IoU per seed: {shown}).")
            else:
                zero = sum(v <= 0 for v in values)
                others = [a for a in seg["arms"] if a != base and any(v > 0 for v in seg["arms"][a][f"IoU.{cls}"])]
                if others:
                    tail = f"; {', '.join(f'`{a}`' for a in others)} did in some seeds."
                elif zero < len(values):
                    tail = "; no other arm did in any seed."
                else:
                    tail = "; no arm did: there is nothing to compare on that class."
                lines.append(f"Segmentation: the baseline `{base}` did NOT learn the thin class '{cls}' in "
                             f"{zero} of {len(values)} seeds (final IoU per seed: {shown}){tail}")
    sr = results["tasks"].get("super_resolution")
    if sr:
        base, ref = sr["baseline"], sr["reference"]
        psnr = sr["arms"][base]["PSNR"]
        gaps = [v - ref["PSNR"] for v in psnr]
        shown = ", ".join(f"{v:.2f}" for v in psnr)
        above = sum(g > 0 for g in gaps)
        if above == len(gaps):
            lines.append(f"Super-resolution: the baseline `{base}` beats bicubic upsampling on the validation "
                         f"image in every seed: PSNR {shown} dB against bicubic's {ref['PSNR']:.2f} dB "
                         f"(by {min(gaps):+.2f} to {max(gaps):+.2f} dB; bicubic's SSIM {ref['SSIM']:.4f}, "
                         f"the baseline's {np.mean(sr['arms'][base]['SSIM']):.4f} on average).")
        else:
            lines.append(f"Super-resolution: the baseline `{base}` does NOT beat bicubic upsampling on the "
                         f"validation image in {len(gaps) - above} of {len(gaps)} seeds: PSNR {shown} dB "
                         f"against bicubic's {ref['PSNR']:.2f} dB (gap {min(gaps):+.2f} to {max(gaps):+.2f} dB, "
                         f"mean {np.mean(gaps):+.2f} dB): its comparison below is between models that are "
                         f"not yet better than interpolation.")
    return lines


def difference_cells(task: str, r: dict) -> tuple:
    """A comparison's ``(baseline mean ± std, arm mean ± std, difference [95% CI])`` as table cells."""
    m, d = r["metric"], r["diff"]
    if np.isfinite(d.low) and np.isfinite(d.high):
        ci = f"{_fmt_signed(task, m, d.value)} [{_fmt_signed(task, m, d.low)}, {_fmt_signed(task, m, d.high)}]"
    else:
        ci = f"{_fmt_signed(task, m, d.value)} (no interval)"
    return (f"{_fmt(task, m, r['base'][0])} ± {_fmt(task, m, r['base'][1])}",
            f"{_fmt(task, m, r['ours'][0])} ± {_fmt(task, m, r['ours'][1])}", ci)


def _answer_table(task: str, record: dict) -> List[str]:
    lines = ["| metric | arm | seeds | baseline (mean ± std) | arm (mean ± std) | Δ [95% CI] | verdict | "
             "better |", "|---|---|---|---|---|---|---|---|"]
    for r in comparisons(task, record):
        base, ours, ci = difference_cells(task, r)
        lines.append(f"| {r['metric']} | `{r['arm']}` vs `{r['baseline']}` | {r['seeds'][0]} / {r['seeds'][1]} | "
                     f"{base} | {ours} | {ci} | {r['diff'].verdict()} ({r['diff'].method}) | {r['better']} |")
    return lines


def headline(task: str, record: dict) -> str:
    """One sentence per task: the answer on each headline metric."""
    parts = []
    for r in comparisons(task, record):
        d, m = r["diff"], r["metric"]
        if d.significant:
            parts.append(f"on {m} {r['better']} ({_fmt_signed(task, m, d.value)}, significant)")
        else:
            parts.append(f"`{r['arm']}` on {m}: {_fmt_signed(task, m, d.value)}, not significant")
    return "; ".join(parts) + "."


def cpu_time_line(run: dict) -> str:
    """The run's CPU time per stage (user + system of the single-threaded training processes, and of the
    demo's own process for the data and the comparison), and the wall time it makes on dedicated cores
    with the run's parallelism: what the run costs whatever else the machine was running."""
    cpu = run["stage_cpu_s"]
    training = cpu.get("super_resolution", 0.0) + cpu.get("segmentation", 0.0)
    dedicated = training / max(1, min(run["parallel"], run["cpus"] or 1)) + cpu.get("comparison", 0.0)
    return (f"CPU time: super-resolution runs {cpu.get('super_resolution', 0.0):.0f} s, segmentation runs "
            f"{cpu.get('segmentation', 0.0):.0f} s, data and comparison {cpu.get('comparison', 0.0):.0f} s: "
            f"at least {dedicated / 60:.1f} min on {max(1, min(run['parallel'], run['cpus'] or 1))} dedicated "
            f"cores at {run['parallel']} runs at a time (the training CPU time shared evenly).")


def render_summary(results: dict, pictures: Optional[Dict[str, str]] = None) -> str:
    """The report's lead, from ``results`` (the record :func:`experiments.demo.main` writes as
    ``results.json``) alone: the run, the regime checks, then per task the answer, its table and its
    picture (``pictures``: task -> path of the picture as the Markdown file links it)."""
    pictures = pictures or {}
    run = results["run"]
    seeds = sorted({len(v) for t in results["tasks"].values() for a in t["arms"].values() for v in a.values()})
    lines = [f"Preset `{run['preset']}` on {run['device_name']} ({run['device']}), "
             f"{'/'.join(map(str, seeds))} seeds per arm: `{run['command']}`, finished in "
             f"{run['elapsed_s'] / 60:.1f} min ({run['cpus']} CPUs, 1-minute load average "
             f"{run['load'][0]:.1f} at the start, {run['load'][1]:.1f} at the end; torch {run['torch']}).", ""]
    if run.get("stage_cpu_s"):
        lines += [cpu_time_line(run), ""]
    lines += [f"- {line}" for line in regime_lines(results)]
    lines += ["", "Differences are arm minus baseline of the final values, with 95% intervals (Welch's "
                  "t-interval with at least 3 seeds per arm); \"not significant\": the interval contains 0. "
                  "IoU in points (0-100), PSNR in dB. Deterministic on one machine; another machine "
                  "(thread count, CPU kernels, GPU) gives other values, so read the intervals, not single "
                  "runs."]
    for task, record in results["tasks"].items():
        lines += ["", f"**{TASKS[task]['title']}**: {headline(task, record)}", ""]
        lines += _answer_table(task, record)
        if task == "super_resolution":
            ref = record["reference"]
            lines += ["", f"Bicubic upsampling on the same image: PSNR {ref['PSNR']:.2f} dB, SSIM "
                          f"{ref['SSIM']:.4f}."]
        if task in pictures:
            what = ("the validation scenes where the arms' predictions differ most on the thin classes "
                    "(seed 0; titles: line IoU on the scene)" if task == "segmentation" else
                    "the crops of the validation image where the arms' outputs differ most (seed 0; "
                    "titles: PSNR on the crop)")
            lines += ["", f"![{task} samples]({pictures[task]})", "", f"Above: {what}."]
    return "\n".join(lines) + "\n"
