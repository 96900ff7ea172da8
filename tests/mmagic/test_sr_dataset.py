"""The SR dataset writer: mmagic's DIV2K layout, bicubic inputs as DIV2K's, readable by mmagic's configs."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("mmagic")
from experiments.datasets.sr_photos import make_sr_dataset, skimage_photos  # noqa: E402
from randperc_plugins.benchmarks._framework_models import load_config  # noqa: E402


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    photos = skimage_photos(("astronaut", "chelsea", "coffee"))
    return make_sr_dataset(str(tmp_path_factory.mktemp("sr")), photos, crop_size=96, num_val=1)


def _read(*parts):
    return np.array(Image.open(os.path.join(*parts)))


def test_layout_and_annotation(root):
    div2k = os.path.join(root, "DIV2K")
    meta = open(os.path.join(div2k, "meta_info_DIV2K800sub_GT.txt")).read().split("\n")[:-1]
    files = sorted(os.listdir(os.path.join(div2k, "DIV2K_train_HR_sub")))
    assert sorted(line.split(" ")[0] for line in meta) == files
    assert all(line.endswith(" (96, 96, 3)") for line in meta)
    # astronaut 512x512 -> 504 (mod 12) -> windows at 0, 96, ..., 384 and 408: 6 x 6; chelsea (held-out
    # is coffee, last by name) 300x451 -> 300x444: 4 x 5
    assert sum(f.startswith("astronaut_") for f in files) == 36
    assert sum(f.startswith("chelsea_") for f in files) == 20
    for s in (2, 3, 4):
        assert sorted(os.listdir(os.path.join(div2k, "DIV2K_train_LR_bicubic", f"X{s}_sub"))) == files
        assert _read(div2k, "DIV2K_train_LR_bicubic", f"X{s}_sub", files[0]).shape == (96 // s, 96 // s, 3)
        val_lq = _read(root, "Set5", f"LRbicx{s}", "coffee.png")
        assert val_lq.shape == (396 // s, 600 // s, 3)
    assert _read(root, "Set5", "GTmod12", "coffee.png").shape == (396, 600, 3)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_inputs_are_antialiased_bicubic_downsamplings(root, scale):
    """Against torch's antialiased bicubic (a different implementation of the same kernel)."""
    div2k = os.path.join(root, "DIV2K")
    gt = torch.from_numpy(_read(div2k, "DIV2K_train_HR_sub", "astronaut_s008.png")).permute(2, 0, 1)
    lq = torch.from_numpy(_read(div2k, "DIV2K_train_LR_bicubic", f"X{scale}_sub", "astronaut_s008.png"))
    ref = torch.nn.functional.interpolate(gt[None].double(), scale_factor=1 / scale, mode="bicubic",
                                          antialias=True, align_corners=False)[0].permute(1, 2, 0)
    inner = slice(2, -2)  # the sub-image was cut from the whole downsampled image: borders differ
    diff = (lq.double() - ref.clamp(0, 255))[inner, inner]
    assert diff.abs().mean() < 1.5, diff.abs().mean()
    # and not a plain box average (a different, blurrier filter)
    box = torch.nn.functional.avg_pool2d(gt[None].double(), scale)[0].permute(1, 2, 0)
    assert (lq.double() - box)[inner, inner].abs().mean() > diff.abs().mean()


def test_mmagic_edsr_config_reads_it(root):
    from mmagic.registry import DATASETS
    from mmagic.utils import register_all_modules

    register_all_modules()
    cfg = load_config("mmagic::edsr/edsr_x2c64b16_1xb16-300k_div2k.py")
    train = cfg.train_dataloader.dataset
    train.data_root = os.path.join(root, "DIV2K")
    sample = DATASETS.build(train)[0]
    assert sample["inputs"].shape[-2:] == (48, 48) and sample["data_samples"].gt_img.shape[-2:] == (96, 96)
    val = cfg.val_dataloader.dataset
    val.data_root = os.path.join(root, "Set5")
    assert len(DATASETS.build(val)) == 1


def test_bad_arguments(tmp_path):
    photos = {"a": np.zeros((120, 120, 3), np.uint8), "b": np.zeros((120, 120, 3), np.uint8)}
    with pytest.raises(ValueError, match="`scales`"):
        make_sr_dataset(str(tmp_path), photos, scales=(5,), crop_size=96)
    with pytest.raises(ValueError, match="`num_val`"):
        make_sr_dataset(str(tmp_path), photos, num_val=2)
    with pytest.raises(ValueError, match=r"`images\['a'\]` must be an \(H, W, 3\) uint8"):
        make_sr_dataset(str(tmp_path), {"a": np.zeros((120, 120), np.uint8), "b": photos["b"]})
