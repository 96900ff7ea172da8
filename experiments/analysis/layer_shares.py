"""Each compared layer's share of the random-CNN loss and of its gradient, on each task's inputs.

    python tools/layer_shares.py [--tasks sr segmentation instance_masks] [--inits gpl kaiming]
        [--balances none init target] [--layers relu1_2 relu2_2 relu3_4] [--distance l1]
        [--loss-options key=value ...]
    python tools/layer_shares.py --defaults   # one row per task, at the task's default settings

For a setting (init, balance, layers, distance) and a task's inputs, the loss is split into its
per-layer terms (``return_terms=True``). A layer's **loss share** is its term divided by the sum of the
terms; its **gradient share** is the norm of its term's gradient on the prediction (the SR image; the
segmentation logits), divided by the sum of those norms over the layers. A layer "counts" when both
shares are at least :func:`share_floor` (a third of an equal share).

Inputs (:mod:`experiments.analysis.task_inputs`), at the calibration point of
``tools/calibrate_loss_weight.py``:

* ``sr``: 96x96 centre crops of four of scikit-image's photographs; the prediction is the bicubic x2
  upsampling of their bicubic downsampling moved 80% of the way to the ground truth; the core loss with
  ``task_defaults('restoration', 'random_cnn')``;
* ``segmentation``: four 128x128 thin-structure scenes (4 classes: regions, 1-3 px lines, small
  blobs); logits ``6 * one_hot + 2 * smooth noise`` (a nearly converged head); softmax probabilities
  against the one-hot target (``tasks.segmentation_inputs``), the core loss with
  ``task_defaults('segmentation', 'random_cnn')``;
* ``instance_masks``: 64 28x28 ROI targets of the toy COCO shapes; one foreground logit per pixel,
  ``6 * (2 * target - 1) + 2 * smooth noise``; its sigmoid against the target, the core loss with
  ``task_defaults('instance_masks', 'random_cnn')``.

The loss weight is 1 (shares do not depend on it).
"""
from __future__ import annotations

import argparse
from typing import Dict, List, Optional, Sequence

import torch

from randperc_plugins.losses import names, tasks
from randperc_plugins.losses.random_cnn import BALANCES, RandomCNNPerceptualLoss

from . import task_inputs

#: The tasks (their names in :mod:`randperc_plugins.losses.names`), in the table's order.
TASKS = ("restoration", "segmentation", "instance_masks")
#: The rows of the table in docs/losses.md: init x balance.
INITS = ("gpl", "kaiming")
SR_SIZE = (96, 96)
SR_SCALE = 2
SR_QUALITY = 0.8
SEG_SIZE = (128, 128)
SEG_BATCH = 4
SEG_CLASSES = 4  # the thin scenes' classes
SEG_QUALITY = 6.0
ROI_COUNT = 64
ROI_QUALITY = 6.0


def share_floor(num_layers: int) -> float:
    """The least share (of the loss and of the gradient) at which each of ``num_layers`` compared
    layers is said to count: a third of an equal share, ``1 / (3 * num_layers)`` (11.1% for three).

    A third, because an equal share is not the aim (layers answer differently to different errors),
    but a layer below a third of it adds little that the others do not already say.

    Example:
        >>> round(share_floor(3), 4)
        0.1111
    """
    if num_layers < 1:
        raise ValueError(f"`num_layers` must be at least 1, got {num_layers}")
    return 1.0 / (3 * num_layers)


def _task_batch(task: str, seed: int = 0):
    """``(prediction leaf, loss inputs builder)`` for ``task``: the builder turns the leaf into the
    loss's ``(pred, target, weight)``."""
    if task == "restoration":
        gt = task_inputs.photo_crops(SR_SIZE)
        leaf = task_inputs.sr_prediction(gt, task_inputs.bicubic_prediction(gt, SR_SCALE), SR_QUALITY)
        return leaf, lambda p: (p, gt, None)
    if task == "segmentation":
        label = task_inputs.scene_labels("thin", SEG_SIZE, SEG_BATCH, SEG_CLASSES, seed)
        one_hot = task_inputs.one_hot_labels(label, SEG_CLASSES)
        leaf = task_inputs.noisy_logits(one_hot, SEG_QUALITY, torch.Generator().manual_seed(seed))
        return leaf, lambda p: tasks.segmentation_inputs(p, label, ignore_index=255)
    if task == "instance_masks":
        target = task_inputs.roi_targets(ROI_COUNT, seed)
        leaf = task_inputs.roi_logits(target, ROI_QUALITY, torch.Generator().manual_seed(seed))
        return leaf, lambda p: (torch.sigmoid(p), target[:, None], None)
    raise ValueError(f"`task` must be one of {TASKS}, got {task!r}")


def _task_loss(task: str, settings: dict) -> RandomCNNPerceptualLoss:
    """The core loss with ``task``'s defaults, ``settings`` over them, weight 1."""
    if task not in TASKS:
        raise ValueError(f"`task` must be one of {TASKS}, got {task!r}")
    return RandomCNNPerceptualLoss(**{**tasks.task_defaults(task, "random_cnn"), **settings,
                                      "loss_weight": 1.0})


def layer_shares(task: str, **settings) -> Dict[str, Dict[str, float]]:
    """Each compared layer's share of the loss and of its gradient on ``task``'s inputs.

    Args:
        task: one of :data:`TASKS` (inputs: see the module's docstring).
        **settings: keyword arguments of :class:`RandomCNNPerceptualLoss` over the task's defaults
            (``init``, ``balance``, ``layers``, ``distance``, ...); the loss weight is 1.

    Returns:
        ``{layer: {'loss': share, 'grad': share}}`` in network order; each kind of share sums to 1.

    Example:
        >>> shares = layer_shares("restoration", init="kaiming", layers=("relu1_2", "relu2_2"))
        >>> list(shares), round(sum(s["loss"] for s in shares.values()), 6)
        (['relu1_2', 'relu2_2'], 1.0)
    """
    return _shares_of(_task_loss(task, settings), task)


def _shares_of(loss: RandomCNNPerceptualLoss, task: str) -> Dict[str, Dict[str, float]]:
    """:func:`layer_shares` of an already built ``loss`` on ``task``'s inputs."""
    leaf, inputs = _task_batch(task)
    _, terms = loss(*inputs(leaf), return_terms=True)
    values = {name: term.detach().double() for name, term in terms.items()}
    norms = {}
    for name, term in terms.items():
        (grad,) = torch.autograd.grad(term, leaf, retain_graph=True)
        norms[name] = grad.double().norm()
    value_sum, norm_sum = sum(values.values()), sum(norms.values())
    return {name: {"loss": float(values[name] / value_sum), "grad": float(norms[name] / norm_sum)}
            for name in terms}


def _row(task: str, settings: dict, default: bool = False) -> dict:
    loss = _task_loss(task, settings)
    shares = _shares_of(loss, task)
    floor = share_floor(len(shares))
    counts = all(min(s["loss"], s["grad"]) >= floor for s in shares.values())
    return dict(task=task, init=loss.spec.init, balance=loss.comparison.balance, default=default,
                shares=shares, floor=floor, counts=counts)


def share_rows(tasks_: Sequence[str] = TASKS, inits: Sequence[str] = INITS,
               balances: Sequence[str] = BALANCES, **settings) -> List[dict]:
    """One row per task x init x balance: ``{task, init, balance, default, shares, floor, counts}``,
    where ``counts`` says whether every layer's loss and gradient shares reach :func:`share_floor`."""
    return [_row(task, {**settings, "init": init, "balance": balance})
            for task in tasks_ for init in inits for balance in balances]


def default_rows(tasks_: Sequence[str] = TASKS, **settings) -> List[dict]:
    """One row per task at its default settings (``task_defaults(...)`` over the core's), with
    ``default=True``; ``settings`` (e.g. other ``layers``) override them, as in :func:`share_rows`.

    Example:
        >>> [(r["task"], r["counts"]) for r in default_rows(["restoration"], layers=("relu1_2",))]
        [('restoration', True)]
    """
    return [_row(task, dict(settings), default=True) for task in tasks_]


def _percent(share: float) -> str:
    return f"{100 * share:.2g}" if share < 0.01 else f"{100 * share:.1f}"


def format_shares(rows: Sequence[dict]) -> str:
    """The Markdown table of :func:`share_rows`: per layer, "loss % / gradient %"."""
    layers = list(rows[0]["shares"])
    floor = rows[0]["floor"]
    head = ["task", "init", "balance", *(f"{name} loss % / grad %" for name in layers),
            f"every layer >= {100 * floor:.1f}%"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["task"] + (" (default)" if r.get("default") else ""), f"'{r['init']}'", f"'{r['balance']}'",
                 *(f"{_percent(s['loss'])} / {_percent(s['grad'])}" for s in r["shares"].values()),
                 "yes" if r["counts"] else "no"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> List[dict]:
    from mmengine.config import DictAction

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", type=names.task_name, choices=TASKS, default=list(TASKS),
                        help="tasks (the earlier spelling sr is accepted)")
    parser.add_argument("--defaults", action="store_true",
                        help="one row per task at its default settings (not init x balance)")
    parser.add_argument("--inits", nargs="+", default=list(INITS))
    parser.add_argument("--balances", nargs="+", choices=BALANCES, default=list(BALANCES))
    parser.add_argument("--layers", nargs="+", default=None, help="compared layers (default: the core's)")
    parser.add_argument("--distance", default=None, help="'l1', 'mse' or 'smooth_l1' (default: the core's)")
    parser.add_argument("--loss-options", nargs="+", action=DictAction, default={},
                        help="other settings of the core loss, key=value")
    args = parser.parse_args(argv)
    settings = dict(args.loss_options)
    if args.layers:
        settings["layers"] = tuple(args.layers)
    if args.distance:
        settings["distance"] = args.distance
    rows = (default_rows(args.tasks, **settings) if args.defaults
            else share_rows(args.tasks, args.inits, args.balances, **settings))
    print(format_shares(rows))
    return rows
