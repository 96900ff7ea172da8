"""A small super-resolution dataset in mmagic's DIV2K layout, from real photographs.

    python tools/make_sr_dataset.py DATA_ROOT [--images DIR] [--scales 2 3 4] [--crop-size 96]
                                              [--step 96] [--num-val 1]

By default the images are photographs shipped inside scikit-image's wheel (``astronaut``, ``chelsea``,
``coffee``, ``rocket``, ``immunohistochemistry``, ``hubble_deep_field``): nothing is downloaded.
``--images DIR`` takes every PNG/JPEG/BMP/TIFF in a folder instead. Written as mmagic's DIV2K configs
read it (``data_root='DATA_ROOT'``)::

    DATA_ROOT/DIV2K/DIV2K_train_HR_sub/{name}_s001.png            ground-truth sub-images
    DATA_ROOT/DIV2K/DIV2K_train_LR_bicubic/X{s}_sub/{name}_s001.png  their bicubic x{s} inputs
    DATA_ROOT/DIV2K/meta_info_DIV2K800sub_GT.txt                  "{file} (H, W, 3)" per line
    DATA_ROOT/Set5/GTmod12/{name}.png, DATA_ROOT/Set5/LRbicx{s}/{name}.png   held-out validation images

How the inputs are made, as mmagic's own preparation makes them: DIV2K's official low-resolution set is
MATLAB's ``imresize`` bicubic (antialiased) downsampling, which mmagic's dataset converters reproduce
with :class:`mmagic.datasets.transforms.MATLABLikeResize` on the image as floats in [0, 1], clipped and
rounded to uint8 (``tools/dataset_converters/*/preprocess_*.py``, ``imresize``). Each image is first
cropped to a multiple of 12 (``GTmod12``: divisible by 2, 3 and 4), downsampled whole, then cut into
sub-images with ``crop_size`` / ``step`` at the ground truth's resolution and ``crop_size // s`` /
``step // s`` at the inputs' (``preprocess_div2k_dataset.py``'s ``extract_subimages``), so that every
input sub-image is exactly its ground truth downsampled.
"""
from __future__ import annotations

import argparse
import glob
import os
from typing import Dict, Iterable, Optional, Sequence

import numpy as np
from PIL import Image

#: scikit-image's shipped RGB photographs (no download): the default images.
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field")
_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def skimage_photos(names: Sequence[str] = SKIMAGE_PHOTOS) -> Dict[str, np.ndarray]:
    """scikit-image's shipped photographs as ``{name: (H, W, 3) uint8 RGB}``."""
    from skimage import data

    return {name: np.ascontiguousarray(getattr(data, name)()[..., :3]) for name in names}


def folder_images(folder: str) -> Dict[str, np.ndarray]:
    """Every image in ``folder`` (sorted by name) as ``{stem: (H, W, 3) uint8 RGB}``."""
    paths = sorted(p for p in glob.glob(os.path.join(folder, "*")) if p.lower().endswith(_EXTENSIONS))
    if not paths:
        raise ValueError(f"`images` must be a folder holding {'/'.join(_EXTENSIONS)} files, got {folder!r}")
    return {os.path.splitext(os.path.basename(p))[0]: np.asarray(Image.open(p).convert("RGB"))
            for p in paths}


def bicubic_downsample(img: np.ndarray, scale: int) -> np.ndarray:
    """``img`` (uint8, sides divisible by ``scale``) downsampled as DIV2K's bicubic inputs (see module)."""
    from mmagic.datasets.transforms import MATLABLikeResize

    resize = MATLABLikeResize(keys=["img"], scale=1.0 / scale)
    out = resize({"img": img.astype(np.float64) / 255.0})["img"]
    return np.around(np.clip(out, 0.0, 1.0) * 255).astype(np.uint8)


def _positions(size: int, crop: int, step: int) -> np.ndarray:
    # preprocess_div2k_dataset.py's sliding window with thresh_size 0: the last window touches the border
    starts = np.arange(0, size - crop + 1, step)
    if size - (starts[-1] + crop) > 0:
        starts = np.append(starts, size - crop)
    return starts


def _save(array: np.ndarray, path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array).save(path)


def make_sr_dataset(root: str, images: Optional[Dict[str, np.ndarray]] = None,
                    scales: Iterable[int] = (2, 3, 4), crop_size: int = 96, step: Optional[int] = None,
                    num_val: int = 1) -> str:
    """Write the dataset under ``root`` (see the module docstring) and return ``root``.

    Args:
        images: ``{name: (H, W, 3) uint8}``; default :func:`skimage_photos`. The last ``num_val`` (by
            name order) become the validation set (``Set5``-style folders), the others training
            sub-images.
        scales: downsampling factors; ``crop_size`` and ``step`` must be divisible by each.
        crop_size, step: sub-image size and stride at the ground truth's resolution (``step``
            defaults to ``crop_size``: no overlap).
    """
    images = skimage_photos() if images is None else images
    scales = tuple(scales)
    step = crop_size if step is None else step
    for s in scales:
        if not isinstance(s, int) or s < 1 or crop_size % s or step % s:
            raise ValueError(f"`scales` must be positive ints dividing `crop_size` ({crop_size}) and `step` "
                             f"({step}), got {s!r}")
    if not 0 <= num_val < len(images):
        raise ValueError(f"`num_val` must leave at least one training image of {len(images)}, got {num_val}")
    names = sorted(images)
    train, val = names[:len(names) - num_val], names[len(names) - num_val:]
    div2k = os.path.join(root, "DIV2K")
    meta = []
    for name in names:
        img = images[name]
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"`images[{name!r}]` must be an (H, W, 3) uint8 RGB array, "
                             f"got {img.dtype} {img.shape}")
        h, w = (img.shape[0] // 12) * 12, (img.shape[1] // 12) * 12
        if min(h, w) < crop_size:
            raise ValueError(f"`images[{name!r}]` ({img.shape[0]}x{img.shape[1]}) is smaller than "
                             f"`crop_size` {crop_size}")
        gt = np.ascontiguousarray(img[:h, :w])
        lqs = {s: bicubic_downsample(gt, s) for s in scales}
        if name in val:
            _save(gt, os.path.join(root, "Set5", "GTmod12", f"{name}.png"))
            for s, lq in lqs.items():
                _save(lq, os.path.join(root, "Set5", f"LRbicx{s}", f"{name}.png"))
            continue
        index = 0
        for top in _positions(h, crop_size, step):
            for left in _positions(w, crop_size, step):
                index += 1
                file = f"{name}_s{index:03d}.png"
                _save(gt[top:top + crop_size, left:left + crop_size],
                      os.path.join(div2k, "DIV2K_train_HR_sub", file))
                for s, lq in lqs.items():
                    c = crop_size // s
                    _save(lq[top // s:top // s + c, left // s:left // s + c],
                          os.path.join(div2k, "DIV2K_train_LR_bicubic", f"X{s}_sub", file))
                meta.append(f"{file} ({crop_size}, {crop_size}, 3)")
    with open(os.path.join(div2k, "meta_info_DIV2K800sub_GT.txt"), "w") as f:
        f.write("\n".join(meta) + "\n")
    return root


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", help="data root (the configs' data_root)")
    parser.add_argument("--images", help="folder of images (default: scikit-image's photographs)")
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4])
    parser.add_argument("--crop-size", type=int, default=96)
    parser.add_argument("--step", type=int, default=None)
    parser.add_argument("--num-val", type=int, default=1)
    args = parser.parse_args(argv)
    images = folder_images(args.images) if args.images else None
    make_sr_dataset(args.root, images, args.scales, args.crop_size, args.step, args.num_val)
    print(f"wrote {args.root}")


if __name__ == "__main__":
    main()
