"""Every task default on one GPU: the train step of a model of each task alone and with each loss, the
loss alone, peak memory and host synchronisations, in one table.

    python tools/benchmark.py gpu [--device cuda] [--out DIR] [--repeat 10] [--quick]
    python tools/benchmark.py gpu --cpu-flops [--quick]

Models (stand-ins built from torch and torchvision alone, so that the command runs on any machine with
CUDA; the frameworks' own models are measured by ``mmseg-step``, ``mmagic-step``, ``mmdet-step`` and
``detectron2-step``):

* segmentation: torchvision's DeepLabV3-ResNet50 (dilated, output stride 8), 19 classes, batch 2 at
  512x1024, cross-entropy with ignore index 255 (PSPNet-R50-D8's shape in mmseg's Cityscapes configs);
* restoration: a plain EDSR x2 (64 channels, 16 residual blocks, mmagic's ``EDSRNet``), batch 16 of
  48x48 inputs (96x96 outputs), L1; and mmagic's VGG-19 perceptual loss (``relu5_4``, random weights) in
  its place, the cost users already accept;
* instance masks: torchvision's Mask R-CNN R50-FPN, batch 2 at 800x1333 with 20 instances each, its
  mask loss with the term added on the same ROIs (``cudnn.benchmark`` off, as mmdet and detectron2).

Each loss enters at its task default (``task_defaults``) through the task layer with
``validate_args=False``, as the adapters call it. Steps are timed with CUDA events, warmed up, as
medians of steps taken in turns; "x step" is the step's time over the baseline step's, "loss s" the
loss's forward + backward alone on the model's output shapes, "syncs" the host synchronisations of one
loss call (``torch.cuda.set_sync_debug_mode('warn')``). A row that fails reports its error and the
others still run. ``--cpu-flops`` prints the same rows in GFLOP (``torch.utils.flop_counter``, forward
+ backward) on the ``meta`` device, where nothing is computed (the Mask R-CNN step, which reads values,
is not counted there).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import warnings
from typing import Callable, Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..losses import PatchMMDLoss, RandomCNNPerceptualLoss, tasks
from .common import format_table

LOSSES = {"random_cnn": RandomCNNPerceptualLoss, "patch_mmd": PatchMMDLoss}
COLUMNS = ["task", "model", "variant", "step ms", "x step", "loss ms", "loss / VGG", "peak MiB",
           "syncs", "error"]
FLOP_COLUMNS = ["task", "model", "variant", "step GFLOP", "x step", "loss GFLOP", "loss / VGG",
                "error"]


# ----------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------
class _ResBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return x + self.conv2(F.relu(self.conv1(x)))


class PlainEDSR(nn.Module):
    """EDSR as mmagic's ``EDSRNet`` (no mean shift): head, residual blocks, pixel-shuffle upsampling."""

    def __init__(self, channels: int = 64, blocks: int = 16, scale: int = 2):
        super().__init__()
        self.head = nn.Conv2d(3, channels, 3, padding=1)
        self.body = nn.Sequential(*[_ResBlock(channels) for _ in range(blocks)],
                                  nn.Conv2d(channels, channels, 3, padding=1))
        self.up = nn.Sequential(nn.Conv2d(channels, channels * scale * scale, 3, padding=1),
                                nn.PixelShuffle(scale))
        self.tail = nn.Conv2d(channels, 3, 3, padding=1)

    def forward(self, x):
        h = self.head(x)
        return self.tail(self.up(self.body(h) + h))


class VGGPerceptualLoss(nn.Module):
    """mmagic's ``PerceptualLoss(layer_weights={'34': 1.0}, vgg_type='vgg19')`` as SR configs use it:
    L1 between VGG-19 ``relu5_4`` features of ImageNet-normalised images (random weights here: none
    can be downloaded; the cost is the same)."""

    def __init__(self):
        super().__init__()
        import torchvision
        self.features = torchvision.models.vgg19(weights=None).features[:36].eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, pred, target):
        f = self.features((pred - self.mean) / self.std)
        with torch.no_grad():
            g = self.features((target - self.mean) / self.std)
        return F.l1_loss(f, g)


def _segmentation(device, quick):
    import torchvision
    model = torchvision.models.segmentation.deeplabv3_resnet50(
        weights=None, weights_backbone=None, num_classes=19, aux_loss=False).to(device).train()
    n, h, w = (2, 64, 128) if quick else (2, 512, 1024)
    g = torch.Generator().manual_seed(0)
    image = torch.rand(n, 3, h, w, generator=g).to(device)
    label = torch.randint(0, 19, (n, h, w), generator=g)
    label[:, : h // 8] = 255
    label = label.to(device)

    def step(term):
        logits = model(image)["out"]
        loss = F.cross_entropy(logits, label, ignore_index=255)
        if term is not None:
            loss = loss + term(*tasks.segmentation_inputs(logits, label, validate_args=False))
        loss.backward()

    def loss_inputs():
        logits = torch.randn(n, 19, h, w, device=device, requires_grad=True)
        return lambda: tasks.segmentation_inputs(logits, label, validate_args=False)

    return "DeepLabV3-R50 (torchvision)", model, step, loss_inputs, (n, 3, h, w)


def _restoration(device, quick):
    model = PlainEDSR().to(device).train()
    n, s = (2, 12) if quick else (16, 48)
    g = torch.Generator().manual_seed(0)
    lr = torch.rand(n, 3, s, s, generator=g).to(device)
    gt = torch.rand(n, 3, 2 * s, 2 * s, generator=g).to(device)

    def step(term):
        pred = model(lr)
        loss = F.l1_loss(pred, gt)
        if term is not None:
            loss = loss + term(*tasks.restoration_inputs(pred, gt, validate_args=False))
        loss.backward()

    def loss_inputs():
        pred = torch.rand(n, 3, 2 * s, 2 * s, device=device, requires_grad=True)
        return lambda: tasks.restoration_inputs(pred, gt, validate_args=False)

    return "EDSR x2 c64b16 (plain)", model, step, loss_inputs, (n, 3, s, s)


def _instance_masks(device, quick):
    import torchvision
    from torchvision.models.detection import roi_heads

    size = (256, 320) if quick else (800, 1333)
    model = torchvision.models.detection.maskrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=81, min_size=size[0], max_size=size[1])
    model.to(device).train()
    g = torch.Generator().manual_seed(0)
    n, instances = (1, 3) if quick else (2, 20)
    images = [torch.rand(3, *size, generator=g).to(device) for _ in range(n)]
    targets = []
    for _ in range(n):
        xy = torch.rand(instances, 2, generator=g) * torch.tensor([size[1] * 0.7, size[0] * 0.7])
        wh = 16 + torch.rand(instances, 2, generator=g) * torch.tensor([size[1] * 0.25, size[0] * 0.25])
        boxes = torch.cat([xy, xy + wh], 1)
        masks = torch.zeros(instances, *size, dtype=torch.uint8)
        for i, (x0, y0, x1, y1) in enumerate(boxes.round().long().tolist()):
            masks[i, y0:y1, x0:x1] = 1
        targets.append({"boxes": boxes.to(device), "labels": torch.randint(1, 81, (instances,), generator=g).to(device),
                        "masks": masks.to(device)})
    original = roi_heads.maskrcnn_loss
    holder: Dict[str, Optional[Callable]] = {"term": None}

    def mask_loss(mask_logits, proposals, gt_masks, gt_labels, mask_matched_idxs):
        loss = original(mask_logits, proposals, gt_masks, gt_labels, mask_matched_idxs)
        term = holder["term"]
        if term is None:
            return loss
        m = mask_logits.shape[-1]
        labels = torch.cat([lab[idx] for lab, idx in zip(gt_labels, mask_matched_idxs)])
        mask_targets = torch.cat([roi_heads.project_masks_on_boxes(gm, p, i, m)
                                  for gm, p, i in zip(gt_masks, proposals, mask_matched_idxs)])
        return loss + term(*tasks.instance_mask_inputs(mask_logits, mask_targets, labels,
                                                       validate_args=False))

    roi_heads.maskrcnn_loss = mask_loss

    def step(term):
        holder["term"] = term
        losses = model(images, targets)
        sum(losses.values()).backward()

    def loss_inputs():
        rois = 64 if quick else 256
        logits = torch.randn(rois, 81, 28, 28, device=device, requires_grad=True)
        mask_targets = (torch.rand(rois, 28, 28, generator=g) > 0.5).float().to(device)
        labels = torch.randint(0, 81, (rois,), generator=g).to(device)
        return lambda: tasks.instance_mask_inputs(logits, mask_targets, labels, validate_args=False)

    return "Mask R-CNN R50-FPN (torchvision)", model, step, loss_inputs, None


TASKS = {"segmentation": _segmentation, "restoration": _restoration, "instance_masks": _instance_masks}


# ----------------------------------------------------------------------------------------------
# Measurement
# ----------------------------------------------------------------------------------------------
def _elapsed_ms(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end)
    import time
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1e3


def _medians(fns: Dict[str, Callable[[], object]], device, warmup: int, repeat: int) -> Dict[str, float]:
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: Dict[str, List[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            times[k].append(_elapsed_ms(fn, device))
    return {k: statistics.median(v) for k, v in times.items()}


def _peak_mib(fn, device) -> Optional[float]:
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return round(torch.cuda.max_memory_allocated(device) / 2 ** 20, 1)


def _syncs(fn, device) -> Optional[int]:
    """Host synchronisations of one call of ``fn`` (CUDA only)."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in seen)


def _loss_call(loss, inputs):
    def call():
        loss(*inputs()).backward()
    return call


def task_rows(task: str, device: torch.device, quick: bool, warmup: int, repeat: int) -> List[Dict]:
    """The rows of one task (see the module docstring); errors are reported in the rows."""
    rows: List[Dict[str, object]] = []
    try:
        model_name, model, step, loss_inputs, _ = TASKS[task](device, quick)
    except Exception as e:  # noqa: BLE001 - a row reports what failed, the table goes on
        return [{"task": task, "model": "?", "variant": "baseline", "error": f"{type(e).__name__}: {e}"}]
    losses = {name: cls(**tasks.task_defaults(task, name), validate_args=False).to(device)
              for name, cls in LOSSES.items()}
    steps: Dict[str, Callable[[], object]] = {"baseline": lambda: step(None)}
    alone: Dict[str, Callable[[], object]] = {}
    for name, loss in losses.items():
        steps[f"+ {name}"] = (lambda loss=loss: step(loss))
        alone[f"+ {name}"] = _loss_call(loss, loss_inputs())
    if task == "restoration":
        vgg = VGGPerceptualLoss().to(device)
        steps["+ VGG-19 (mmagic)"] = lambda: step(vgg)
        alone["+ VGG-19 (mmagic)"] = _loss_call(vgg, loss_inputs())
    ok_steps: Dict[str, Callable[[], object]] = {}
    errors: Dict[str, str] = {}
    for name, fn in {**steps, **{f"alone {k}": v for k, v in alone.items()}}.items():
        try:
            fn()  # first call: draws, caches, compiles
            ok_steps[name] = fn
        except Exception as e:  # noqa: BLE001
            errors[name] = f"{type(e).__name__}: {str(e)[:120]}"
    times = _medians(ok_steps, device, warmup, repeat)
    base = times.get("baseline")
    vgg_ms = times.get("alone + VGG-19 (mmagic)")
    for name in steps:
        loss_ms = times.get(f"alone {name}")
        row = {"task": task, "model": model_name, "variant": name,
               "step ms": _round(times.get(name)), "x step": _ratio(times.get(name), base),
               "loss ms": _round(loss_ms), "loss / VGG": _ratio(loss_ms, vgg_ms),
               "peak MiB": _peak_mib(steps[name], device) if name in ok_steps else None,
               "syncs": _syncs(alone[name], device) if name in alone and f"alone {name}" in ok_steps
               else None,
               "error": errors.get(name) or errors.get(f"alone {name}")}
        rows.append(row)
    model.cpu()
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


def _round(v):
    return None if v is None else round(v, 3)


def _ratio(a, b):
    return None if a is None or not b else round(a / b, 3)


def flop_rows(task: str, quick: bool) -> List[Dict[str, object]]:
    """The rows of one task in GFLOP (forward + backward), counted on the ``meta`` device."""
    from torch.utils.flop_counter import FlopCounterMode

    device = torch.device("meta")

    def gflop(fn) -> Optional[float]:
        counter = FlopCounterMode(display=False)
        with counter:
            fn()
        return round(counter.get_total_flops() / 1e9, 2)

    rows: List[Dict[str, object]] = []
    try:
        model_name, model, step, loss_inputs, _ = TASKS[task](device, quick)
    except Exception as e:  # noqa: BLE001
        model_name, step, loss_inputs = "?", None, None
        if task != "instance_masks":
            return [{"task": task, "model": model_name, "variant": "baseline", "error": str(e)[:120]}]
    if task == "instance_masks":
        model_name = "Mask R-CNN R50-FPN (torchvision)"
        rois = 64 if quick else 256
        g = torch.Generator().manual_seed(0)
        logits = torch.randn(rois, 81, 28, 28, device=device, requires_grad=True)
        targets = (torch.rand(rois, 28, 28, generator=g) > 0.5).float().to(device)
        labels = torch.randint(0, 81, (rois,), generator=g).to(device)

        def loss_inputs():
            return lambda: tasks.instance_mask_inputs(logits, targets, labels, validate_args=False)
        step = None
    losses = {name: cls(**tasks.task_defaults(task, name), validate_args=False)
              for name, cls in LOSSES.items()}
    variants = {f"+ {k}": v for k, v in losses.items()}
    if task == "restoration":
        variants["+ VGG-19 (mmagic)"] = VGGPerceptualLoss().to(device)
    base = None if step is None else gflop(lambda: step(None))
    vgg = None
    loss_flops = {}
    for name, loss in variants.items():
        call = _loss_call(loss, loss_inputs())
        call()  # draws and caches outside the count
        loss_flops[name] = gflop(call)
    vgg = loss_flops.get("+ VGG-19 (mmagic)")
    rows.append({"task": task, "model": model_name, "variant": "baseline", "step GFLOP": base,
                 "x step": 1.0 if base else None})
    for name in variants:
        total = None if base is None else round(base + loss_flops[name], 2)
        rows.append({"task": task, "model": model_name, "variant": name, "step GFLOP": total,
                     "x step": _ratio(total, base), "loss GFLOP": loss_flops[name],
                     "loss / VGG": _ratio(loss_flops[name], vgg)})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="tools/benchmark.py gpu", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--cpu-flops", action="store_true", help="GFLOP on the meta device instead of times")
    parser.add_argument("--quick", action="store_true", help="toy shapes (the tests' setting)")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--out", default=None, help="folder for results.md and results.json")
    args = parser.parse_args(argv)
    torch.backends.cudnn.benchmark = False  # mmdet's and detectron2's setting (the default)
    if args.cpu_flops:
        rows = [r for t in args.tasks for r in flop_rows(t, args.quick)]
        columns, title = FLOP_COLUMNS, "GFLOP per train step, forward + backward (meta device)"
    else:
        device = torch.device(args.device)
        rows = [r for t in args.tasks for r in task_rows(t, device, args.quick, args.warmup, args.repeat)]
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
        columns = COLUMNS
        title = (f"train steps on {name} (torch {torch.__version__}), medians of {args.repeat} steps "
                 f"taken in turns")
    table = format_table(rows, columns)
    print(title)
    print(table)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "results.md"), "w") as f:
            f.write(f"{title}\n\n{table}\n")
        with open(os.path.join(args.out, "results.json"), "w") as f:
            json.dump({"title": title, "rows": rows}, f, indent=1)
    return 0
