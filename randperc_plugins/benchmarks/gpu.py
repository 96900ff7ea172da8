"""Every task default's cost on one GPU: each framework model's train step alone and with each loss.

    python tools/benchmark.py gpu [--out DIR] [--tasks segmentation instance_masks restoration] [--budget-s 270]
    python tools/benchmark.py gpu --cpu-flops [--out DIR]     # the same table in FLOPs, on the CPU
    python tools/benchmark.py gpu --quick --device cpu        # toy sizes (what the tests run)

Models: the framework's own where it imports, else a named stand-in built from torch / torchvision alone
(random weights, nothing downloaded):

* segmentation: mmseg's PSPNet-R50-D8 (Cityscapes config), else torchvision's DeepLabV3-R50 (dilated,
  output stride 8); batch 2 at 512x1024, 19 classes, cross-entropy; the losses on the softmax of the
  logits against the one-hot label (``segmentation_inputs``), ``cudnn.benchmark`` on (mmseg's default);
* super-resolution: mmagic's EDSR x2 (64 channels, 16 blocks), else the same network in plain PyTorch;
  batch 16 of 48x48 inputs (96x96 outputs), L1, Adam; also L1 + a VGG-19 perceptual loss as mmagic's SR
  configs use it (``layer_weights={'34': 1.0}``: torchvision's VGG-19 through layer 34, conv5_4, random
  weights, ImageNet input normalisation, L1 of the features); ``cudnn.benchmark`` off;
* instance masks: mmdet's Mask R-CNN R50-FPN (COCO 1x config), else torchvision's Mask R-CNN R50-FPN;
  batch 2 at 800x1333, 20 ground-truth instances per image, 4 batches in turn (so the ROI count changes
  between steps, as in training); ``cudnn.benchmark`` off (mmdet's and detectron2's default), then on.

Variants: the step alone; + the random-CNN loss; + patch-MMD; (SR) + the VGG-19 loss; each at its task
defaults (``task_defaults``), through the task layer with ``validate_args=False``, as the adapters call
them. Per variant: median step time of interleaved rounds (CUDA events), the ratio to the step alone,
peak memory (``torch.cuda.max_memory_allocated``), host synchronisations per step (counted in separate
steps under ``torch.cuda.set_sync_debug_mode('warn')``). Then each loss alone (forward + backward from
the logits or the prediction, at the step's shapes; 256 ROIs for masks), against the step alone and
(SR) the VGG loss; the random-CNN loss also with the full-width network (release 0.2's), in float32 and under bfloat16
autocast, with ``channels_last`` on and off.

One row's failure is reported in its ``error`` column; the rest of the table still runs. Sections that
would start after ``--budget-s`` seconds are skipped (and say so). ``--out`` receives ``gpu.md`` and
``gpu.json`` (or ``cpu_flops.md`` / ``.json``).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import time
import traceback
import warnings
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..losses import PatchMMDLoss, RandomCNNPerceptualLoss, random_cnn as random_cnn_module
from ..losses import names
from ..losses.random_cnn import VGG19_WIDTHS
from ..losses.tasks import (ROI_BUCKET, instance_mask_inputs, per_roi_in_buckets, restoration_inputs,
                            segmentation_inputs, task_defaults)
from .common import format_table

TASKS = names.TASKS
STEP_COLUMNS = ["task", "model", "variant", "cudnn.benchmark", "step ms", "ratio to step",
                "peak MiB", "memory ratio", "host syncs / step", "ROIs / step", "error"]
LOSS_COLUMNS = ["task", "loss", "setting", "shape", "loss ms", "ratio to step", "ratio to VGG",
                "peak MiB", "error"]
FLOP_STEP_COLUMNS = ["task", "model", "variant", "step GFLOP", "ratio to step", "ROIs / step", "error"]
FLOP_LOSS_COLUMNS = ["task", "loss", "setting", "shape", "loss GFLOP", "ratio to step", "ratio to VGG",
                     "error"]


@dataclass
class Sizes:
    seg_batch: int = 2
    seg_size: tuple = (512, 1024)
    seg_classes: int = 19
    sr_batch: int = 16
    sr_lq: int = 48
    sr_scale: int = 2
    edsr_channels: int = 64
    edsr_blocks: int = 16
    det_batch: int = 2
    det_size: tuple = (800, 1333)
    det_instances: int = 20
    det_classes: int = 91
    det_batches: int = 4
    det_rois_per_image: int = 512  # sampled for the box head (torchvision's and mmdet's default)
    det_proposals: int = 2000  # RPN proposals kept per image in training (torchvision's default)
    mask_rois: int = 256
    warmup: int = 3
    rounds: int = 10
    sync_steps: int = 2
    stand_ins: bool = False  # the stand-ins even where a framework imports


QUICK = Sizes(seg_batch=2, seg_size=(32, 32), seg_classes=4, sr_batch=2, sr_lq=12, edsr_channels=8,
              edsr_blocks=2, det_batch=1, det_size=(64, 96), det_instances=3, det_batches=2,
              det_rois_per_image=32, det_proposals=64, mask_rois=16, warmup=1, rounds=2, sync_steps=1)


# ----------------------------------------------------------------------------------------------
# Measurement
# ----------------------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(fns: Dict[str, Callable[[], object]], device: torch.device, warmup: int,
                     rounds: int):
    """Median milliseconds per call of each of ``fns``, run in turn ``rounds`` times after ``warmup``
    calls each (CUDA events on a GPU, ``perf_counter`` on the CPU), None for a function that failed;
    and ``{name: exception}`` of those."""
    failed = {}
    for name, fn in fns.items():
        try:
            for _ in range(warmup):
                fn()
        except Exception as exc:  # noqa: BLE001 - reported in the row
            failed[name] = exc
    _sync(device)
    live = {k: v for k, v in fns.items() if k not in failed}
    samples: Dict[str, list] = {name: [] for name in live}
    for _ in range(rounds):
        for name, fn in list(live.items()):
            try:
                if device.type == "cuda":
                    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    start.record()
                    fn()
                    end.record()
                    samples[name].append((start, end))
                else:
                    t0 = time.perf_counter()
                    fn()
                    samples[name].append((time.perf_counter() - t0) * 1e3)
            except Exception as exc:  # noqa: BLE001
                failed[name] = exc
                live.pop(name)
    _sync(device)
    out: Dict[str, Optional[float]] = {}
    for name in fns:
        if name in failed or not samples.get(name):
            out[name] = None
            continue
        values = [s.elapsed_time(e) for s, e in samples[name]] if device.type == "cuda" else samples[name]
        out[name] = statistics.median(values)
    return out, failed


def peak_mib(fn: Callable[[], object], device: torch.device) -> Optional[float]:
    """Peak allocated MiB during one call on CUDA (None on the CPU)."""
    if device.type != "cuda":
        return None
    _sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    _sync(device)
    return torch.cuda.max_memory_allocated(device) / 2**20


def count_syncs(fn: Callable[[], object], device: torch.device, steps: int) -> Optional[float]:
    """Host synchronisations per call, counted by ``torch.cuda.set_sync_debug_mode('warn')`` over
    ``steps`` calls; None on the CPU or where the counter does not see a known synchronisation."""
    if device.type != "cuda" or not sync_counter_works(device):
        return None
    total = 0
    for _ in range(steps):
        total += _syncs_of(fn)
    return total / steps


def _syncs_of(fn: Callable[[], object]) -> int:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def sync_counter_works(device: torch.device) -> bool:
    """Whether the counter sees ``.item()`` on a CUDA tensor (checked once)."""
    if not hasattr(sync_counter_works, "result"):
        t = torch.ones(1, device=device)
        sync_counter_works.result = _syncs_of(lambda: t.item()) >= 1  # type: ignore[attr-defined]
    return sync_counter_works.result  # type: ignore[attr-defined]


def count_gflop(fn: Callable[[], object]) -> float:
    """GFLOP of one call (convolutions and matrix products, forward and backward)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def _error(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ").replace("|", "/")
    return text[:160]


@contextlib.contextmanager
def cudnn_benchmark(on: bool):
    old = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = on
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = old


def _imports(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None and bool(__import__(module))
    except Exception:  # noqa: BLE001 - a framework that fails to import is not there
        return False


# ----------------------------------------------------------------------------------------------
# The losses as users get them
# ----------------------------------------------------------------------------------------------
def core_loss(task: str, loss: str, roi_buckets: bool = True, **overrides) -> nn.Module:
    """The core loss at ``task``'s defaults (with ``overrides``), ``validate_args=False``; for masks
    called per ROI in the adapters' buckets (:func:`per_roi_in_buckets`) unless ``roi_buckets=False``."""
    settings = {**task_defaults(task, loss), **overrides}
    cls = RandomCNNPerceptualLoss if loss == "random_cnn" else PatchMMDLoss
    if task != "instance_masks":
        return cls(**settings, validate_args=False)
    return _PerROI(cls(**{**settings, "reduction": "none"}, validate_args=False), roi_buckets)


class _PerROI(nn.Module):
    """A mask loss as the mmdet and detectron2 adapters call it on CUDA: per ROI, in buckets of
    ``ROI_BUCKET`` ROIs (or as the ROIs come), then the mean."""

    def __init__(self, per_roi: nn.Module, buckets: bool) -> None:
        super().__init__()
        self.per_roi, self.buckets = per_roi, buckets

    def forward(self, probability, target):
        # the CUDA adapters' buckets on any device, so that FLOPs counted on the CPU are the GPU's
        bucket = ROI_BUCKET if self.buckets else 1
        return per_roi_in_buckets(self.per_roi, probability, target, bucket=bucket).mean()


#: The random-CNN loss with the full VGG-19 widths in float32 under autocast (release 0.2's network).
FULL_WIDTH = dict(widths=VGG19_WIDTHS, autocast=False)


class VGGPerceptualLoss(nn.Module):
    """mmagic's SR perceptual loss as its configs use it (``layer_weights={'34': 1.0}``, L1,
    ``perceptual_weight=1``, ImageNet normalisation): torchvision's VGG-19 through layer 34 (conv5_4),
    random weights, frozen; the ground truth's features without gradient."""

    def __init__(self) -> None:
        super().__init__()
        import torchvision

        self.features = torchvision.models.vgg19(weights=None).features[:35].eval()
        self.features.requires_grad_(False)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, pred, target):
        fx = self.features((pred - self.mean) / self.std)
        with torch.no_grad():
            fy = self.features((target - self.mean) / self.std)
        return F.l1_loss(fx, fy)


class PlainEDSR(nn.Module):
    """EDSR (Lim et al., 2017) in plain PyTorch as mmagic's ``EDSRNet``: a 3x3 head, ``blocks`` residual
    blocks (conv, ReLU, conv), a 3x3 body end, sub-pixel upsampling and a 3x3 tail; mean shift omitted."""

    def __init__(self, channels: int = 64, blocks: int = 16, scale: int = 2) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, channels, 3, padding=1)
        self.blocks = nn.ModuleList(nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(True),
                                                  nn.Conv2d(channels, channels, 3, padding=1))
                                    for _ in range(blocks))
        self.body_end = nn.Conv2d(channels, channels, 3, padding=1)
        ups = []
        for _ in range({2: 1, 3: 1, 4: 2}[scale]):
            f = 3 if scale == 3 else 2
            ups += [nn.Conv2d(channels, channels * f * f, 3, padding=1), nn.PixelShuffle(f)]
        self.upsample = nn.Sequential(*ups)
        self.tail = nn.Conv2d(channels, 3, 3, padding=1)

    def forward(self, x):
        x = self.head(x)
        res = x
        for block in self.blocks:
            res = res + block(res)
        return self.tail(self.upsample(self.body_end(res) + x))


# ----------------------------------------------------------------------------------------------
# Tasks: each returns (model name, {variant: step}, extra per-variant info, loss-alone inputs)
# ----------------------------------------------------------------------------------------------
@dataclass
class Section:
    task: str
    model: str
    steps: Dict[str, Callable[[], object]]
    cudnn_benchmark: bool = False
    rois: Optional[Callable[[], Optional[float]]] = None
    make_step: Optional[Callable[[nn.Module], Callable[[], object]]] = None  # a step with another term


def _sgd(params):
    return torch.optim.SGD([p for p in params if p.requires_grad], lr=1e-4, momentum=0.9)


def segmentation_section(device, sizes: Sizes, flops: bool) -> Section:
    g = torch.Generator().manual_seed(0)
    n, (h, w), c = sizes.seg_batch, sizes.seg_size, sizes.seg_classes
    if _imports("mmseg") and not flops and not sizes.stand_ins:
        from . import _framework_models as fm
        from . import mmseg_step

        steps = {}
        for variant, loss in zip(("step alone", "+ random-CNN", "+ patch-MMD"), mmseg_step.VARIANTS.values()):
            model = fm.build_pspnet_r50(size=(h, w), decode_loss=loss).to(device)
            data = fm.to_device(fm.seg_batch(model, size=(h, w), batch=n, num_classes=c), device)
            steps[variant] = _framework_step(fm, model, data, _sgd(model.parameters()), flops)
        return Section("segmentation", "mmseg PSPNet-R50-D8", steps, cudnn_benchmark=True)
    import torchvision

    model = torchvision.models.segmentation.deeplabv3_resnet50(
        weights=None, weights_backbone=None, num_classes=c, aux_loss=False).to(device)
    image = torch.randn(n, 3, h, w, generator=g).to(device)
    label = torch.randint(0, c, (n, h, w), generator=g)
    label[:, : max(1, h // 32)] = 255
    label = label.to(device)
    optimizer = _sgd(model.parameters())
    terms = {"step alone": None, "+ random-CNN": core_loss("segmentation", "random_cnn").to(device),
             "+ patch-MMD": core_loss("segmentation", "patch_mmd").to(device)}

    def forward():
        logits = model(image)["out"]
        return logits, F.cross_entropy(logits, label, ignore_index=255)

    steps = _steps_with_terms(terms, model, forward,
                              lambda logits: segmentation_inputs(logits, label, validate_args=False),
                              optimizer, flops)
    return Section("segmentation", "torchvision DeepLabV3-R50 (stand-in for PSPNet-R50)", steps,
                   cudnn_benchmark=True)


def _steps_with_terms(terms: dict, model: nn.Module, forward: Callable[[], tuple],
                      task_inputs: Callable, optimizer, flops: bool) -> Dict[str, Callable[[], None]]:
    """One train step per variant of ``terms`` (name -> added term or None): ``forward()`` gives the
    prediction and the baseline loss, the term is added on ``task_inputs(prediction)``."""
    def make(term):
        def step():
            model.train()
            pred, loss = forward()
            if term is not None:
                loss = loss + term(*task_inputs(pred))
            loss.backward()
            if not flops:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return step

    return {k: make(t) for k, t in terms.items()}


def _framework_step(fm, model, data, optimizer, flops):
    def step():
        fm.train_step(model, data, None if flops else optimizer)
        optimizer.zero_grad(set_to_none=True)
    return step


def sr_section(device, sizes: Sizes, flops: bool) -> Section:
    g = torch.Generator().manual_seed(0)
    n, lq, s = sizes.sr_batch, sizes.sr_lq, sizes.sr_scale
    terms = {"step alone": None, "+ random-CNN": core_loss("restoration", "random_cnn").to(device),
             "+ patch-MMD": core_loss("restoration", "patch_mmd").to(device), "+ VGG-19 (mmagic's)": VGGPerceptualLoss().to(device)}
    use_mmagic = (_imports("mmagic") and not flops and not sizes.stand_ins and sizes.edsr_channels == 64
                  and sizes.edsr_blocks == 16)
    if use_mmagic:
        from . import _framework_models as fm

        model = fm.build_edsr(scale=s).to(device)
        net = model.generator
        name = "mmagic EDSR x2 c64b16"
    else:
        net = PlainEDSR(sizes.edsr_channels, sizes.edsr_blocks, s).to(device)
        name = f"plain EDSR x{s} c{sizes.edsr_channels}b{sizes.edsr_blocks} (stand-in for mmagic's)"
    gt = torch.rand(n, 3, lq * s, lq * s, generator=g).to(device)
    lq_img = F.avg_pool2d(gt, s)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)

    def forward():
        pred = net(lq_img)
        return pred, F.l1_loss(pred, gt)

    steps = _steps_with_terms(terms, net, forward,
                              lambda pred: restoration_inputs(pred, gt, validate_args=False), optimizer, flops)
    return Section("restoration", name, steps, cudnn_benchmark=False)


def _det_targets(sizes: Sizes, seed: int, device):
    """Per image: ``boxes``, ``labels`` and full-image ``masks`` of rectangles and ellipses."""
    g = torch.Generator().manual_seed(seed)
    h, w = sizes.det_size
    images, targets = [], []
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    for _ in range(sizes.det_batch):
        images.append(torch.rand(3, h, w, generator=g).to(device))
        boxes, masks = [], []
        for i in range(sizes.det_instances):
            bw, bh = (torch.rand(2, generator=g) * 0.3 + 0.05).tolist()
            x1, y1 = (torch.rand(2, generator=g) * torch.tensor([1 - bw, 1 - bh])).tolist()
            box = [x1 * w, y1 * h, (x1 + bw) * w, (y1 + bh) * h]
            cx, cy, rx, ry = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2, (box[2] - box[0]) / 2, (box[3] - box[1]) / 2
            if i % 2:
                m = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
            else:
                m = (xx >= box[0]) & (xx < box[2]) & (yy >= box[1]) & (yy < box[3])
            boxes.append(box)
            masks.append(m.to(torch.uint8))
        labels = torch.randint(1, sizes.det_classes, (sizes.det_instances,), generator=g)
        targets.append(dict(boxes=torch.tensor(boxes).to(device), labels=labels.to(device),
                            masks=torch.stack(masks).to(device)))
    return images, targets


@contextlib.contextmanager
def torchvision_mask_term(holder: dict):
    """torchvision's Mask R-CNN mask loss (binary cross-entropy of the ground-truth class's logits
    against the ROI targets) plus ``holder['term']`` on ``instance_mask_inputs``, patched in for the
    duration; ``holder['rois']`` records each step's positive ROI count (a shape)."""
    from torchvision.models.detection import roi_heads as rh

    original = rh.maskrcnn_loss

    def maskrcnn_loss(mask_logits, proposals, gt_masks, gt_labels, mask_matched_idxs):
        m = mask_logits.shape[-1]
        labels = torch.cat([gl[i] for gl, i in zip(gt_labels, mask_matched_idxs)])
        mask_targets = torch.cat([rh.project_masks_on_boxes(gm, p, i, m)
                                  for gm, p, i in zip(gt_masks, proposals, mask_matched_idxs)])
        holder.setdefault("rois", []).append(labels.shape[0])
        if mask_targets.numel() == 0:
            return mask_logits.sum() * 0
        rows = torch.arange(labels.shape[0], device=labels.device)
        loss = F.binary_cross_entropy_with_logits(mask_logits[rows, labels], mask_targets)
        term = holder.get("term")
        if term is not None:
            loss = loss + term(*instance_mask_inputs(mask_logits, mask_targets, labels, validate_args=False))
        return loss

    rh.maskrcnn_loss = maskrcnn_loss
    try:
        yield
    finally:
        rh.maskrcnn_loss = original


def masks_section(device, sizes: Sizes, flops: bool, holder: dict) -> Section:
    """torchvision's Mask R-CNN (mmdet's when it imports, outside FLOP counting)."""
    terms = {"step alone": None, "+ random-CNN": core_loss("instance_masks", "random_cnn").to(device),
             "+ patch-MMD": core_loss("instance_masks", "patch_mmd").to(device)}
    if _imports("mmdet") and not flops and not sizes.stand_ins:
        from . import _framework_models as fm
        from . import mmdet_step

        steps = {}
        for variant, loss in zip(terms, mmdet_step.VARIANTS.values()):
            model = fm.build_mask_rcnn(mask_loss=loss).to(device)
            batches = [fm.to_device(fm.det_batch(model, size=sizes.det_size, batch=sizes.det_batch, seed=k,
                                                 num_instances=sizes.det_instances), device)
                       for k in range(sizes.det_batches)]
            steps[variant] = _cycling(lambda data, model=model, opt=_sgd(model.parameters()):
                                      _framework_step(fm, model, data, opt, flops)(), batches)
        return Section("instance_masks", "mmdet Mask R-CNN R50-FPN", steps)
    import torchvision

    h, w = sizes.det_size
    model = torchvision.models.detection.maskrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=sizes.det_classes, min_size=min(h, w),
        max_size=max(h, w), box_batch_size_per_image=sizes.det_rois_per_image,
        rpn_post_nms_top_n_train=sizes.det_proposals,
        rpn_pre_nms_top_n_train=2000 if sizes.det_proposals >= 2000 else 2 * sizes.det_proposals,
    ).to(device)
    batches = [_det_targets(sizes, k, device) for k in range(sizes.det_batches)]
    optimizer = _sgd(model.parameters())

    def make(term):
        def step(batch):
            images, targets = batch
            holder["term"] = term
            model.train()
            losses = model(images, targets)
            sum(losses.values()).backward()
            if not flops:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return _cycling(step, batches)

    def rois():
        seen = holder.get("rois", [])
        return statistics.median(seen) if seen else None

    return Section("instance_masks", "torchvision Mask R-CNN R50-FPN (stand-in for mmdet's / detectron2's)",
                   {k: make(t) for k, t in terms.items()}, rois=rois, make_step=make)


def _cycling(step: Callable, batches: list) -> Callable[[], object]:
    state = {"i": 0}

    def call():
        batch = batches[state["i"] % len(batches)]
        state["i"] += 1
        return step(batch)
    return call


# ----------------------------------------------------------------------------------------------
# The losses alone
# ----------------------------------------------------------------------------------------------
def loss_inputs(task: str, sizes: Sizes, device):
    """A function of a loss that runs it forward and backward from the task's raw outputs, and the
    shape it sees."""
    g = torch.Generator().manual_seed(1)
    if task == "segmentation":
        n, (h, w), c = sizes.seg_batch, sizes.seg_size, sizes.seg_classes
        logits = torch.randn(n, c, h, w, generator=g).to(device).requires_grad_()
        label = torch.randint(0, c, (n, h, w), generator=g).to(device)
        prepare = lambda: segmentation_inputs(logits, label, validate_args=False)  # noqa: E731
        leaf, shape = logits, (n, c, h, w)
    elif task == "restoration":
        side = sizes.sr_lq * sizes.sr_scale
        pred = torch.rand(sizes.sr_batch, 3, side, side, generator=g).to(device).requires_grad_()
        gt = torch.rand(sizes.sr_batch, 3, side, side, generator=g).to(device)
        prepare = lambda: restoration_inputs(pred, gt, validate_args=False)  # noqa: E731
        leaf, shape = pred, tuple(pred.shape)
    else:
        r = sizes.mask_rois
        logits = torch.randn(r, sizes.det_classes, 28, 28, generator=g).to(device).requires_grad_()
        targets = (torch.rand(r, 28, 28, generator=g) > 0.5).float().to(device)
        labels = torch.randint(0, sizes.det_classes, (r,), generator=g).to(device)
        prepare = lambda: instance_mask_inputs(logits, targets, labels, validate_args=False)  # noqa: E731
        leaf, shape = logits, (r, 1, 28, 28)

    def runner(loss, autocast_dtype=None):
        def call():
            leaf.grad = None
            ctx = (torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None
                   else contextlib.nullcontext())
            with ctx:
                value = loss(*prepare())
            value.backward()
        return call
    return runner, "x".join(map(str, shape))


def loss_cases(task: str, device) -> Dict[str, tuple]:
    """``{(loss, setting): (module, autocast dtype or None, channels_last)}`` timed alone."""
    cases = {("random-CNN", "default"): (core_loss(task, "random_cnn"), None, True),
             ("random-CNN", "full-width network"): (core_loss(task, "random_cnn", **FULL_WIDTH), None, True),
             ("patch-MMD", "default"): (core_loss(task, "patch_mmd"), None, True)}
    low = torch.bfloat16
    cases[("random-CNN", "default, bf16 autocast")] = (core_loss(task, "random_cnn"), low, True)
    if device.type == "cuda":
        cases[("random-CNN", "default, NCHW")] = (core_loss(task, "random_cnn"), None, False)
        cases[("random-CNN", "default, bf16 autocast, NCHW")] = (core_loss(task, "random_cnn"), low, False)
    if task == "instance_masks":
        cases[("random-CNN", "default, no ROI buckets")] = (
            core_loss(task, "random_cnn", roi_buckets=False), None, True)
    if task == "restoration":
        cases[("VGG-19 (mmagic's)", "layer 34, L1")] = (VGGPerceptualLoss(), None, True)
    return {k: (m.to(device), a, cl) for k, (m, a, cl) in cases.items()}


@contextlib.contextmanager
def channels_last(on: bool):
    old = random_cnn_module._CHANNELS_LAST_ON_CUDA
    random_cnn_module._CHANNELS_LAST_ON_CUDA = on
    try:
        yield
    finally:
        random_cnn_module._CHANNELS_LAST_ON_CUDA = old


# ----------------------------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------------------------
def _build_section(task, device, sizes, flops, holder):
    if task == "segmentation":
        return segmentation_section(device, sizes, flops)
    if task == "restoration":
        return sr_section(device, sizes, flops)
    return masks_section(device, sizes, flops, holder)


def step_rows(section: Section, device, sizes: Sizes, benchmark: bool, holder: dict,
              variants: Optional[Dict[str, Callable]] = None) -> List[dict]:
    steps = variants or section.steps
    rows = []
    with cudnn_benchmark(benchmark):
        times, failures = time_interleaved(steps, device, sizes.warmup, sizes.rounds)
        base = times.get("step alone")
        base_mem = None
        for name, fn in steps.items():
            row = dict(task=section.task, model=section.model, variant=name,
                       **{"cudnn.benchmark": "on" if benchmark else "off"})
            if times[name] is None:
                row["error"] = _error(failures[name]) if name in failures else "no timing"
                rows.append(row)
                continue
            row["step ms"] = times[name]
            row["ratio to step"] = times[name] / base if base else None
            try:
                holder["rois"] = []
                row["peak MiB"] = peak_mib(fn, device)
                row["host syncs / step"] = count_syncs(fn, device, sizes.sync_steps)
                if section.rois is not None:
                    if not holder["rois"]:  # on the CPU neither of the above ran a step
                        fn()
                    row["ROIs / step"] = section.rois()
            except Exception as exc:  # noqa: BLE001
                row["error"] = _error(exc)
            if name == "step alone":
                base_mem = row.get("peak MiB")
            if base_mem and row.get("peak MiB"):
                row["memory ratio"] = row["peak MiB"] / base_mem
            rows.append(row)
    return rows


def flop_step_rows(section: Section, holder: dict) -> List[dict]:
    rows, base = [], None
    for name, fn in section.steps.items():
        row = dict(task=section.task, model=section.model, variant=name)
        try:
            fn()  # draws the random networks and their gains outside the count
            holder["rois"] = []
            row["step GFLOP"] = count_gflop(fn)
            if section.rois is not None:
                row["ROIs / step"] = section.rois()
            base = row["step GFLOP"] if name == "step alone" else base
            row["ratio to step"] = row["step GFLOP"] / base if base else None
        except Exception as exc:  # noqa: BLE001
            row["error"] = _error(exc)
        rows.append(row)
    return rows


def loss_rows(task: str, device, sizes: Sizes, step_value: Optional[float], flops: bool) -> List[dict]:
    runner, shape = loss_inputs(task, sizes, device)
    rows, calls = [], {}
    try:
        cases = loss_cases(task, device)
    except Exception as exc:  # noqa: BLE001
        return [dict(task=task, loss="all", error=_error(exc))]
    for (loss, setting), (module, dtype, cl) in cases.items():
        def call(module=module, dtype=dtype, cl=cl):
            with channels_last(cl):
                runner(module, dtype)()
        calls[(loss, setting)] = call
    if flops:
        values, failures = {}, {}
        for key, call in calls.items():
            try:
                call()
                values[key] = count_gflop(call)
            except Exception as exc:  # noqa: BLE001
                values[key], failures[key] = None, exc
    else:
        named = {f"{a}|{b}": c for (a, b), c in calls.items()}
        timed, failed = time_interleaved(named, device, sizes.warmup, sizes.rounds)
        failures = {tuple(k.split("|")): v for k, v in failed.items()}
        values = {tuple(k.split("|")): v for k, v in timed.items()}
    vgg = next((v for (a, _), v in values.items() if a.startswith("VGG")), None)
    unit = "loss GFLOP" if flops else "loss ms"
    for key, value in values.items():
        row = dict(task=task, loss=key[0], setting=key[1], shape=shape)
        if value is None:
            row["error"] = _error(failures[key]) if key in failures else "failed"
        else:
            row[unit] = value
            row["ratio to step"] = value / step_value if step_value else None
            row["ratio to VGG"] = value / vgg if vgg else None
            if not flops:
                try:
                    row["peak MiB"] = peak_mib(calls[key], device)
                except Exception as exc:  # noqa: BLE001
                    row["error"] = _error(exc)
        rows.append(row)
    return rows


def run(device: torch.device, sizes: Sizes, tasks=TASKS, flops: bool = False,
        budget_s: float = 270.0) -> dict:
    """``{'steps': rows, 'losses': rows, ...}`` for the table (see the module's docstring)."""
    start = time.perf_counter()
    steps, losses = [], []
    holder: dict = {}
    with torchvision_mask_term(holder):
        for task in tasks:
            if time.perf_counter() - start > budget_s:
                steps.append(dict(task=task, variant="all", error=f"skipped: past the {budget_s:.0f} s budget"))
                continue
            try:
                section = _build_section(task, device, sizes, flops, holder)
            except Exception as exc:  # noqa: BLE001
                traceback.print_exc()
                steps.append(dict(task=task, variant="all", error=_error(exc)))
                section = None
            step_value = None
            if section is not None:
                if flops:
                    rows = flop_step_rows(section, holder)
                    key = "step GFLOP"
                else:
                    rows = step_rows(section, device, sizes, section.cudnn_benchmark, holder)
                    if task == "instance_masks" and device.type == "cuda":
                        # the same steps with cudnn.benchmark on (mmseg's default; users turn it on),
                        # with and without the ROI buckets of the random-CNN loss
                        extra = dict(section.steps)
                        if section.make_step is not None:
                            no_buckets = core_loss("instance_masks", "random_cnn", roi_buckets=False).to(device)
                            extra["+ random-CNN, no ROI buckets"] = section.make_step(no_buckets)
                        if time.perf_counter() - start < budget_s:
                            rows += step_rows(section, device, sizes, True, holder, extra)
                    key = "step ms"
                steps += rows
                step_value = next((r.get(key) for r in rows if r.get("variant") == "step alone"), None)
                del section
            if time.perf_counter() - start > budget_s:
                losses.append(dict(task=task, loss="all", error=f"skipped: past the {budget_s:.0f} s budget"))
            else:
                losses += loss_rows(task, device, sizes, step_value, flops)
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return dict(device=_device_name(device), torch=torch.__version__, mode="cpu-flops" if flops else "time",
                sizes=asdict(sizes), steps=steps, losses=losses, elapsed_s=time.perf_counter() - start,
                sync_counter=(sync_counter_works(device) if device.type == "cuda" else None))


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def markdown(result: dict) -> str:
    flops = result["mode"] == "cpu-flops"
    head = (f"Device: {result['device']}; torch {result['torch']}; "
            f"{'FLOPs (forward + backward) on the CPU' if flops else 'median of interleaved steps, CUDA events'}; "
            f"{result['elapsed_s']:.0f} s.")
    if not flops and result.get("sync_counter") is False:
        head += " The host-sync counter saw no warning for a known synchronisation: its column is n/a."
    steps = format_table(result["steps"], FLOP_STEP_COLUMNS if flops else STEP_COLUMNS)
    losses = format_table(result["losses"], FLOP_LOSS_COLUMNS if flops else LOSS_COLUMNS)
    return f"{head}\n\nTrain steps:\n\n{steps}\n\nThe losses alone (forward + backward):\n\n{losses}\n"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--cpu-flops", action="store_true",
                        help="count FLOPs (forward + backward) on the CPU instead of timing")
    parser.add_argument("--quick", action="store_true", help="toy sizes and rounds (what the tests run)")
    parser.add_argument("--tasks", nargs="+", type=names.task_name, choices=TASKS, default=list(TASKS),
                        help="tasks to run (earlier spellings sr, masks are accepted)")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per variant (default 10)")
    parser.add_argument("--stand-ins", action="store_true",
                        help="the torchvision / plain-PyTorch stand-ins even where a framework imports")
    parser.add_argument("--budget-s", type=float, default=270.0,
                        help="sections that would start after this many seconds are skipped (default 270)")
    parser.add_argument("--out", default=None, help="folder for the Markdown and JSON tables")
    args = parser.parse_args(argv)
    device = torch.device("cpu" if args.cpu_flops else args.device)
    sizes = QUICK if args.quick else Sizes()
    if args.rounds or args.stand_ins:
        sizes = Sizes(**{**asdict(sizes), "rounds": args.rounds or sizes.rounds,
                         "stand_ins": args.stand_ins})
    result = run(device, sizes, tuple(args.tasks), flops=args.cpu_flops, budget_s=args.budget_s)
    text = markdown(result)
    print(text)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        stem = "cpu_flops" if args.cpu_flops else "gpu"
        with open(os.path.join(args.out, f"{stem}.md"), "w") as f:
            f.write(text)
        with open(os.path.join(args.out, f"{stem}.json"), "w") as f:
            json.dump(result, f, indent=1, default=str)
    return result


if __name__ == "__main__":
    main()
