"""Detectron2 baselines from its own model zoo, with the one-line head swap, and tiny batches to train them
(``tools/benchmark.py detectron2-step`` and the tests).

Nothing is downloaded (``MODEL.WEIGHTS`` / ``train.init_checkpoint`` are emptied) and the models run on
the CPU. Imports detectron2 inside the functions. Config files (``tools/train_net.py``'s) are read by
:mod:`randperc_plugins.detectron2_config`.

    model_zoo_config(name, mask_head=None)   a YAML CfgNode or a LazyConfig from detectron2's model zoo
    few_rois(cfg, rois)                      fewer sampled ROIs per image (CPU tests of whole models)
    build_model(cfg)                         the model of either config form
    d2_batch(size, num_images, ...)          training inputs: images and instances with polygon masks
    d2_train_step(model, batch, optimizer)   one forward + backward (+ step) inside an EventStorage
"""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch

from ..detectron2_config import is_lazy_config

#: The one-line head swap, by loss: the value of ``MODEL.ROI_MASK_HEAD.NAME`` (YAML) and, under the
#: module's path, of ``model.roi_heads.mask_head._target_`` (LazyConfig).
MASK_HEADS = {"gpl": "MaskRCNNConvUpsampleHeadWithGPL",
              "patch_mmd": "MaskRCNNConvUpsampleHeadWithPatchMMD"}
HEAD_MODULE = "randperc_plugins.detectron2"


def set_mask_head(cfg, loss: Optional[str]):
    """Apply the one-line head swap for ``loss`` (``'gpl'``, ``'patch_mmd'`` or None) to either config form."""
    if loss is None:
        return cfg
    if loss not in MASK_HEADS:
        raise ValueError(f"`loss` must be one of {tuple(MASK_HEADS)} or None, got {loss!r}")
    if hasattr(cfg, "MODEL"):  # YAML CfgNode
        cfg.MODEL.ROI_MASK_HEAD.NAME = MASK_HEADS[loss]
    else:
        cfg.model.roi_heads.mask_head._target_ = f"{HEAD_MODULE}.{MASK_HEADS[loss]}"
    return cfg


def model_zoo_config(name: str, mask_head: Optional[str] = None):
    """Config ``name`` of detectron2's model zoo (``'COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml'``
    or a ``.py`` LazyConfig) for the CPU without weights, with the mask head of ``mask_head`` if given.
    """
    from detectron2 import model_zoo
    from detectron2.config import get_cfg

    from ..detectron2 import add_randperc_config

    if is_lazy_config(name):
        cfg = model_zoo.get_config(name)
        cfg.train.init_checkpoint = ""
        cfg.train.device = "cpu"
    else:
        cfg = add_randperc_config(get_cfg())
        cfg.merge_from_file(model_zoo.get_config_file(name))
        cfg.MODEL.WEIGHTS = ""
        cfg.MODEL.DEVICE = "cpu"
    return set_mask_head(cfg, mask_head)


def few_rois(cfg, rois: int = 32):
    """Sample ``rois`` ROIs per image for the heads (COCO configs: 512) and keep ``2 * rois`` RPN
    proposals: the same model, a CPU step seconds instead of a minute."""
    if hasattr(cfg, "MODEL"):
        cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = rois
        cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = 2 * rois
    else:
        cfg.model.roi_heads.batch_size_per_image = rois
        cfg.model.proposal_generator.post_nms_topk = (2 * rois, cfg.model.proposal_generator.post_nms_topk[1])
    return cfg


def build_model(cfg):
    """The model of a YAML ``CfgNode`` (``build_model``) or a LazyConfig (``instantiate(cfg.model)``)."""
    if hasattr(cfg, "MODEL"):
        from detectron2.modeling import build_model as build
        return build(cfg)
    from detectron2.config import instantiate
    return instantiate(cfg.model)


def _ellipse(cx: float, cy: float, rx: float, ry: float, points: int = 16) -> List[float]:
    out = []
    for k in range(points):
        angle = 2 * math.pi * k / points
        out += [cx + rx * math.cos(angle), cy + ry * math.sin(angle)]
    return out


def d2_batch(size: Tuple[int, int] = (128, 128), num_images: int = 2, num_instances: int = 3,
             num_classes: int = 80, seed: int = 0) -> list:
    """Detectron2 training inputs: ``num_images`` dicts with a ``(3, H, W)`` image and ``Instances``
    of ``num_instances`` ellipses (``gt_boxes``, ``gt_classes``, polygon ``gt_masks`` as COCO gives).
    """
    from detectron2.structures import Boxes, Instances, PolygonMasks

    g = torch.Generator().manual_seed(seed)
    h, w = size
    batch = []
    for _ in range(num_images):
        image = torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8)
        polygons, boxes = [], []
        for _ in range(num_instances):
            rx, ry = (float(v) for v in torch.empty(2).uniform_(0.1, 0.25, generator=g) * torch.tensor([w, h]))
            cx = float(torch.empty(()).uniform_(rx + 1, w - rx - 1, generator=g))
            cy = float(torch.empty(()).uniform_(ry + 1, h - ry - 1, generator=g))
            polygons.append([_ellipse(cx, cy, rx, ry)])
            boxes.append([cx - rx, cy - ry, cx + rx, cy + ry])
        instances = Instances((h, w))
        instances.gt_boxes = Boxes(torch.tensor(boxes))
        instances.gt_classes = torch.randint(0, num_classes, (num_instances,), generator=g)
        instances.gt_masks = PolygonMasks(polygons)
        batch.append({"image": image, "height": h, "width": w, "instances": instances})
    return batch


def d2_train_step(model, batch: list, optimizer: Optional[torch.optim.Optimizer] = None) -> dict:
    """One training step inside an ``EventStorage`` (detectron2's losses log into one). Returns the
    loss dict; the sum of its values is back-propagated, as detectron2's trainers do."""
    from detectron2.utils.events import EventStorage

    model.train()
    with EventStorage():
        losses = model(batch)
        sum(losses.values()).backward()
    if optimizer is not None:
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return losses
