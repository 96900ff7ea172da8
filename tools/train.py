"""Train any OpenMMLab 2.x model (MMSegmentation, MMagic, MMDetection) from a config, in their conventions.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--cfg-options k=v ...]
                                 [--launcher none|pytorch]
    bash tools/dist_train.sh CONFIG GPUS [same options]          # torchrun, one process per GPU

The framework comes from the config's ``default_scope`` (``mmseg``, ``mmagic``, ``mmdet``), which the
runner uses to find its registries; nothing here is specific to one framework. On a machine without CUDA,
``--launcher pytorch`` trains on the CPU with the ``gloo`` backend: mmengine's own ``init_dist`` calls
``torch.cuda.set_device`` and its DDP wrapper passes ``device_ids=[LOCAL_RANK]``, so this script opens
the process group itself and wraps the model with ``device_ids=None``.
"""
from __future__ import annotations

import argparse
import os
import os.path as osp

import torch


def parse_args(argv=None):
    from mmengine.config import DictAction

    parser = argparse.ArgumentParser(description="Train an OpenMMLab model (mmseg, mmagic, mmdet)")
    parser.add_argument("config", help="train config file path")
    parser.add_argument("--work-dir", help="the dir to save logs and models")
    parser.add_argument("--resume", nargs="?", type=str, const="auto",
                        help="resume from the given checkpoint, or, with no value, from the latest "
                             "checkpoint in the work dir")
    parser.add_argument("--amp", action="store_true", default=False,
                        help="enable automatic mixed precision training")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction,
                        help="override settings in the config, key=value (xxx=yyy, a.b=c, x=[a,b])")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none",
                        help="job launcher")
    # torchrun sets LOCAL_RANK; torch.distributed.launch passes --local-rank
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0)
    args = parser.parse_args(argv)
    if "LOCAL_RANK" not in os.environ:
        os.environ["LOCAL_RANK"] = str(args.local_rank)
    return args


def _use_cpu_distributed(cfg) -> None:
    """Open a gloo process group and make the DDP wrapper fit a CPU module."""
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="gloo")
    wrapper = dict(cfg.get("model_wrapper_cfg") or {})
    wrapper.setdefault("type", "MMDistributedDataParallel")
    wrapper.setdefault("broadcast_buffers", False)
    wrapper["device_ids"] = None  # an explicit None overrides the runner's [LOCAL_RANK]
    cfg.model_wrapper_cfg = wrapper
    cfg.setdefault("env_cfg", {}).setdefault("dist_cfg", {})["backend"] = "gloo"


def build_cfg(args):
    from mmengine.config import Config

    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)

    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get("work_dir", None) is None:
        cfg.work_dir = osp.join("./work_dirs", osp.splitext(osp.basename(args.config))[0])

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

    if args.launcher != "none" and not torch.cuda.is_available():
        _use_cpu_distributed(cfg)
    return cfg


def main(argv=None):
    # mmengine >= 0.10.6 resumes with torch.load(weights_only=True), which torch >= 2.6 refuses for the
    # optimizer and message-hub state that mmengine checkpoints hold.
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    import torch.distributed as dist

    cfg = build_cfg(parse_args(argv))
    runner = Runner.from_cfg(cfg) if "runner_type" not in cfg else RUNNERS.build(cfg)
    runner.train()
    if dist.is_available() and dist.is_initialized():
        # Left open, gloo's worker threads can still run while the interpreter exits, which aborts
        # the process ("terminate called without an active exception") after a finished run.
        dist.destroy_process_group()
    return runner


if __name__ == "__main__":
    main()
