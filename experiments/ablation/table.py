"""The ablation table: one row per (arm, metric) with its difference from a reference arm, from the
results of :func:`randperc_plugins.compare.write_report`."""
from __future__ import annotations

import csv
from typing import List, Mapping, Optional, Sequence

import numpy as np

from .arms import AblationArm

__all__ = ["ablation_rows", "markdown_table", "write_csv", "weight_table"]


def ablation_rows(result: dict, reference: str, arms: Mapping[str, AblationArm],
                  weights: Mapping[str, float]) -> List[dict]:
    """Rows ``{loss, arm, settings, loss_weight, metric, reference, reference_mean, mean, std, diff}``
    for every non-reference arm of one comparison ``result`` (``write_report``'s, whose first arm was
    ``reference``): the final value of each metric, then each class's final IoU (``IoU.<class>``)."""
    rows = []
    by_arm_metric = {(r["arm"], r["metric"]): r for r in result["rows"] if r["kind"] == "final"}

    def row(arm_name, metric, reference_mean, mean, std, diff):
        arm = arms[arm_name]
        return dict(loss=arm.loss, arm=arm_name, settings=arm.describe(), loss_weight=weights[arm_name],
                    metric=metric, reference=reference, reference_mean=reference_mean, mean=mean, std=std,
                    diff=diff)

    for (arm_name, metric), r in by_arm_metric.items():
        if r["diff"] is not None:
            rows.append(row(arm_name, metric, by_arm_metric[(reference, metric)]["mean"], r["mean"],
                            r["std"], r["diff"]))
    for r in result.get("class_rows", []):
        rows.append(row(r["arm"], f"IoU.{r['cls']}", r["baseline"], r["mean"], float("nan"), r["diff"]))
    return rows


def _num(value: float) -> str:
    return "nan" if not np.isfinite(value) else f"{value:.4g}"


def _interval(diff) -> str:
    if not (np.isfinite(diff.low) and np.isfinite(diff.high)):
        return "none"
    return f"[{diff.low:+.3g}, {diff.high:+.3g}]"


def markdown_table(rows: Sequence[dict], metrics: Optional[Sequence[str]] = None) -> str:
    """The rows as a Markdown table (only ``metrics`` when given, in that order per arm)."""
    if metrics is not None:
        order = {m: i for i, m in enumerate(metrics)}
        rows = sorted((r for r in rows if r["metric"] in order),
                      key=lambda r: (_first_index(rows, r["arm"]), order[r["metric"]]))
    lines = ["| arm | settings | loss_weight | metric | vs | reference mean | arm mean | Δ | 95% CI "
             "| verdict |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        d = r["diff"]
        lines.append(f"| {r['arm']} | {r['settings']} | {r['loss_weight']:.3g} | {r['metric']} | "
                     f"{r['reference']} | {_num(r['reference_mean'])} | {_num(r['mean'])} | "
                     f"{d.value:+.3g} | {_interval(d)} | {d.verdict()} ({d.method}) |")
    return "\n".join(lines) + "\n"


def _first_index(rows: Sequence[dict], arm: str) -> int:
    return next(i for i, r in enumerate(rows) if r["arm"] == arm)


def write_csv(path: str, rows: Sequence[dict]) -> None:
    """Every row (all metrics), with the seeds' interval and verdict."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["loss", "arm", "settings", "loss_weight", "metric", "reference", "reference_mean",
                         "mean", "std", "diff", "ci_low", "ci_high", "ci_method", "verdict"])
        for r in rows:
            d = r["diff"]
            writer.writerow([r["loss"], r["arm"], r["settings"], r["loss_weight"], r["metric"], r["reference"],
                             r["reference_mean"], r["mean"], r["std"], d.value, d.low, d.high, d.method,
                             d.verdict()])


def weight_table(arms: Sequence[AblationArm], weights: Mapping[str, float]) -> str:
    """Each arm's settings and ``loss_weight`` (and how it was set) as a Markdown table."""
    lines = ["| arm | loss | settings | loss_weight | weight from |", "|---|---|---|---|---|"]
    for arm in arms:
        source = ("task default" if arm.is_reference else "the arm's settings" if arm.fixed_weight is not None
                  else "equal gradient share")
        lines.append(f"| {arm.name} | {arm.loss} | {arm.describe()} | {weights[arm.name]:.4g} | {source} |")
    return "\n".join(lines) + "\n"
