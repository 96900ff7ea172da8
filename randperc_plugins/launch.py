"""What ``tools/train.py`` and ``tools/test.py`` share: an OpenMMLab 2.x config built from the command
line in the frameworks' own conventions, several CPU processes on ``gloo`` where there is no CUDA, and
the runner built and closed the same way for training and testing.

The framework comes from the config's ``default_scope`` (``mmseg``, ``mmagic``, ``mmdet``), which the
runner uses to find its registries; nothing here is specific to one framework. mmengine is imported
inside the functions, so importing this module needs only torch.

Why a CPU path of its own: mmengine's ``init_dist`` calls ``torch.cuda.set_device`` and its DDP wrapper
passes ``device_ids=[LOCAL_RANK]``, both of which need CUDA. Without CUDA, :func:`use_cpu_distributed`
opens the ``gloo`` process group itself (the runner then skips its own) and wraps the model with
``device_ids=None``.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import os.path as osp
import subprocess

import torch

LAUNCHERS = ("none", "pytorch", "slurm", "mpi")


def add_common_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the options every OpenMMLab ``tools/{train,test}.py`` has after its positional arguments."""
    from mmengine.config import DictAction

    parser.add_argument("--cfg-options", nargs="+", action=DictAction,
                        help="override settings in the config, key=value (xxx=yyy, a.b=c, x=[a,b])")
    parser.add_argument("--launcher", choices=LAUNCHERS, default="none", help="job launcher")
    # torchrun sets LOCAL_RANK; torch.distributed.launch passes --local-rank
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0)
    return parser


def parse_args(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    args = parser.parse_args(argv)
    if "LOCAL_RANK" not in os.environ:
        os.environ["LOCAL_RANK"] = str(args.local_rank)
    return args


def config_file(path: str) -> str:
    """The file of a config named as a path, or as ``_base_`` names a framework's shipped config.

    ``'mmseg::pspnet/pspnet_r50-d8_4xb2-80k_cityscapes-512x1024.py'`` is the baseline config inside the
    installed mmseg wheel (``mmseg/.mim/configs/...``), so a baseline evaluates without a checkout of
    its repository.
    """
    if "::" not in path:
        return path
    package, relative = path.split("::", 1)
    spec = importlib.util.find_spec(package) if package.isidentifier() else None
    if spec is None or spec.origin is None:
        raise SystemExit(f"`config` {path!r}: {package!r} is not an installed package")
    full = osp.join(osp.dirname(spec.origin), ".mim", "configs", relative)
    if not osp.isfile(full):
        raise SystemExit(f"`config` {path!r}: no such config shipped with {package} (looked for {full})")
    return full


def load_config(args: argparse.Namespace):
    """``args.config`` with the launcher, ``--cfg-options`` and the work dir applied, in that order.

    The work dir comes from ``--work-dir``, else the config's ``work_dir``, else
    ``./work_dirs/<config name>``, as in the frameworks' own tools.
    """
    from mmengine.config import Config

    cfg = Config.fromfile(config_file(args.config))
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get("work_dir", None) is None:
        cfg.work_dir = osp.join("./work_dirs", osp.splitext(osp.basename(args.config))[0])
    return cfg


def _set_torch_env_from_scheduler(launcher: str) -> None:
    """Give ``init_process_group``'s ``env://`` the rank and world size a Slurm or MPI job holds.

    Follows mmengine's ``_init_dist_slurm`` / ``_init_dist_mpi``: rank, world size and local rank from
    the scheduler's variables, port 29500 unless ``MASTER_PORT`` is set, and under Slurm the job's first
    host as ``MASTER_ADDR`` unless it is set.
    """
    if launcher == "slurm":
        names = ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID")
        if "MASTER_ADDR" not in os.environ:
            node_list = os.environ["SLURM_NODELIST"]
            os.environ["MASTER_ADDR"] = subprocess.getoutput(
                f"scontrol show hostname {node_list} | head -n1")
    else:  # mpi
        names = ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK")
    missing = [name for name in names if name not in os.environ]
    if missing:
        raise SystemExit(f"--launcher {launcher} needs the scheduler's variables {', '.join(missing)}; "
                         f"start the script through {'srun' if launcher == 'slurm' else 'mpirun'}")
    rank, world_size, local_rank = (os.environ[name] for name in names)
    os.environ.update(RANK=rank, WORLD_SIZE=world_size, LOCAL_RANK=local_rank)
    os.environ.setdefault("MASTER_PORT", "29500")


def use_cpu_distributed(cfg) -> None:
    """Open a gloo process group for ``cfg.launcher`` and make the DDP wrapper fit a CPU module."""
    import torch.distributed as dist

    if not dist.is_initialized():
        if cfg.launcher in ("slurm", "mpi"):
            _set_torch_env_from_scheduler(cfg.launcher)
        dist.init_process_group(backend="gloo")
    wrapper = dict(cfg.get("model_wrapper_cfg") or {})
    wrapper.setdefault("type", "MMDistributedDataParallel")
    wrapper.setdefault("broadcast_buffers", False)
    wrapper["device_ids"] = None  # an explicit None overrides the runner's [LOCAL_RANK]
    cfg.model_wrapper_cfg = wrapper
    cfg.setdefault("env_cfg", {}).setdefault("dist_cfg", {})["backend"] = "gloo"


def setup_distributed(cfg) -> None:
    """Without CUDA, run every launcher but ``none`` on the CPU over gloo; with CUDA, mmengine does it."""
    if cfg.launcher != "none" and not torch.cuda.is_available():
        use_cpu_distributed(cfg)


def build_runner(cfg):
    """The runner ``cfg`` asks for (``runner_type``), else mmengine's ``Runner``."""
    # mmengine 0.10 loads checkpoints (``load_from``, ``resume``) with a plain ``torch.load``, whose
    # default became ``weights_only=True`` in torch 2.6: that refuses the numpy arrays, message-hub and
    # optimizer state mmengine checkpoints hold. The frameworks' own tools fail there; these do not.
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    return Runner.from_cfg(cfg) if "runner_type" not in cfg else RUNNERS.build(cfg)


def close_distributed() -> None:
    """Destroy the process group a run opened, if any.

    Left open, gloo's worker threads can still run while the interpreter exits, which aborts the
    process ("terminate called without an active exception") after a finished run.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
