"""Tables (console, Markdown, CSV) and curves (PNG) of a comparison of arms against a baseline."""
from __future__ import annotations

import csv
import os
import re
from typing import Dict, List, Sequence

import numpy as np
from tqdm import tqdm

from .arms import Arm
from .logs import higher_is_better
from .stats import WELCH_MIN_SEEDS, Difference, difference, mean_std

__all__ = ["never_evaluated", "metric_rows", "per_class_rows", "write_report", "plot_curves", "summary_lines"]


def _final_and_best(values: Sequence[float], higher: bool) -> tuple:
    finite = [v for v in values if np.isfinite(v)]
    best = (max if higher else min)(finite) if finite else float("nan")
    return values[-1], best


def never_evaluated(arms: List[Arm]) -> List[str]:
    """Metrics without a finite value in any validation of any run (COCO's AP of large objects on a
    dataset that has none): they stay out of the tables and curves."""
    return [metric for metric in sorted(arms[0].runs[0].metrics)
            if not any(np.isfinite(run.metrics[metric][1]).any() for arm in arms for run in arm.runs)]


def metric_rows(arms: List[Arm], ci: str = "auto") -> List[dict]:
    """One row per arm, metric and kind (``final``, ``best``): seeds' mean ± std and, for every arm
    but the first (the baseline), the difference from the baseline with its 95% interval. Metrics
    that no run evaluated (:func:`never_evaluated`) have no rows."""
    rows = []
    baseline = arms[0]
    skipped = set(never_evaluated(arms))
    for metric in sorted(set(baseline.runs[0].metrics) - skipped):
        higher = higher_is_better(metric)
        per_arm = {arm.name: [_final_and_best(run.metrics[metric][1], higher) for run in arm.runs]
                   for arm in arms}
        for kind, index in (("final", 0), ("best", 1)):
            base_values = [fb[index] for fb in per_arm[baseline.name]]
            for arm in arms:
                values = [fb[index] for fb in per_arm[arm.name]]
                mean, std = mean_std(values)
                row = dict(arm=arm.name, metric=metric, kind=kind, seeds=len(values), mean=mean, std=std,
                           values=values, higher_is_better=higher, diff=None)
                if arm is not baseline:
                    row["diff"] = difference(values, base_values, ci)
                rows.append(row)
    return rows


def per_class_rows(arms: List[Arm], ci: str = "auto") -> tuple:
    """Final per-class IoU differences from the baseline: ``(rows, note)``; no rows and a note saying
    why when some segmentation run does not log per-class IoU; neither for runs of other tasks."""
    if all(run.per_class is None and not run.per_class_note for arm in arms for run in arm.runs):
        return [], ""
    missing = [f"{run.path}: {run.per_class_note}" for arm in arms for run in arm.runs if run.per_class is None]
    if missing:
        return [], "per-class IoU not available (" + "; ".join(missing) + ")"
    baseline = arms[0]
    rows = []
    for cls in baseline.runs[0].per_class:
        base_values = [run.per_class[cls][-1] for run in baseline.runs]
        for arm in arms[1:]:
            values = [run.per_class.get(cls, [float("nan")])[-1] for run in arm.runs]
            rows.append(dict(cls=cls, arm=arm.name, baseline=mean_std(base_values)[0],
                             mean=mean_std(values)[0], diff=difference(values, base_values, ci)))
    return rows, ""


def _fmt(value: float) -> str:
    return "nan" if not np.isfinite(value) else f"{value:.4g}"


def _fmt_diff(diff: Difference) -> str:
    if not (np.isfinite(diff.low) and np.isfinite(diff.high)):
        return f"{diff.value:+.3g} (no interval: {diff.method})"
    return f"{diff.value:+.3g} [{diff.low:+.3g}, {diff.high:+.3g}] {diff.verdict()} ({diff.method})"


def markdown_tables(rows: List[dict], class_rows: List[dict], class_note: str,
                    unevaluated: Sequence[str] = ()) -> str:
    lines = ["| arm | seeds | metric | final (mean ± std) | Δ final vs baseline [95% CI] | best (mean ± std) "
             "| Δ best vs baseline [95% CI] |", "|---|---|---|---|---|---|---|"]
    by_key: Dict[tuple, dict] = {(r["arm"], r["metric"], r["kind"]): r for r in rows}
    seen = []
    for r in rows:
        key = (r["arm"], r["metric"])
        if r["kind"] != "final" or key in seen:
            continue
        seen.append(key)
        final, best = r, by_key[(r["arm"], r["metric"], "best")]
        cells = [r["arm"], str(r["seeds"]), r["metric"] + ("" if r["higher_is_better"] else " (lower is better)"),
                 f"{_fmt(final['mean'])} ± {_fmt(final['std'])}",
                 "baseline" if final["diff"] is None else _fmt_diff(final["diff"]),
                 f"{_fmt(best['mean'])} ± {_fmt(best['std'])}",
                 "baseline" if best["diff"] is None else _fmt_diff(best["diff"])]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"95% intervals of the difference of means: Welch's t-interval when both arms have at "
                 f"least {WELCH_MIN_SEEDS} seeds, otherwise a percentile bootstrap, which with 2 seeds "
                 f"per arm is narrower than the truth. \"not significant\": the interval contains 0.")
    if unevaluated:
        lines.append("")
        lines.append(f"Not evaluated in any run (no value but NaN or COCO's -1, e.g. no ground truth of "
                     f"that size): {', '.join(unevaluated)}.")
    if not (class_rows or class_note):
        return "\n".join(lines) + "\n"  # not a segmentation run: no per-class IoU to speak of
    lines.append("")
    lines.append("### Per-class IoU (final)")
    lines.append("")
    if class_note:
        lines.append(class_note)
    else:
        lines += ["| class | arm | baseline IoU | arm IoU | Δ [95% CI] |", "|---|---|---|---|---|"]
        for r in class_rows:
            lines.append(f"| {r['cls']} | {r['arm']} | {_fmt(r['baseline'])} | {_fmt(r['mean'])} | "
                         f"{_fmt_diff(r['diff'])} |")
        for arm in dict.fromkeys(r["arm"] for r in class_rows):
            mine = [r for r in class_rows if r["arm"] == arm]
            gained = [f"{r['cls']} ({r['diff'].value:+.3g})" for r in mine if r["diff"].value > 0]
            lost = [f"{r['cls']} ({r['diff'].value:+.3g})" for r in mine if r["diff"].value < 0]
            lines.append("")
            lines.append(f"{arm}: gained {', '.join(gained) or 'none'}; lost {', '.join(lost) or 'none'}.")
    return "\n".join(lines) + "\n"


def summary_lines(rows: List[dict]) -> List[str]:
    """One line per non-baseline arm and metric: the final difference and whether it is significant."""
    return [f"{r['arm']} vs {rows[0]['arm']}: final {r['metric']} {_fmt_diff(r['diff'])}"
            for r in rows if r["kind"] == "final" and r["diff"] is not None]


def _write_csv(path: str, rows: List[dict], class_rows: List[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["arm", "metric", "kind", "seeds", "mean", "std", "seed_values", "diff", "ci_low",
                         "ci_high", "ci_method", "verdict"])
        for r in rows:
            d = r["diff"]
            writer.writerow([r["arm"], r["metric"], r["kind"], r["seeds"], r["mean"], r["std"],
                             " ".join(repr(float(v)) for v in r["values"])]
                            + (["", "", "", "baseline", ""] if d is None else
                               [d.value, d.low, d.high, d.method, d.verdict()]))
    if class_rows:
        with open(os.path.join(os.path.dirname(path), "per_class_iou.csv"), "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["class", "arm", "baseline_iou", "arm_iou", "diff", "ci_low", "ci_high",
                             "ci_method", "verdict"])
            for r in class_rows:
                d = r["diff"]
                writer.writerow([r["cls"], r["arm"], r["baseline"], r["mean"], d.value, d.low, d.high,
                                 d.method, d.verdict()])


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")


def plot_curves(arms: List[Arm], out_dir: str, progress: bool = True) -> List[str]:
    """One PNG per training loss term and validation metric: a thin line per run, the seeds' mean bold
    (at the iterations every seed logged), one colour per arm. Returns the files written."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = [("loss", key) for key in sorted({k for a in arms for r in a.runs for k in r.losses})]
    skipped = set(never_evaluated(arms))
    series += [("metric", key) for key in sorted(arms[0].runs[0].metrics) if key not in skipped]
    colours = plt.get_cmap("tab10").colors
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for kind, key in tqdm(series, desc="plotting curves", unit="plot", disable=not progress):
        fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
        for i, arm in enumerate(arms):
            curves = [getattr(run, kind + "es" if kind == "loss" else "metrics").get(key) for run in arm.runs]
            curves = [c for c in curves if c is not None]
            if not curves:
                continue
            colour = colours[i % len(colours)]
            for iters, values in curves:
                ax.plot(iters, values, color=colour, alpha=0.35, linewidth=0.8)
            common = sorted(set.intersection(*[set(c[0]) for c in curves]))
            mean = [np.mean([dict(zip(*c))[it] for c in curves]) for it in common]
            ax.plot(common, mean, color=colour, linewidth=2.4, label=f"{arm.name} (n={len(curves)})",
                    marker="o" if len(common) < 12 else None, markersize=3)
        ax.set_xlabel("iteration")
        ax.set_ylabel(key)
        ax.set_title(f"{'training loss' if kind == 'loss' else 'validation'}: {key}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = os.path.join(out_dir, f"{kind}_{_safe(key)}.png")
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written


def write_report(arms: List[Arm], out: str, ci: str = "auto", progress: bool = True) -> dict:
    """Write ``compare.md``, ``metrics.csv`` (and ``per_class_iou.csv``) and ``curves/*.png`` into
    ``out``; return the rows, the Markdown text and the files written."""
    os.makedirs(out, exist_ok=True)
    rows = metric_rows(arms, ci)
    class_rows, class_note = per_class_rows(arms, ci)
    text = markdown_tables(rows, class_rows, class_note, never_evaluated(arms))
    header = (f"# {arms[0].framework} runs against the baseline `{arms[0].name}`\n\n"
              + "\n".join(f"- `{arm.name}`: " + ", ".join(run.path for run in arm.runs) for arm in arms)
              + "\n\n")
    with open(os.path.join(out, "compare.md"), "w") as f:
        f.write(header + text + "\n## Curves\n\n")
        curves = plot_curves(arms, os.path.join(out, "curves"), progress)
        f.write("\n".join(f"![{os.path.basename(p)}](curves/{os.path.basename(p)})" for p in curves) + "\n")
    _write_csv(os.path.join(out, "metrics.csv"), rows, class_rows)
    return dict(rows=rows, class_rows=class_rows, class_note=class_note, markdown=text, curves=curves)
