"""Readers of the training logs the frameworks write, into one framework-neutral :class:`Run`.

* mmengine (MMSegmentation, MMagic, MMDetection): ``<work_dir>/<timestamp>/vis_data/scalars.json``, one
  JSON object per line. Training lines carry ``iter`` and the loss terms; validation lines carry the
  metrics (``mIoU``, ``PSNR``, ``coco/segm_mAP``, ...) and a ``step`` that is the iteration, or the epoch
  when the logger hook logs metrics by epoch (its default, which mmdet keeps: an iteration-based loop
  then logs ``step`` 0). MMSegmentation prints its per-class IoU only as a text table in
  ``<work_dir>/<timestamp>/<timestamp>.log``; it is read from there. mmdet's ``CocoMetric`` logs -1 for
  a value COCO could not evaluate (no ground truth of that size): read as NaN; its per-category AP
  (``classwise=True``: ``coco/<category>_precision``, one key for bbox and segm alike) is not a metric
  of the table, nor is any value that is not a number.
* detectron2: ``<output_dir>/metrics.json``, one JSON object per written iteration (``iteration``, the
  loss terms, and after an evaluation the evaluator's flattened results ``bbox/AP``, ``segm/AP``,
  ``sem_seg/mIoU``, ``sem_seg/IoU-<class>``, ...). Records are not in iteration order: an evaluation
  between two writes gets a record of its own, or shares one with the losses of its iteration, and the
  evaluation after the last step is written at ``max_iter``. COCOEvaluator writes NaN for what it could
  not evaluate (``APl`` without large objects, every AP when the model made no prediction): kept as NaN.
  Per-category AP (``segm/AP-<category>``) is not a metric of the table.

Only semantic segmentation runs have per-class IoU; for the others ``Run.per_class`` is None and
``Run.per_class_note`` empty.

A work dir resumed in place holds several timestamped folders: they are read in order and a later
record of the same iteration replaces an earlier one.
"""
from __future__ import annotations

import glob
import json
import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional

__all__ = ["LogError", "Run", "read_run", "detect_framework"]

# detectron2 evaluators' result prefixes (DatasetEvaluator names in flatten_results_dict's keys).
D2_EVAL_PREFIXES = ("bbox/", "segm/", "sem_seg/", "keypoints/", "panoptic_seg/")
# Non-metric values that mmengine logs beside the metrics of a validation.
MMENGINE_VAL_BOOKKEEPING = {"step", "data_time", "time", "iter", "epoch", "lr", "memory"}
# mmseg's IoUMetric logs these and prints a per-class table beside them.
MMSEG_METRICS = ("mIoU", "mDice", "mFscore")
# mmdet's CocoMetric with classwise=True: per-category AP, `coco/<category>_precision`.
MMDET_PER_CATEGORY = re.compile(r"^coco/.+_precision$")
# Lower is better for these metric names (matched case-insensitively on the last path component).
LOWER_IS_BETTER = ("mae", "mse", "lpips", "fid", "niqe", "loss", "error")


class LogError(ValueError):
    """A log that is missing, empty or malformed; the message names the file and what was expected."""


@dataclass
class Run:
    """One training run's logged curves: ``losses[name] = (iters, values)``, ``metrics`` likewise."""

    path: str
    # 'mmseg', 'mmagic', 'mmdet' (the default_scope of the config mmengine saved with the run),
    # 'mmengine' (an mmengine run whose config says no scope) or 'detectron2'
    framework: str
    losses: Dict[str, tuple] = field(default_factory=dict)
    metrics: Dict[str, tuple] = field(default_factory=dict)
    # per_class[class_name] = IoU at each validation (same iterations as the metrics); None when
    # the run logs none: per_class_note then says why for a segmentation run, and is empty for runs of
    # other tasks (detection, restoration), which have no per-class IoU.
    per_class: Optional[Dict[str, List[float]]] = None
    per_class_note: str = ""


def higher_is_better(metric: str) -> bool:
    name = metric.rsplit("/", 1)[-1].lower()
    return not any(token in name for token in LOWER_IS_BETTER)


# The config mmengine's LocalVisBackend saves beside scalars.json names the framework's registry scope.
_DEFAULT_SCOPE = re.compile(r"""^default_scope\s*=\s*['"](\w+)['"]""", re.MULTILINE)


def detect_framework(work_dir: str) -> str:
    """The framework that wrote ``work_dir``: ``'detectron2'`` (``metrics.json``), or for mmengine's
    ``<timestamp>/vis_data/scalars.json`` the ``default_scope`` of the config saved beside it
    (``'mmseg'``, ``'mmagic'``, ``'mmdet'``; ``'mmengine'`` when it names none); a :class:`LogError`
    when there is no log."""
    if not os.path.isdir(work_dir):
        raise LogError(f"{work_dir}: not a directory; expected a work dir holding mmengine's "
                       f"<timestamp>/vis_data/scalars.json or detectron2's metrics.json")
    scalar_files = _mmengine_scalar_files(work_dir)
    if scalar_files:
        config = os.path.join(os.path.dirname(scalar_files[-1]), "config.py")
        try:
            with open(config, errors="replace") as f:
                match = _DEFAULT_SCOPE.search(f.read())
        except OSError:
            match = None
        return match.group(1) if match else "mmengine"
    if os.path.isfile(os.path.join(work_dir, "metrics.json")):
        return "detectron2"
    raise LogError(f"{work_dir}: no training log found; expected mmengine's "
                   f"{os.path.join(work_dir, '<timestamp>', 'vis_data', 'scalars.json')} or detectron2's "
                   f"{os.path.join(work_dir, 'metrics.json')}")


def read_run(work_dir: str) -> Run:
    """Read the run in ``work_dir``, whichever framework wrote it."""
    framework = detect_framework(work_dir)
    run = _read_detectron2(work_dir) if framework == "detectron2" else _read_mmengine(work_dir, framework)
    if not run.metrics:
        files = [os.path.join(work_dir, "metrics.json")] if framework == "detectron2" else \
            _mmengine_scalar_files(work_dir)
        raise LogError(f"{', '.join(files)}: no validation metrics found; expected at least one "
                       f"validation record (e.g. mmseg's mIoU, mmagic's PSNR, mmdet's coco/bbox_mAP, "
                       f"detectron2's bbox/AP): did the run reach its first validation?")
    return run


def _json_lines(path: str) -> List[dict]:
    try:
        with open(path) as f:
            lines = [line for line in f if line.strip()]
    except OSError as err:
        raise LogError(f"{path}: cannot be read ({err.strerror})") from None
    if not lines:
        raise LogError(f"{path}: empty; expected one JSON object per line")
    records = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise LogError(f"{path}, line {number}: not valid JSON ({err.msg}); expected one JSON "
                           f"object per line") from None
        if not isinstance(record, dict):
            raise LogError(f"{path}, line {number}: expected a JSON object, got {type(record).__name__}")
        records.append(record)
    return records


def _number(path: str, number: int, key: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise LogError(f"{path}, line {number}: `{key}` should be a number, got {value!r}")
    return float(value)


def _metric_value(value) -> Optional[float]:
    """A validation result as a float, or None for what is not a number (mmdet's
    ``*_mAP_copypaste`` strings)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _curves(points: Dict[str, Dict[int, float]]) -> Dict[str, tuple]:
    return {name: (sorted(by_iter), [by_iter[i] for i in sorted(by_iter)])
            for name, by_iter in sorted(points.items())}


# --- mmengine ----------------------------------------------------------------------------------------

def _mmengine_scalar_files(work_dir: str) -> List[str]:
    return sorted(glob.glob(os.path.join(glob.escape(work_dir), "*", "vis_data", "scalars.json")))


def _read_mmengine(work_dir: str, framework: str) -> Run:
    losses: Dict[str, Dict[int, float]] = {}
    metrics: Dict[str, Dict[int, float]] = {}
    per_class: Dict[str, Dict[int, float]] = {}
    notes = []
    for path in _mmengine_scalar_files(work_dir):
        records = _json_lines(path)
        by_epoch = any("epoch" in r and "iter" in r for r in records)
        last_train_iter: Optional[int] = None
        val_iters = []
        for number, record in enumerate(records, 1):
            if "step" not in record:
                raise LogError(f"{path}, line {number}: no `step`; expected mmengine's scalars.json "
                               f"records, each with a `step`")
            is_train = "iter" in record or any("loss" in k for k in record)
            if is_train:
                it = int(_number(path, number, "iter", record.get("iter", record["step"])))
                last_train_iter = it
                for key, value in record.items():
                    if "loss" in key:
                        losses.setdefault(key, {})[it] = _number(path, number, key, value)
                continue
            step = int(_number(path, number, "step", record["step"]))
            # A validation's step is its iteration unless metrics are logged by epoch; then (and when
            # an iteration-based loop logs them by its dataloader epoch) the iteration is that of the
            # last training record before it.
            if by_epoch or last_train_iter is not None and step < last_train_iter:
                if last_train_iter is None:
                    raise LogError(f"{path}, line {number}: a validation logged by epoch before any "
                                   f"training record; cannot place it on the iteration axis")
                it = last_train_iter
            else:
                it = step
            val_iters.append(it)
            for key, value in record.items():
                value = _metric_value(value)
                if key in MMENGINE_VAL_BOOKKEEPING or value is None or MMDET_PER_CATEGORY.match(key):
                    continue
                if key.startswith("coco/") and value == -1.0:
                    value = float("nan")  # COCO's "not evaluated" (no ground truth of that size)
                metrics.setdefault(key, {})[it] = value
        if any(name in metrics for name in MMSEG_METRICS):
            table_note = _read_mmseg_class_tables(os.path.dirname(os.path.dirname(path)), val_iters,
                                                  per_class)
            if table_note:
                notes.append(table_note)
    run = Run(work_dir, framework, _curves(losses), _curves(metrics))
    if not any(name in metrics for name in MMSEG_METRICS):
        return run
    if per_class and not notes:
        run.per_class = {name: values for name, (_, values) in _curves(per_class).items()}
    else:
        run.per_class_note = "; ".join(notes) or "no per-class table in the text log"
    return run


_TABLE_ROW = re.compile(r"^\|(.+)\|\s*$")
# mmengine logs the table as a message that starts on the line after its own prefix ("... - INFO - ").
_EMPTY_LOG_LINE = re.compile(r"^.* - [A-Z]+ -\s*$")


def _read_mmseg_class_tables(run_dir: str, val_iters: List[int], out: Dict[str, Dict[int, float]]) -> str:
    """Fill ``out[class][iter]`` from the 'per class results' tables of mmseg's text log; return a note
    that says why nothing was read ('' when the tables matched the validations)."""
    if not val_iters:
        return ""
    logs = sorted(glob.glob(os.path.join(glob.escape(run_dir), "*.log")))
    if not logs:
        return f"no text log in {run_dir}"
    tables = []
    with open(logs[-1], errors="replace") as f:
        lines = f.read().splitlines()
    i = 0
    while i < len(lines):
        if lines[i].rstrip().endswith("per class results:"):
            rows = []
            j = i + 1
            while j < len(lines) and (not lines[j].strip() or lines[j].lstrip().startswith(("+", "|"))
                                      or _EMPTY_LOG_LINE.match(lines[j])):
                match = _TABLE_ROW.match(lines[j].strip())
                if match:
                    rows.append([cell.strip() for cell in match.group(1).split("|")])
                j += 1
            tables.append(rows)
            i = j
        else:
            i += 1
    if not tables:
        return f"{logs[-1]}: no 'per class results' table"
    if len(tables) != len(val_iters):
        return (f"{logs[-1]}: {len(tables)} per-class tables for {len(val_iters)} validations in "
                f"scalars.json; per-class IoU not read")
    for it, rows in zip(val_iters, tables):
        if not rows or "IoU" not in rows[0]:
            return f"{logs[-1]}: a per-class table without an IoU column; per-class IoU not read"
        column = rows[0].index("IoU")
        for row in rows[1:]:
            try:
                out.setdefault(row[0], {})[it] = float(row[column])
            except (ValueError, IndexError):
                return f"{logs[-1]}: unreadable per-class row {' | '.join(row)!r}"
    return ""


# --- detectron2 --------------------------------------------------------------------------------------

def _read_detectron2(work_dir: str) -> Run:
    path = os.path.join(work_dir, "metrics.json")
    losses: Dict[str, Dict[int, float]] = {}
    metrics: Dict[str, Dict[int, float]] = {}
    per_class: Dict[str, Dict[int, float]] = {}
    for number, record in enumerate(_json_lines(path), 1):
        if "iteration" not in record:
            raise LogError(f"{path}, line {number}: no `iteration`; expected detectron2's metrics.json "
                           f"records, each with an `iteration`")
        it = int(_number(path, number, "iteration", record["iteration"]))
        for key, value in record.items():
            if key.startswith("loss") or key == "total_loss":
                losses.setdefault(key, {})[it] = _number(path, number, key, value)
            elif key.startswith(D2_EVAL_PREFIXES):
                value = _metric_value(value)
                if value is None:
                    continue
                if key.startswith("sem_seg/IoU-"):
                    per_class.setdefault(key[len("sem_seg/IoU-"):], {})[it] = value
                elif "-" not in key.split("/", 1)[1]:
                    # per-category AP (``segm/AP-person``) stays out of the metric table
                    metrics.setdefault(key, {})[it] = value
    run = Run(work_dir, "detectron2", _curves(losses), _curves(metrics))
    if per_class:
        run.per_class = {name: values for name, (_, values) in _curves(per_class).items()}
    elif "sem_seg/mIoU" in metrics:
        run.per_class_note = "no sem_seg/IoU-<class> values in metrics.json"
    return run
