"""Random networks for 28x28 ROI masks compared offline: cost, gradient share, boundary sensitivity,
and how close each one's gradient is to the full-width network's.

    python tools/mask_networks.py [--seeds 3] [--num-rois 64]

For each candidate network (:data:`CANDIDATES`: VGG-19's first three stages at full, half, quarter
and eighth width; the instance-mask task's other settings), on the toy COCO-shape ROI targets of
``tools/calibrate_loss_weight.py --task instance_masks`` (logits ``q * (2 target - 1) + 2 * smooth
noise``):

* ``GFLOP``: forward and backward at 256 ROIs (``torch.utils.flop_counter``; deterministic);
* ``weight``: the ``loss_weight`` that gives the term a third of the mask BCE's gradient at ``q = 3``
  (the calibration of ``TASK_DEFAULTS['instance_masks']``);
* ``shift/offset`` and ``boundary share``: the term's rise for a one-pixel boundary shift over its
  rise for a uniform loss of confidence, and the share of its gradient within a pixel of the boundary
  (a disc, a thin bar, a box; mean of the three: ``calibration.upsampling_effect`` at x1);
* ``cos to full``: the cosine between its gradient on the logits and the full-width network's (seed 0),
  at ``q = 0, 3, 6``, mean and range over the network seeds ``0 .. seeds-1`` (a seed's redraw of the
  full network itself gives the spread to compare with).
"""
from __future__ import annotations

import argparse
from typing import Dict, List, Sequence

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from randperc_plugins.losses import RandomCNNPerceptualLoss, tasks
from randperc_plugins.losses.random_cnn import VGG19_HALF_WIDTHS, VGG19_QUARTER_WIDTHS, VGG19_WIDTHS

from .. import calibration
from .task_inputs import roi_logits, roi_targets

#: name -> widths of the candidate networks (VGG-19's first three stages, scaled).
CANDIDATES: Dict[str, tuple] = {
    "full (VGG-19)": VGG19_WIDTHS,
    "half": VGG19_HALF_WIDTHS,
    "quarter": VGG19_QUARTER_WIDTHS,
    "eighth": tuple(tuple(w // 8 for w in s) for s in VGG19_WIDTHS),
}
QUALITIES = (0.0, 3.0, 6.0)
FLOP_ROIS = 256


def _settings(widths, seed: int = 0) -> dict:
    base = tasks.task_defaults("instance_masks", "random_cnn")
    base.pop("loss_weight", None)
    return {**base, "widths": widths, "seed": seed}


def loss_gflop(widths, num_rois: int = FLOP_ROIS) -> float:
    """GFLOP of one forward and backward pass of the term on ``num_rois`` 28x28 masks."""
    loss = RandomCNNPerceptualLoss(**_settings(widths))
    g = torch.Generator().manual_seed(0)
    pred = torch.rand(num_rois, 1, 28, 28, generator=g).requires_grad_()
    target = (torch.rand(num_rois, 1, 28, 28, generator=g) > 0.5).float()
    loss(pred, target)  # draws the weights and their gains
    with FlopCounterMode(display=False) as counter:
        loss(pred, target).backward()
    return counter.get_total_flops() / 1e9


def _grad(loss, logits, target) -> torch.Tensor:
    (g,) = torch.autograd.grad(loss(torch.sigmoid(logits), target[:, None]), logits)
    return g.flatten()


def rows(seeds: int = 3, num_rois: int = 64, candidates: Dict[str, tuple] = None) -> List[dict]:
    """One row per candidate network (see the module's docstring)."""
    candidates = CANDIDATES if candidates is None else candidates
    target = roi_targets(num_rois, 0)
    g = torch.Generator().manual_seed(0)
    logits = {q: roi_logits(target, q, g) for q in QUALITIES}
    reference = RandomCNNPerceptualLoss(**_settings(CANDIDATES["full (VGG-19)"], 0))
    ref_grads = {q: _grad(reference, logits[q], target) for q in QUALITIES}
    out = []
    for name, widths in candidates.items():
        cal = calibration.calibrate_instance_masks("random_cnn", num_rois, {**_settings(widths)})
        ratio = cal[1]["grad_ratio"]
        effect = calibration.upsampling_effect("random_cnn", (1,), _settings(widths))[0]
        cosines = {q: [] for q in QUALITIES}
        for seed in range(seeds):
            loss = RandomCNNPerceptualLoss(**_settings(widths, seed))
            for q in QUALITIES:
                cosines[q].append(F.cosine_similarity(_grad(loss, logits[q], target), ref_grads[q],
                                                      dim=0).item())
        row = dict(network=name, widths=widths, gflop=loss_gflop(widths), weight=0.33 / ratio,
                   shift_vs_offset=sum(effect["shift_vs_offset"]) / 3,
                   boundary_share=sum(effect["boundary_grad_share"]) / 3)
        for q in QUALITIES:
            row[f"cos_q{q:.0f}"] = (sum(cosines[q]) / seeds, min(cosines[q]), max(cosines[q]))
        out.append(row)
    return out


def markdown(table: Sequence[dict], seeds: int) -> str:
    lines = [f"| network | widths | GFLOP at {FLOP_ROIS} ROIs | weight (q=3) | shift/offset | boundary share"
             + "".join(f" | cos to full, q={q:.0f} (seeds 0-{seeds - 1})" for q in QUALITIES) + " |",
             "|---" * (6 + len(QUALITIES)) + "|"]
    for r in table:
        cos = "".join(f" | {m:.3f} [{lo:.3f}, {hi:.3f}]" for m, lo, hi in
                      (r[f"cos_q{q:.0f}"] for q in QUALITIES))
        lines.append(f"| {r['network']} | {r['widths']} | {r['gflop']:.1f} | {r['weight']:.3g} | "
                     f"{r['shift_vs_offset']:.2f} | {r['boundary_share']:.2f}{cos} |")
    return "\n".join(lines)


def main(argv=None) -> List[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="network seeds per candidate (default 3)")
    parser.add_argument("--num-rois", type=int, default=64, help="ROIs of the toy targets (default 64)")
    args = parser.parse_args(argv)
    table = rows(args.seeds, args.num_rois)
    print(markdown(table, args.seeds))
    return table


if __name__ == "__main__":
    main()
