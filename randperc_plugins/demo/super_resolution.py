"""Demo stage: super-resolution through MMagic's runner on scikit-image's photographs, a small EDSR x2
trained with L1 against L1 + each loss (the README's one-line form for ``model.pixel_loss``, at its
defaults)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..datasets.sr_photos import make_sr_dataset, skimage_photos
from .runs import TrainJob, seeded_jobs, train_all, write_arm_configs

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

# The arms: the baseline, and the README's one line for each loss, at its defaults.
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


def write_configs(root: str, settings: SRSettings, arms: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """Write the baseline config and one config per arm (baseline + its line; default ``ARMS``) into
    ``root``."""
    return write_arm_configs(root, "edsr_x2_photos", MODEL_CONFIG.format(
        width=settings.width, blocks=settings.blocks, batch_size=settings.batch_size,
        gt_patch=settings.gt_patch, lr=settings.lr), ARMS if arms is None else arms)


def prepare(work_root: str, settings: SRSettings,
            arms: Optional[Dict[str, str]] = None) -> Tuple[List[TrainJob], Dict[str, List[str]]]:
    """Write the data and the configs of ``arms`` (default ``ARMS``: name -> config line); return the
    training jobs (every arm and seed) and the work dirs per arm."""
    data = make_sr_dataset(os.path.join(work_root, "data"), skimage_photos(PHOTOS), scales=(2,),
                           crop_size=96, num_val=1)
    configs = write_configs(os.path.join(work_root, "configs"), settings, arms)
    return seeded_jobs(work_root, configs, settings.seeds, [
        f"train_dataloader.dataset.data_root={data}/DIV2K", f"val_dataloader.dataset.data_root={data}/Set5",
        f"train_cfg.max_iters={settings.iters}", f"train_cfg.val_interval={settings.val_interval}",
        f"default_hooks.checkpoint.interval={settings.iters}",
        f"default_hooks.logger.interval={settings.log_interval}"])


def run(work_root: str, settings: SRSettings, parallel: int) -> Dict[str, List[str]]:
    """Write the data and configs, train every arm and seed; return the work dirs per arm."""
    jobs, work_dirs = prepare(work_root, settings)
    train_all(jobs, parallel, desc="super-resolution runs")
    return work_dirs


def _crop_corners(shape, size: int, count: int) -> List[tuple]:
    # evenly spaced along the diagonal, at even coordinates (so the x2 input crop is exact)
    h, w = shape[:2]
    return [(int(t) // 2 * 2, int(l) // 2 * 2) for t, l in zip(np.linspace(0, h - size, count + 2)[1:-1],
                                                               np.linspace(0, w - size, count + 2)[1:-1])]


def side_by_side(work_dirs: Dict[str, List[str]], data_root: str, out_path: str, samples: int = 3,
                 crop: int = 64) -> str:
    """For ``samples`` crops of the validation photograph: the input upsampled (bicubic), each arm's
    output (seed 0, final checkpoint) and the ground truth, in one PNG; each panel is titled with its
    PSNR against the ground truth on the crop."""
    import glob

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmagic.registry import MODELS
    from PIL import Image
    from skimage.metrics import peak_signal_noise_ratio

    gt_path = sorted(glob.glob(os.path.join(data_root, "Set5", "GTmod12", "*.png")))[0]
    gt = np.asarray(Image.open(gt_path).convert("RGB"))
    lq = np.asarray(Image.open(gt_path.replace("GTmod12", "LRbicx2")).convert("RGB"))
    outputs = {}
    init_default_scope("mmagic")
    for arm, dirs in work_dirs.items():
        config = sorted(glob.glob(os.path.join(dirs[0], "*.py")))[0]  # the config the runner dumped
        checkpoint = sorted(glob.glob(os.path.join(dirs[0], "iter_*.pth")),
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
    upsampled = np.asarray(Image.fromarray(lq).resize((gt.shape[1], gt.shape[0]), Image.BICUBIC))
    columns = ["input (bicubic x2)"] + [f"{arm} (seed 0)" for arm in work_dirs] + ["ground truth"]
    fig, axes = plt.subplots(samples, len(columns), figsize=(1.9 * len(columns), 2.1 * samples), dpi=90,
                             squeeze=False)
    for row, (top, left) in enumerate(_crop_corners(gt.shape, crop, samples)):
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
            ax.set_title(title, fontsize=7)
    fig.tight_layout()
    fig.savefig(out_path)
    plt.close(fig)
    return out_path
