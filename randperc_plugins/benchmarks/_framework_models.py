"""Baseline models built from the frameworks' own shipped configs, with inputs, for smoke runs and benchmarks.

Nothing is downloaded: backbones keep their random initialisation (``init_weights`` is never called),
and SyncBN becomes BN so that a single process can run them on the CPU.

    build_pspnet_r50(size) / seg_batch(model, size, batch)       mmseg  pspnet_r50-d8 Cityscapes
    build_edsr(scale=4)    / sr_batch(model, lq_size, batch)     mmagic edsr_x{2,3,4}c64b16 DIV2K
    build_mask_rcnn(mask_loss) / det_batch(model, size)          mmdet  mask-rcnn_r50_fpn_1x COCO
    train_step(model, data, optimizer)                           one forward + backward + step
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch

PSPNET_CONFIG = "mmseg::pspnet/pspnet_r50-d8_4xb2-80k_cityscapes-512x1024.py"
EDSR_CONFIG = "mmagic::edsr/edsr_x4c64b16_1xb16-300k_div2k.py"
MASK_RCNN_CONFIG = "mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py"


def bn_instead_of_syncbn(node):
    """Replace every ``SyncBN`` in a config dict (in place): SyncBN needs a process group."""
    if isinstance(node, dict):
        if node.get("type") == "SyncBN":
            node["type"] = "BN"
        for value in node.values():
            bn_instead_of_syncbn(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            bn_instead_of_syncbn(value)
    return node


def load_config(config: str):
    """A config from a file path, or from a framework's shipped configs (``'mmseg::pspnet/...py'``)."""
    from mmengine.config import Config

    if "::" in config:  # only `_base_` resolves the package-scoped form
        return Config.fromstring(f"_base_ = {config!r}\n", ".py")
    return Config.fromfile(config)


def _build(config: str, scope: str, model_overrides: Optional[dict] = None):
    from mmengine.registry import init_default_scope

    cfg = load_config(config)
    if model_overrides:
        cfg.merge_from_dict({f"model.{k}": v for k, v in model_overrides.items()})
    init_default_scope(scope)
    model_cfg = bn_instead_of_syncbn(cfg.model)
    if scope == "mmseg":
        from mmseg.registry import MODELS
    elif scope == "mmagic":
        from mmagic.registry import MODELS
    else:
        from mmdet.registry import MODELS
    return MODELS.build(model_cfg)


def build_pspnet_r50(size: Tuple[int, int] = (512, 1024), decode_loss: Optional[dict] = None):
    """PSPNet-R50-D8 from mmseg's Cityscapes config, padding inputs to ``size``.

    ``decode_loss`` replaces the decode head's ``loss_decode`` when given.
    """
    overrides = {"data_preprocessor.size": tuple(size)}
    if decode_loss is not None:
        overrides["decode_head.loss_decode"] = decode_loss
    return _build(PSPNET_CONFIG, "mmseg", overrides)


def seg_batch(model, size: Tuple[int, int] = (512, 1024), batch: int = 2, num_classes: int = 19,
              seed: int = 0):
    """A preprocessed mmseg train batch of random images and label maps with a void band."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    g = torch.Generator().manual_seed(seed)
    samples = []
    for _ in range(batch):
        label = torch.randint(0, num_classes, (1, *size), generator=g)
        label[:, : max(1, size[0] // 32)] = 255
        sample = SegDataSample(gt_sem_seg=PixelData(data=label))
        sample.set_metainfo(dict(img_shape=tuple(size), pad_shape=tuple(size), ori_shape=tuple(size)))
        samples.append(sample)
    inputs = [torch.randint(0, 256, (3, *size), generator=g, dtype=torch.uint8) for _ in range(batch)]
    return model.data_preprocessor(dict(inputs=inputs, data_samples=samples), True)


def build_edsr(pixel_loss: Optional[dict] = None, scale: int = 4):
    """EDSR x``scale`` (64 channels, 16 blocks) from mmagic's DIV2K config; ``pixel_loss`` replaces its L1."""
    if scale not in (2, 3, 4):
        raise ValueError(f"`scale` must be 2, 3 or 4 (mmagic's EDSR DIV2K configs), got {scale!r}")
    overrides = {"pixel_loss": pixel_loss} if pixel_loss is not None else None
    return _build(EDSR_CONFIG.replace("_x4", f"_x{scale}"), "mmagic", overrides)


def sr_batch(model, lq_size: int = 24, batch: int = 16, scale: int = 4, seed: int = 0):
    """A preprocessed mmagic train batch: low-quality inputs and ground truths ``scale`` times larger."""
    from mmagic.structures import DataSample

    g = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for _ in range(batch):
        gt = torch.randint(0, 256, (3, lq_size * scale, lq_size * scale), generator=g).float()
        lq = torch.nn.functional.avg_pool2d(gt[None], scale)[0]
        inputs.append(lq)
        samples.append(DataSample(gt_img=gt))
    return model.data_preprocessor(dict(inputs=inputs, data_samples=samples), True)


def build_mask_rcnn(mask_loss: Optional[dict] = None):
    """Mask R-CNN R50-FPN from mmdet's COCO 1x config; ``mask_loss`` replaces the mask head's loss."""
    overrides = {"roi_head.mask_head.loss_mask": mask_loss} if mask_loss is not None else None
    return _build(MASK_RCNN_CONFIG, "mmdet", overrides)


def det_batch(model, size: Tuple[int, int] = (128, 160), batch: int = 1, seed: int = 0,
              num_instances: int = 2):
    """A preprocessed mmdet train batch with ``num_instances`` boxes and their masks per image.

    Two fixed boxes, plus randomly placed ones (classes 0 and 1 alternating) beyond two. mmdet's
    sampler adds the ground truths to the proposals, so the mask head sees at least ``num_instances``
    positive ROIs per image even with an untrained RPN.
    """
    import numpy as np
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData

    g = torch.Generator().manual_seed(seed)
    h, w = size
    inputs, samples = [], []
    for _ in range(batch):
        inputs.append(torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8))
        boxes = [[8.0, 8.0, w / 2, h / 2], [w / 3, h / 3, w - 8.0, h - 8.0]]
        for _ in range(num_instances - 2):
            x1, y1 = (torch.rand(2, generator=g) * torch.tensor([w * 0.7, h * 0.7])).tolist()
            bw, bh = (torch.rand(2, generator=g) * 0.25 + 0.05).tolist()
            boxes.append([x1, y1, min(w - 1.0, x1 + bw * w), min(h - 1.0, y1 + bh * h)])
        boxes = torch.tensor(boxes[:num_instances])
        masks = np.zeros((len(boxes), h, w), np.uint8)
        for i, (x1, y1, x2, y2) in enumerate(boxes.int().tolist()):
            masks[i, y1:y2, x1:x2] = 1
        sample = DetDataSample()
        sample.set_metainfo(dict(img_shape=size, pad_shape=size, ori_shape=size, scale_factor=(1.0, 1.0)))
        sample.gt_instances = InstanceData(bboxes=boxes, labels=torch.arange(len(boxes)) % 2,
                                           masks=BitmapMasks(masks, h, w))
        samples.append(sample)
    return model.data_preprocessor(dict(inputs=inputs, data_samples=samples), True)


def to_device(data: dict, device) -> dict:
    """A preprocessed batch (``inputs`` tensor, ``data_samples`` list) moved to ``device``.

    mmagic's preprocessor stacks the samples into one ``DataSample``, moved as a whole.
    """
    samples = data["data_samples"]
    samples = [s.to(device) for s in samples] if isinstance(samples, list) else samples.to(device)
    return {"inputs": data["inputs"].to(device), "data_samples": samples}


def total_loss(losses: dict) -> torch.Tensor:
    """Sum the entries mmengine would back-propagate (keys containing 'loss'; lists are summed)."""
    total = 0
    for key, value in losses.items():
        if "loss" in key:
            total = total + (sum(v.mean() for v in value) if isinstance(value, Sequence) else value.mean())
    return total


def train_step(model, data: dict, optimizer: Optional[torch.optim.Optimizer] = None) -> dict:
    """One training step: loss, backward and (if given) an optimizer step. Returns the loss dict."""
    model.train()
    losses = model(data["inputs"], data["data_samples"], mode="loss")
    total_loss(losses).backward()
    if optimizer is not None:
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return losses
