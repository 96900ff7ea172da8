"""Benchmark the perceptual losses: forward+backward time and peak memory, as ratios in one process.

    python tools/benchmark_losses.py [random-cnn|patch-mmd|all] [--device cuda|cpu] [--quick]

* ``random-cnn`` (tools/bench_random_cnn.py): the random-CNN loss at a segmentation shape and at SR
  shapes, against the PSPNet-R50 and EDSR train steps and mmagic's VGG ``PerceptualLoss``.
* ``patch-mmd`` (tools/bench_patch_mmd.py): exact blocked patch-MMD against the naive dense form,
  geomloss's ``SamplesLoss`` and random features, from 1k to 64k patches.

On a CPU the shapes are reduced (each table states its shapes); on a GPU they are the training shapes.
The PSPNet-R50 step with and without each loss is ``tools/benchmark_mmseg.py``.
"""
from __future__ import annotations

import argparse

import torch

import bench_patch_mmd
import bench_random_cnn

SECTIONS = {"random-cnn": bench_random_cnn, "patch-mmd": bench_patch_mmd}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("which", nargs="?", default="all", choices=[*SECTIONS, "all"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="smaller shapes and fewer repeats")
    args = parser.parse_args(argv)
    print(f"device: {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name, module in SECTIONS.items():
        if args.which in (name, "all"):
            print(f"\n# {name}\n")
            module.main(["--device", args.device] + (["--quick"] if args.quick else []))


if __name__ == "__main__":
    main()
