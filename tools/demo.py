"""Offline demo: build each framework's baseline from its own shipped config and run it once on the CPU.

    python tools/demo.py

Needs no network and no dataset: models keep their random initialisation and inputs are synthetic.
"""
from __future__ import annotations

import time
import warnings

import torch

from randperc_plugins.utils import framework_models as fm

# The pinned frameworks warn about their own deprecations on import; the demo's output is its results.
warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=UserWarning)
warnings.filterwarnings("ignore", category=DeprecationWarning)


def _timed(name, fn):
    start = time.perf_counter()
    result = fn()
    print(f"{name:<28s} {result}  ({time.perf_counter() - start:.1f} s)")


def main():
    torch.set_grad_enabled(False)

    def pspnet():
        model = fm.build_pspnet_r50(size=(128, 256)).eval()
        data = fm.seg_batch(model, size=(128, 256), batch=1)
        return f"logits {tuple(model(data['inputs'], data['data_samples'], mode='tensor').shape)}"

    def edsr():
        model = fm.build_edsr().eval()
        data = fm.sr_batch(model, lq_size=32, batch=1)
        return f"x4 output {tuple(model(data['inputs'], data['data_samples'], mode='tensor').shape)}"

    def mask_rcnn():
        model = fm.build_mask_rcnn().train()
        data = fm.det_batch(model, size=(256, 320))
        losses = model(data["inputs"], data["data_samples"], mode="loss")
        return f"loss_mask {float(losses['loss_mask']):.3f}"

    _timed("mmseg PSPNet-R50-D8", pspnet)
    _timed("mmagic EDSR x4", edsr)
    _timed("mmdet Mask R-CNN R50-FPN", mask_rcnn)


if __name__ == "__main__":
    main()
