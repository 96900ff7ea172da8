"""Train and evaluate a detectron2 model from a YAML or a LazyConfig, in detectron2's own conventions.

    python tools/train_net.py --config-file configs/detectron2/mask_rcnn_R_50_FPN_1x_gpl.yaml \
        --num-gpus 8 [--resume] [--eval-only] [KEY VALUE ...]          # YAML: KEY VALUE overrides
    python tools/train_net.py --config-file configs/detectron2/mask_rcnn_R_50_FPN_1x_gpl.py \
        --num-gpus 8 [key=value ...]                                   # LazyConfig: key=value overrides
    # several machines: --num-machines 2 --machine-rank {0,1} --dist-url tcp://HOST:PORT on each
    # a COCO-format dataset of your own (repeatable), then name it in DATASETS.TRAIN / dataloader.*:
    python tools/train_net.py --config-file CFG --coco-dataset NAME ANNOTATIONS.json IMAGE_DIR ...

The options are detectron2's ``default_argument_parser`` plus ``--coco-dataset``, registered with
``register_coco_instances`` in every process. ``import randperc_plugins.detectron2`` registers the
perceptual mask heads, and a YAML ``_BASE_: "detectron2::<model-zoo path>"`` resolves into detectron2's
installed model zoo (``randperc_plugins.detectron2_config.load_config``).

Both config forms go through one training loop, the one of detectron2's ``lazyconfig_train_net.py``
(``SimpleTrainer`` / ``AMPTrainer`` with its hooks, ``DetectionCheckpointer`` holding the trainer's
state for ``--resume``, ``COCOEvaluator`` for evaluation). Without CUDA, ``--num-gpus N`` starts N CPU
processes: detectron2's ``launch`` then opens a ``gloo`` group itself, but ``create_ddp_model`` passes
``device_ids=[local_rank]``, which DDP refuses for a CPU module, so the model is wrapped here with
``device_ids=None`` on the CPU.
"""
from __future__ import annotations

import logging
import os

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import LazyConfig, instantiate
from detectron2.data import build_detection_test_loader, build_detection_train_loader
from detectron2.data.datasets import register_coco_instances
from detectron2.engine import (AMPTrainer, SimpleTrainer, default_argument_parser, default_setup,
                               default_writers, hooks, launch)
from detectron2.engine.defaults import create_ddp_model
from detectron2.evaluation import COCOEvaluator, inference_on_dataset, print_csv_format
from detectron2.modeling import build_model
from detectron2.solver import build_lr_scheduler, build_optimizer
from detectron2.utils import comm

import randperc_plugins.detectron2  # noqa: F401  registers the mask heads (also in spawned workers)
from randperc_plugins.detectron2_config import is_lazy_config, load_config

logger = logging.getLogger("detectron2")


def parse_args(argv=None):
    parser = default_argument_parser()
    parser.add_argument("--coco-dataset", nargs=3, action="append", default=[],
                        metavar=("NAME", "JSON", "IMAGE_DIR"),
                        help="register a COCO-format instance dataset under NAME (repeatable)")
    return parser.parse_args(argv)


def register_datasets(datasets) -> None:
    """``register_coco_instances`` for each ``(name, json, image_dir)`` not registered yet."""
    from detectron2.data import DatasetCatalog

    for name, json_file, image_dir in datasets:
        if name not in DatasetCatalog.list():
            register_coco_instances(name, {}, json_file, image_dir)


def setup(args):
    """The config with the command line's overrides, and detectron2's ``default_setup`` (output dir,
    logging, per-rank seeds)."""
    cfg = load_config(args.config_file)
    if is_lazy_config(args.config_file):
        cfg = LazyConfig.apply_overrides(cfg, args.opts)
    else:
        cfg.merge_from_list(args.opts)
        cfg.freeze()
    default_setup(cfg, args)
    return cfg


class Run:
    """What one training run needs, read from either config form."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.lazy = not hasattr(cfg, "MODEL")
        if self.lazy:
            self.output_dir = cfg.train.output_dir
            self.device = cfg.train.device
        else:
            self.output_dir = cfg.OUTPUT_DIR
            self.device = cfg.MODEL.DEVICE

    def model(self):
        if self.lazy:
            model = instantiate(self.cfg.model)
            model.to(self.device)
            return model
        return build_model(self.cfg)

    def init_checkpoint(self) -> str:
        return self.cfg.train.init_checkpoint if self.lazy else self.cfg.MODEL.WEIGHTS

    def evaluate(self, model) -> dict:
        """COCO evaluation (``COCOEvaluator``: bbox and segm AP) on each test dataset."""
        results = {}
        if self.lazy:
            if "evaluator" in self.cfg.dataloader:
                results = inference_on_dataset(model, instantiate(self.cfg.dataloader.test),
                                               instantiate(self.cfg.dataloader.evaluator))
                print_csv_format(results)
            return results
        for name in self.cfg.DATASETS.TEST:
            evaluator = COCOEvaluator(name, output_dir=os.path.join(self.output_dir, "inference", name))
            results[name] = inference_on_dataset(
                model, build_detection_test_loader(self.cfg, name), evaluator)
            if comm.is_main_process():
                print_csv_format(results[name])
        if len(results) == 1:
            results = next(iter(results.values()))
        return results

    def train(self, model, resume: bool):
        cfg = self.cfg
        if self.lazy:
            cfg.optimizer.params.model = model
            optimizer = instantiate(cfg.optimizer)
            data_loader = instantiate(cfg.dataloader.train)
            scheduler = instantiate(cfg.lr_multiplier)
            max_iter, amp = cfg.train.max_iter, cfg.train.amp.enabled
            ddp = dict(cfg.train.ddp)
            checkpoint_period, eval_period = cfg.train.checkpointer.period, cfg.train.eval_period
            max_to_keep, log_period = cfg.train.checkpointer.get("max_to_keep"), cfg.train.log_period
        else:
            optimizer = build_optimizer(cfg, model)
            data_loader = build_detection_train_loader(cfg)
            scheduler = build_lr_scheduler(cfg, optimizer)
            max_iter, amp = cfg.SOLVER.MAX_ITER, cfg.SOLVER.AMP.ENABLED
            ddp = dict(broadcast_buffers=False)
            checkpoint_period, eval_period = cfg.SOLVER.CHECKPOINT_PERIOD, cfg.TEST.EVAL_PERIOD
            max_to_keep, log_period = None, 20

        model = wrap_ddp(model, **ddp)
        trainer = (AMPTrainer if amp else SimpleTrainer)(model, data_loader, optimizer)
        checkpointer = DetectionCheckpointer(model, self.output_dir, trainer=trainer)
        trainer.register_hooks([
            hooks.IterationTimer(),
            hooks.LRScheduler(optimizer=optimizer, scheduler=scheduler),
            hooks.PeriodicCheckpointer(checkpointer, checkpoint_period, max_iter=max_iter,
                                       max_to_keep=max_to_keep) if comm.is_main_process() else None,
            hooks.EvalHook(eval_period, lambda: self.evaluate(model)),
            hooks.PeriodicWriter(default_writers(self.output_dir, max_iter), period=log_period)
            if comm.is_main_process() else None,
        ])
        checkpointer.resume_or_load(self.init_checkpoint(), resume=resume)
        start_iter = trainer.iter + 1 if resume and checkpointer.has_checkpoint() else 0
        trainer.train(start_iter, max_iter)
        return trainer


def wrap_ddp(model, **kwargs):
    """``create_ddp_model``, with ``device_ids=None`` for a CPU model (DDP refuses device ids there)."""
    if comm.get_world_size() > 1 and next(model.parameters()).device.type == "cpu":
        kwargs["device_ids"] = None
    return create_ddp_model(model, **kwargs)


def main(args):
    register_datasets(args.coco_dataset)
    cfg = setup(args)
    run = Run(cfg)
    model = run.model()
    logger.info("Model:\n%s", model)
    if args.eval_only:
        DetectionCheckpointer(model, run.output_dir).resume_or_load(run.init_checkpoint(),
                                                                   resume=args.resume)
        return run.evaluate(model)
    return run.train(model, resume=args.resume)


def cli(argv=None):
    args = parse_args(argv)
    print("Command Line Args:", args)
    launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,))


if __name__ == "__main__":
    cli()
