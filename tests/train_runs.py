"""What the training tests share: the environment of a command of ``tools/`` (the ``run_tool`` fixture of
tests/conftest.py runs one, :func:`run_tools` several at once), a config that inherits a test config, the
loss network as each rank saw it, and the run's logged scalars."""
import glob
import json
import os
import subprocess
import sys

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)


def tool_env(pythonpath=(), **extra_env):
    """The environment of a command of ``tools/`` run as a user would: this environment's python first on
    PATH (the shell scripts call ``python``), the checkout, tests/ (for test-only hooks) and
    ``pythonpath`` on PYTHONPATH, one OpenMP thread per process; ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``
    unset, since the tools must load checkpoints without it."""
    env = dict(os.environ)
    env.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]
    env["PYTHONPATH"] = os.pathsep.join([REPO, TESTS, *pythonpath, env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    env.update(extra_env)
    return env


def run_tools(commands, pythonpath=(), timeout=1800, jobs=None, **extra_env):
    """Run ``commands`` (argument lists) from the repository root in :func:`tool_env`, ``jobs`` at a time
    (default: one per CPU core; a detectron2 Mask R-CNN process alone holds 1.5 GB); a failed one fails
    the test with the tail of its output. Returns their outputs, in order."""
    env = tool_env(pythonpath, **extra_env)
    jobs = jobs or os.cpu_count() or 1
    pending = list(enumerate(commands))
    running = []
    outputs = [None] * len(commands)
    try:
        while pending or running:
            while pending and len(running) < jobs:
                index, cmd = pending.pop(0)
                running.append((index, subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                                        stderr=subprocess.STDOUT, text=True)))
            index, proc = running[0]
            out, _ = proc.communicate(timeout=timeout)
            running.pop(0)
            assert proc.returncode == 0, f"{' '.join(map(str, commands[index]))} failed:\n{out[-6000:]}"
            outputs[index] = out
    finally:
        for _, proc in running:  # after a failure or a timeout, none is left running
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return outputs


def write_config(tmp_path, base, name, body):
    """A config file ``name.py`` in ``tmp_path`` that inherits ``base`` and adds ``body``."""
    path = tmp_path / f"{name}.py"
    path.write_text(f"_base_ = {base!r}\n{body}\n")
    return str(path)


def loss_weights_on_ranks(work_dir, world_size=2):
    """What ``tests/loss_weights_probe.py`` wrote on each rank: the loss network's buffers and hashes."""
    return [open(os.path.join(work_dir, f"loss_weights_rank{r}.txt")).read() for r in range(world_size)]


def logged_scalars(work_dir):
    """Every row of ``vis_data/scalars.json`` of the latest run in ``work_dir`` (one run per folder)."""
    path = sorted(glob.glob(os.path.join(work_dir, "*", "vis_data", "scalars.json")))[-1]
    with open(path) as f:
        return [json.loads(line) for line in f]


def detectron2_datasets(root):
    """tools/train_net.py's ``--coco-dataset`` arguments for the toy COCO dataset in ``root``
    (``shapes_train``, ``shapes_val``)."""
    return ["--coco-dataset", "shapes_train", f"{root}/annotations/instances_train.json", f"{root}/train",
            "--coco-dataset", "shapes_val", f"{root}/annotations/instances_val.json", f"{root}/val"]


#: A detectron2 checkpoint period no test run reaches, so that only the final checkpoint is written
#: (detectron2 always writes it): one of the R50 Mask R-CNN with its optimizer state is ~335 MB, and
#: one per step filled CI's disk.
FINAL_CHECKPOINT_ONLY = 10**6


def detectron2_lazy_opts(out, max_iter, *overrides):
    """LazyConfig overrides that make a model-zoo Mask R-CNN R50-FPN tiny on the toy dataset: BN for
    FrozenBN (with no ImageNet weights FrozenBN blows the activations up), a tiny learning rate and a
    score threshold of 0 (a few-step model keeps some detections for COCO evaluation), few proposals,
    no evaluation during training, a log line at every step and only the final checkpoint
    (:data:`FINAL_CHECKPOINT_ONLY`); ``overrides`` come last and win."""
    return ["model.backbone.bottom_up.stem.norm=BN", "model.backbone.bottom_up.stages.norm=BN",
            "model.roi_heads.box_predictor.test_score_thresh=0.0",
            "optimizer.lr=1e-5", "train.init_checkpoint=", "train.device=cpu", f"train.max_iter={max_iter}",
            f"train.output_dir={out}", "train.eval_period=0",
            f"train.checkpointer.period={FINAL_CHECKPOINT_ONLY}",
            "train.log_period=1",
            "dataloader.train.dataset.names=shapes_train", "dataloader.test.dataset.names=shapes_val",
            "dataloader.train.total_batch_size=2", "dataloader.train.num_workers=0",
            "dataloader.test.num_workers=0", "dataloader.train.mapper.instance_mask_format=bitmask",
            "dataloader.train.mapper.augmentations=[]", "dataloader.test.mapper.augmentations=[]",
            "model.roi_heads.num_classes=4", "model.roi_heads.batch_size_per_image=32",
            "model.proposal_generator.post_nms_topk=[64,64]",
            "model.proposal_generator.pre_nms_topk=[128,128]",
            "model.roi_heads.box_predictor.test_topk_per_image=20", *overrides]
