"""Demo stage: super-resolution through MMagic's runner on scikit-image's photographs, a small EDSR x2
trained with L1 against L1 + each loss (the one-line form of docs/mmagic.md for ``model.pixel_loss``, at its
defaults)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..datasets.sr_photos import make_sr_dataset, skimage_photos
from .runs import TrainJob, costly_first, seeded_jobs, select_arms, train_all, write_arm_configs

# mmagic's own EDSR x2 config, made small; its data roots, iterations and seed come from --cfg-options.
MODEL_CONFIG = """\
_base_ = 'mmagic::edsr/edsr_x2c64b16_1xb16-300k_div2k.py'

model = dict(generator=dict(mid_channels={width}, num_blocks={blocks}))
train_dataloader = dict(
    batch_size={batch_size}, num_workers=0,
    dataset=dict(pipeline=[
        dict(type='LoadImageFromFile', key='img', color_type='color', channel_order='rgb',
             imdecode_backend='cv2'),
        dict(type='LoadImageFromFile', key='gt', color_type='color', channel_order='rgb',
             imdecode_backend='cv2'),
        dict(type='SetValues', dictionary=dict(scale=2)),
        dict(type='PairedRandomCrop', gt_patch_size={gt_patch}),
        dict(type='Flip', keys=['img', 'gt'], flip_ratio=0.5, direction='horizontal'),
        dict(type='PackInputs'),
    ]))
val_dataloader = dict(num_workers=0, persistent_workers=False)
val_evaluator = dict(metrics=[dict(type='PSNR', crop_border=2), dict(type='SSIM', crop_border=2)])
train_cfg = dict(max_iters=100, val_interval=50)
# mmagic's Adam at 1e-4 is for 300k iterations; a few hundred need a larger step (the same for every arm)
optim_wrapper = dict(optimizer=dict(lr={lr}))
param_scheduler = dict(type='MultiStepLR', by_epoch=False, milestones=[100000], gamma=0.5)
default_hooks = dict(checkpoint=dict(interval=100, out_dir=None, max_keep_ckpts=1), logger=dict(interval=10))
custom_hooks = []
log_processor = dict(window_size=1)
randomness = dict(seed=0)
"""

# The arms: the baseline, and the one line for each loss (docs/mmagic.md), at its defaults.
ARMS = {
    "l1": "",
    "l1+gpl": "model = dict(pixel_loss=dict(type='randperc_plugins.mmagic.AddRandomCNNPerceptualLoss'))",
    "l1+patch_mmd": "model = dict(pixel_loss=dict(type='randperc_plugins.mmagic.AddPatchMMDLoss'))",
}

# scikit-image's photographs: the first three train (96x96 sub-images), the last validates (whole image)
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


@dataclass
class SRSettings:
    seeds: int
    iters: int
    val_interval: int
    gt_patch: int = 48  # training crops at the ground truth's resolution
    width: int = 16  # EDSR's mid_channels
    blocks: int = 4  # EDSR's residual blocks
    batch_size: int = 4
    lr: float = 1e-3
    log_interval: int = 10
    # fractions of `iters` where the learning rate halves (empty: constant, mmagic's milestone at 100k)
    lr_halvings: Tuple[float, ...] = ()
    arms: Optional[Tuple[str, ...]] = None  # names in ARMS, the baseline first (None: every arm)


def write_configs(root: str, settings: SRSettings, arms: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """Write the baseline config and one config per arm (baseline + its line; default ``ARMS``) into
    ``root``."""
    return write_arm_configs(root, "edsr_x2_photos", MODEL_CONFIG.format(
        width=settings.width, blocks=settings.blocks, batch_size=settings.batch_size,
        gt_patch=settings.gt_patch, lr=settings.lr), ARMS if arms is None else arms)


def selected_arms(names: Optional[Tuple[str, ...]]) -> Dict[str, str]:
    """``ARMS`` restricted to ``names`` (in that order; None: every arm)."""
    return select_arms(ARMS, names)


def prepare(work_root: str, settings: SRSettings,
            arms: Optional[Dict[str, str]] = None) -> Tuple[List[TrainJob], Dict[str, List[str]]]:
    """Write the data and the configs of ``arms`` (name -> config line; default: ``settings.arms`` of
    ``ARMS``); return the
    training jobs (every arm and seed) and the work dirs per arm."""
    data = make_sr_dataset(os.path.join(work_root, "data"), skimage_photos(PHOTOS), scales=(2,),
                           crop_size=96, num_val=1)
    configs = write_configs(os.path.join(work_root, "configs"), settings,
                            selected_arms(settings.arms) if arms is None else arms)
    milestones = [max(1, round(f * settings.iters)) for f in settings.lr_halvings]
    schedule = [f"param_scheduler.milestones=[{','.join(map(str, milestones))}]"] if milestones else []
    return seeded_jobs(work_root, configs, settings.seeds, schedule + [
        f"train_dataloader.dataset.data_root={data}/DIV2K", f"val_dataloader.dataset.data_root={data}/Set5",
        f"train_cfg.max_iters={settings.iters}", f"train_cfg.val_interval={settings.val_interval}",
        f"default_hooks.checkpoint.interval={settings.iters}",
        f"default_hooks.logger.interval={settings.log_interval}"])


def run(work_root: str, settings: SRSettings, parallel: int,
        device: Optional[str] = None) -> Tuple[Dict[str, List[str]], Dict[str, float]]:
    """Write the data and configs, train every arm and seed (on ``device``: see ``runs.training_env``);
    return the work dirs per arm and ``runs.train_all``'s times (wall, summed CPU)."""
    jobs, work_dirs = prepare(work_root, settings)
    times = train_all(costly_first(jobs, work_dirs), parallel, desc="super-resolution runs", device=device)
    return work_dirs, times


def validation_pair(data_root: str) -> Tuple[np.ndarray, np.ndarray]:
    """The validation photograph's ground truth and its x2 input (uint8 RGB), as the runs validate on."""
    import glob

    from PIL import Image

    gt_path = sorted(glob.glob(os.path.join(data_root, "Set5", "GTmod12", "*.png")))[0]
    gt = np.asarray(Image.open(gt_path).convert("RGB"))
    lq = np.asarray(Image.open(gt_path.replace("GTmod12", "LRbicx2")).convert("RGB"))
    return gt, lq


def bicubic_upsample(lq: np.ndarray) -> np.ndarray:
    """``lq`` upsampled x2 bicubically (MATLAB's ``imresize``, as the inputs were downsampled), uint8."""
    from mmagic.datasets.transforms import MATLABLikeResize

    up = MATLABLikeResize(keys=["img"], scale=2.0)({"img": lq.astype(np.float64) / 255.0})["img"]
    return np.around(np.clip(up, 0.0, 1.0) * 255).astype(np.uint8)


def image_metrics(output: np.ndarray, gt: np.ndarray) -> Dict[str, float]:
    """PSNR and SSIM of ``output`` against ``gt`` as the runs' validation computes them (mmagic's
    ``psnr`` and ``ssim`` on RGB, ``crop_border=2``)."""
    from mmagic.evaluation.metrics.psnr import psnr
    from mmagic.evaluation.metrics.ssim import ssim

    return dict(PSNR=float(psnr(gt, output, crop_border=2, input_order="HWC")),
                SSIM=float(ssim(gt, output, crop_border=2, input_order="HWC")))


def bicubic_reference(data_root: str) -> Dict[str, float]:
    """PSNR and SSIM of bicubic upsampling on the validation photograph: what a trained model must beat."""
    gt, lq = validation_pair(data_root)
    return image_metrics(bicubic_upsample(lq), gt)


def predict_validation(work_dirs: Dict[str, List[str]], data_root: str, seed: int = 0) -> Dict[str, np.ndarray]:
    """Each arm's output (run ``seed``, final checkpoint) on the whole validation photograph, uint8 RGB."""
    import glob

    import torch
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmagic.registry import MODELS

    _, lq = validation_pair(data_root)
    outputs = {}
    init_default_scope("mmagic")
    for arm, dirs in work_dirs.items():
        config = sorted(glob.glob(os.path.join(dirs[seed], "*.py")))[0]  # the config the runner dumped
        checkpoint = sorted(glob.glob(os.path.join(dirs[seed], "iter_*.pth")),
                            key=lambda p: int(p.rsplit("_", 1)[1][:-4]))[-1]
        generator = MODELS.build(Config.fromfile(config).model.generator).eval()
        # Our own checkpoint, which holds mmengine's message-hub objects: torch>=2.6's weights_only
        # loading refuses them.
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
        generator.load_state_dict({k[len("generator."):]: v for k, v in state.items()
                                   if k.startswith("generator.")}, strict=True)
        with torch.no_grad():  # the data preprocessor's normalisation: [0, 255] -> [0, 1]
            x = torch.from_numpy(lq.copy()).permute(2, 0, 1)[None].float() / 255.0
            y = generator(x)[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
        outputs[arm] = y
    return outputs


def differing_crops(outputs: Dict[str, np.ndarray], size: int, count: int) -> List[tuple]:
    """Top-left corners (even) of ``count`` non-overlapping ``size`` crops where the arms' outputs differ
    most: the largest mean absolute difference of any arm from the first (the baseline)."""
    images = [o.astype(np.float32) for o in outputs.values()]
    h, w = images[0].shape[:2]
    step = max(2, size // 4) // 2 * 2
    candidates = []
    for top in range(0, h - size + 1, step):
        for left in range(0, w - size + 1, step):
            window = (slice(top, top + size), slice(left, left + size))
            score = max((float(np.abs(o[window] - images[0][window]).mean()) for o in images[1:]), default=0.0)
            candidates.append((score, top, left))
    chosen: List[tuple] = []
    for score, top, left in sorted(candidates, key=lambda c: (-c[0], c[1], c[2])):
        if all(abs(top - t) >= size or abs(left - l) >= size for t, l in chosen):
            chosen.append((top, left))
        if len(chosen) == count:
            break
    return chosen


def side_by_side(work_dirs: Dict[str, List[str]], data_root: str, out_path: str, samples: int = 3,
                 crop: int = 64) -> str:
    """For the ``samples`` crops of the validation photograph where the arms' outputs differ most: the
    input upsampled (bicubic), each arm's output (seed 0, final checkpoint) and the ground truth, in one
    PNG; each panel is titled with its PSNR against the ground truth on the crop."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from skimage.metrics import peak_signal_noise_ratio

    gt, lq = validation_pair(data_root)
    outputs = predict_validation(work_dirs, data_root)
    upsampled = bicubic_upsample(lq)
    columns = ["input (bicubic x2)"] + [f"{arm} (seed 0)" for arm in work_dirs] + ["ground truth"]
    fig, axes = plt.subplots(samples, len(columns), figsize=(1.9 * len(columns), 2.1 * samples), dpi=90,
                             squeeze=False)
    for row, (top, left) in enumerate(differing_crops(outputs, crop, samples)):
        window = (slice(top, top + crop), slice(left, left + crop))
        panels = [upsampled[window]] + [outputs[arm][window] for arm in work_dirs] + [gt[window]]
        for col, panel in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(panel, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            title = columns[col] + "\n" if row == 0 else ""
            if col < len(panels) - 1:
                title += f"{peak_signal_noise_ratio(gt[window], panel, data_range=255):.2f} dB"
            else:
                title += f"at ({top}, {left})"
            ax.set_title(title, fontsize=7)
    fig.tight_layout()
    fig.savefig(out_path)
    plt.close(fig)
    return out_path
