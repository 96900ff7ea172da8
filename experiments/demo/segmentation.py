"""Demo stage: semantic segmentation through MMSegmentation's runner on scenes with thin structures,
cross-entropy against cross-entropy + each loss (the one-line form of docs/mmseg.md at its defaults)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..datasets.seg_scenes import THIN_SCENE_CLASSES, THIN_SCENE_PALETTE, make_thin_scenes_dataset
from .runs import TrainJob, costly_first, seeded_jobs, select_arms, train_all, write_arm_configs

# A small FCN (ResNet-18-shaped, 8 channels wide, output stride 8) in mmseg's config format. Its data
# root, iterations and seed come from --cfg-options.
MODEL_CONFIG = """\
default_scope = 'mmseg'
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(type='SegDataPreProcessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_val=0, seg_pad_val=255,
                           size=({size}, {size})),
    backbone=dict(type='ResNetV1c', depth=18, stem_channels=16, base_channels=8, num_stages=4,
                  out_indices=(0, 1, 2, 3), dilations=(1, 1, 2, 4), strides=(1, 2, 1, 1),
                  norm_cfg=norm_cfg, contract_dilation=True),
    decode_head=dict(type='FCNHead', in_channels=64, in_index=3, channels=32, num_convs=1,
                     concat_input=True, dropout_ratio=0.1, num_classes={num_classes}, norm_cfg=norm_cfg,
                     align_corners=False,
                     loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(), test_cfg=dict(mode='whole'))
metainfo = dict(classes={classes!r}, palette={palette!r})
_dataset = dict(type='BaseSegDataset', data_root='', metainfo=metainfo, img_suffix='.png',
                seg_map_suffix='.png')
train_dataloader = dict(
    batch_size=4, num_workers=0, sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(**_dataset, data_prefix=dict(img_path='img_dir/train', seg_map_path='ann_dir/train'),
                 pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
                           dict(type='RandomFlip', prob=0.5), dict(type='PackSegInputs')]))
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'), dict(type='PackSegInputs')]
val_dataloader = dict(
    batch_size=1, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(**_dataset, data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=0.0005))
param_scheduler = [dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=100, by_epoch=False)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=100, val_interval=50)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=10, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=100, max_keep_ckpts=1),
    sampler_seed=dict(type='DistSamplerSeedHook'))
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='gloo'))
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='SegLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0)
"""

# The arms: the baseline, and the one line for each loss (docs/mmseg.md), at its defaults.
ARMS = {
    "ce": "",
    "ce+gpl": "model = dict(decode_head=dict(loss_decode=dict("
              "type='randperc_plugins.mmseg.AddRandomCNNPerceptualLoss')))",
    "ce+patch_mmd": "model = dict(decode_head=dict(loss_decode=dict("
                    "type='randperc_plugins.mmseg.AddPatchMMDLoss')))",
}


@dataclass
class SegSettings:
    seeds: int
    iters: int
    val_interval: int
    num_train: int
    num_val: int
    size: int = 64
    log_interval: int = 10
    lr: float = 0.05  # SGD's learning rate (momentum 0.9, polynomial decay to 1e-4 over `iters`)
    batch_size: int = 4
    crop: Optional[int] = None  # train on random crops of this side (None: whole scenes); validate on whole
    arms: Optional[Tuple[str, ...]] = None  # names in ARMS, the baseline first (None: every arm)


def write_configs(root: str, size: int, arms: Optional[Dict[str, str]] = None,
                  crop: Optional[int] = None) -> Dict[str, str]:
    """Write the baseline config (training on random ``crop`` x ``crop`` crops when given) and one config
    per arm (baseline + its line; default ``ARMS``) into ``root``."""
    text = MODEL_CONFIG.format(size=size if crop is None else crop, num_classes=len(THIN_SCENE_CLASSES),
                               classes=THIN_SCENE_CLASSES, palette=[list(c) for c in THIN_SCENE_PALETTE])
    if crop is not None:  # the crop in the training pipeline; the training batch is padded to the crop
        if not 8 <= crop <= size:
            raise ValueError(f"`crop` must be in [8, size={size}], got {crop}")
        flip = "dict(type='RandomFlip', prob=0.5)"
        assert text.count(flip) == 1
        text = text.replace(flip, f"dict(type='RandomCrop', crop_size=({crop}, {crop})), {flip}")
    return write_arm_configs(root, "fcn_thin_scenes", text, ARMS if arms is None else arms)


def selected_arms(names: Optional[Tuple[str, ...]]) -> Dict[str, str]:
    """``ARMS`` restricted to ``names`` (in that order; None: every arm)."""
    return select_arms(ARMS, names)


def prepare(work_root: str, settings: SegSettings,
            arms: Optional[Dict[str, str]] = None) -> Tuple[List[TrainJob], Dict[str, List[str]]]:
    """Write the data and the configs of ``arms`` (name -> config line; default: ``settings.arms`` of
    ``ARMS``); return the
    training jobs (every arm and seed) and the work dirs per arm."""
    data = make_thin_scenes_dataset(os.path.join(work_root, "data"), settings.num_train, settings.num_val,
                                    settings.size)
    configs = write_configs(os.path.join(work_root, "configs"), settings.size,
                            selected_arms(settings.arms) if arms is None else arms, settings.crop)
    return seeded_jobs(work_root, configs, settings.seeds, [
        f"train_dataloader.dataset.data_root={data}", f"val_dataloader.dataset.data_root={data}",
        f"train_cfg.max_iters={settings.iters}", f"train_cfg.val_interval={settings.val_interval}",
        f"param_scheduler.0.end={settings.iters}", f"default_hooks.checkpoint.interval={settings.iters}",
        f"default_hooks.logger.interval={settings.log_interval}",
        f"optim_wrapper.optimizer.lr={settings.lr}", f"train_dataloader.batch_size={settings.batch_size}"])


def run(work_root: str, settings: SegSettings, parallel: int,
        device: Optional[str] = None) -> Tuple[Dict[str, List[str]], Dict[str, float]]:
    """Write the data and configs, train every arm and seed (on ``device``: see ``runs.training_env``);
    return the work dirs per arm and ``runs.train_all``'s times (wall, summed CPU)."""
    jobs, work_dirs = prepare(work_root, settings)
    times = train_all(costly_first(jobs, work_dirs), parallel, desc="segmentation runs", device=device)
    return work_dirs, times


def colourise(label: np.ndarray) -> np.ndarray:
    palette = np.array(THIN_SCENE_PALETTE + [(255, 255, 255)] * (256 - len(THIN_SCENE_PALETTE)), np.uint8)
    return palette[label]


THIN_CLASSES = ("line", "blob")


def predict_validation(work_dirs: Dict[str, List[str]], data_root: str, seed: int = 0) -> tuple:
    """``(image paths, {arm: [prediction per image]})``: each arm's predictions (run ``seed``, final
    checkpoint) on every validation scene."""
    import glob

    import torch
    from mmseg.apis import inference_model, init_model

    images = sorted(glob.glob(os.path.join(data_root, "img_dir", "val", "*.png")))
    predictions = {}
    for arm, dirs in work_dirs.items():
        config = sorted(glob.glob(os.path.join(dirs[seed], "*.py")))[0]  # the config the runner dumped
        checkpoint = sorted(glob.glob(os.path.join(dirs[seed], "iter_*.pth")),
                            key=lambda p: int(p.rsplit("_", 1)[1][:-4]))[-1]
        model = init_model(config, device="cpu")
        # Our own checkpoint, which holds mmengine's message-hub objects: torch>=2.6's weights_only
        # loading (what mmengine's loader uses by default) refuses them.
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
        model.load_state_dict(state, strict=True)
        predictions[arm] = [inference_model(model, path).pred_sem_seg.data[0].numpy().astype(np.uint8)
                            for path in images]
    return images, predictions


def thin_disagreement(predictions: List[np.ndarray], truth: np.ndarray) -> int:
    """Pixels of a scene where the thin classes are at stake and the arms disagree: some arm predicts a
    thin class there, or the ground truth is one, and not every arm predicts the same class."""
    thin = [THIN_SCENE_CLASSES.index(c) for c in THIN_CLASSES]
    stacked = np.stack(predictions)
    at_stake = np.isin(truth, thin) | np.isin(stacked, thin).any(axis=0)
    disagree = (stacked != stacked[0]).any(axis=0)
    return int((at_stake & disagree & (truth != 255)).sum())


def _iou(prediction: np.ndarray, truth: np.ndarray, cls: int) -> float:
    valid = truth != 255
    union = ((prediction == cls) | (truth == cls)) & valid
    return float(((prediction == cls) & (truth == cls) & valid).sum() / union.sum()) if union.any() else float("nan")


def side_by_side(work_dirs: Dict[str, List[str]], data_root: str, out_path: str, samples: int = 4) -> str:
    """Input, each arm's prediction (seed 0, final checkpoint) and the ground truth for the ``samples``
    validation scenes where the arms' predictions differ most on the thin classes
    (:func:`thin_disagreement`), in one PNG; each prediction is titled with its line IoU on the scene."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    images, predictions = predict_validation(work_dirs, data_root)
    truths = [np.asarray(Image.open(path.replace("img_dir", "ann_dir"))) for path in images]
    scores = [thin_disagreement([predictions[arm][i] for arm in work_dirs], truths[i]) for i in range(len(images))]
    chosen = sorted(range(len(images)), key=lambda i: (-scores[i], i))[:samples]
    line = THIN_SCENE_CLASSES.index("line")
    columns = ["input"] + [f"{arm} (seed 0)" for arm in work_dirs] + ["ground truth"]
    fig, axes = plt.subplots(len(chosen), len(columns), figsize=(1.9 * len(columns), 2.0 * len(chosen)),
                             dpi=90, squeeze=False)
    for row, index in enumerate(chosen):
        truth = truths[index]
        panels = [np.asarray(Image.open(images[index]))] \
            + [colourise(predictions[arm][index]) for arm in work_dirs] + [colourise(truth)]
        for col, panel in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(panel, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            title = columns[col] + "\n" if row == 0 else ""
            if 0 < col < len(panels) - 1:
                title += f"line IoU {100 * _iou(predictions[list(work_dirs)[col - 1]][index], truth, line):.1f}"
            elif col == 0:
                title += os.path.basename(images[index])
            ax.set_title(title, fontsize=7)
    fig.tight_layout()
    fig.savefig(out_path)
    plt.close(fig)
    return out_path
