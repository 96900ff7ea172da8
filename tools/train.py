"""Train any OpenMMLab 2.x model (MMSegmentation, MMagic, MMDetection) from a config, in their conventions.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--cfg-options k=v ...]
                                 [--launcher none|pytorch|slurm|mpi]
    bash tools/dist_train.sh CONFIG GPUS [same options]          # torchrun, one process per GPU
    bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG [WORK_DIR] [same options]

The framework comes from the config's ``default_scope``. On a machine without CUDA, ``--launcher
pytorch`` trains on the CPU with the ``gloo`` backend (``randperc_plugins.launch``).
"""
from __future__ import annotations

import argparse

import torch

from randperc_plugins import launch


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Train an OpenMMLab model (mmseg, mmagic, mmdet)")
    parser.add_argument("config", help="train config file path")
    parser.add_argument("--work-dir", help="the dir to save logs and models")
    parser.add_argument("--resume", nargs="?", type=str, const="auto",
                        help="resume from the given checkpoint, or, with no value, from the latest "
                             "checkpoint in the work dir")
    parser.add_argument("--amp", action="store_true", default=False,
                        help="enable automatic mixed precision training")
    return launch.parse_args(launch.add_common_args(parser), argv)


def build_cfg(args):
    cfg = launch.load_config(args)
    if args.amp:
        if not torch.cuda.is_available():
            raise SystemExit("--amp needs a GPU: mmengine's AmpOptimWrapper trains on gpu, npu, mlu or "
                             "musa only")
        optim_wrapper = cfg.optim_wrapper.get("type", "OptimWrapper")
        if optim_wrapper == "AmpOptimWrapper":
            print("AMP training is already enabled in the config.")
        elif optim_wrapper != "OptimWrapper":
            raise ValueError(f"--amp needs `optim_wrapper.type` OptimWrapper or AmpOptimWrapper, "
                             f"got {optim_wrapper!r}")
        else:
            cfg.optim_wrapper.type = "AmpOptimWrapper"
            cfg.optim_wrapper.loss_scale = "dynamic"

    if args.resume == "auto":
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume

    launch.setup_distributed(cfg)
    return cfg


def main(argv=None):
    runner = launch.build_runner(build_cfg(parse_args(argv)))
    runner.train()
    launch.close_distributed()
    return runner


if __name__ == "__main__":
    main()
