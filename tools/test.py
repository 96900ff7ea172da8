"""Evaluate a checkpoint of any OpenMMLab 2.x model (MMSegmentation, MMagic, MMDetection), in their
conventions: the baseline's checkpoint and ours evaluate with the same command.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out OUT] [--show] [--show-dir DIR]
                         [--tta] [--cfg-options k=v ...] [--launcher none|pytorch|slurm|mpi]
    bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [same options]    # torchrun, one process per GPU
    bash tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [same options]

The metrics are logged and, as the frameworks' tools do, written as json to the run's log folder under
the work dir. ``--out`` means what it means in the config's framework (``default_scope``): mmseg, a
folder of predicted label maps; mmdet, a ``.pkl`` of the predictions; mmagic, a file of the metrics.
Unlike the frameworks' own ``tools/test.py``, this loads mmengine checkpoints under torch >= 2.6
(see ``randperc_plugins.launch.build_runner``); without CUDA, ``--launcher pytorch`` evaluates on
the CPU over ``gloo``.
"""
from __future__ import annotations

import argparse

from randperc_plugins import launch


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Test (and evaluate) an OpenMMLab model "
                                                 "(mmseg, mmagic, mmdet)")
    parser.add_argument("config", help="test config file path")
    parser.add_argument("checkpoint", help="checkpoint file")
    parser.add_argument("--work-dir", help="the dir to save logs and the json of the metrics")
    parser.add_argument("--out", help="mmseg: dir for the predicted label maps; mmdet: .pkl file of "
                                      "the predictions; mmagic: file of the metrics")
    parser.add_argument("--show", action="store_true", help="show prediction results (mmseg, mmdet)")
    parser.add_argument("--show-dir", help="dir where painted images are saved (mmseg, mmdet)")
    parser.add_argument("--wait-time", type=float, default=2, help="the interval of show (s)")
    parser.add_argument("--tta", action="store_true",
                        help="test-time augmentation, from the config's `tta_model` and `tta_pipeline`")
    return launch.parse_args(launch.add_common_args(parser), argv)


def _scope(cfg, option):
    scope = cfg.get("default_scope")
    if scope not in ("mmseg", "mmdet", "mmagic"):
        raise SystemExit(f"{option} follows the framework of the config's `default_scope`, one of "
                         f"mmseg, mmdet, mmagic; got {scope!r}")
    return scope


def _show(cfg, args):
    scope = _scope(cfg, "--show/--show-dir")
    hooks = cfg.get("default_hooks") or {}
    if scope == "mmagic" or "visualization" not in hooks:
        raise SystemExit("--show/--show-dir need a visualization hook in `default_hooks.visualization` "
                         "(mmseg's SegVisualizationHook, mmdet's DetVisualizationHook); the config "
                         "has none")
    hook = hooks["visualization"]
    hook["draw"] = True
    if args.show:
        hook["show"] = True
        hook["wait_time"] = args.wait_time
    if args.show_dir:
        if scope == "mmseg":  # mmseg's hook saves through the visualizer
            cfg.visualizer["save_dir"] = args.show_dir
        else:
            hook["test_out_dir"] = args.show_dir


def _tta(cfg):
    missing = [key for key in ("tta_model", "tta_pipeline") if key not in cfg]
    if missing:
        raise SystemExit(f"--tta needs {' and '.join(f'`{k}`' for k in missing)} in the config, as "
                         f"mmseg's dataset and runtime configs define them")
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    cfg.model = dict(**cfg.tta_model, module=cfg.model)


def build_cfg(args):
    cfg = launch.load_config(args)
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        _show(cfg, args)
    if args.tta:
        _tta(cfg)
    if args.out is not None:
        scope = _scope(cfg, "--out")
        if scope == "mmseg":
            cfg.test_evaluator["output_dir"] = args.out
            cfg.test_evaluator["keep_results"] = True
        elif scope == "mmdet" and not args.out.endswith((".pkl", ".pickle")):
            raise SystemExit(f"--out must name a .pkl or .pickle file for an mmdet config, got "
                             f"{args.out!r}")
    launch.setup_distributed(cfg)
    return cfg


def _dump_outputs(runner, cfg, out):
    """mmdet's and mmagic's ``--out``: the predictions as a pickle, the metrics as a file."""
    scope = cfg.get("default_scope")
    if scope == "mmdet":
        from mmdet.evaluation import DumpDetResults

        runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=out))
    elif scope == "mmagic":
        import mmengine
        from mmengine.hooks import Hook

        class SaveMetricHook(Hook):
            def after_test_epoch(self, runner, metrics=None):
                if metrics is not None:
                    mmengine.dump(metrics, out)

        runner.register_hook(SaveMetricHook(), "LOWEST")


def main(argv=None):
    """Evaluate; return the metrics (a dict such as mmseg's ``{'aAcc': ..., 'mIoU': ..., 'mAcc': ...}``)."""
    args = parse_args(argv)
    cfg = build_cfg(args)
    runner = launch.build_runner(cfg)
    if args.out is not None:
        _dump_outputs(runner, cfg, args.out)
    metrics = runner.test()
    launch.close_distributed()
    return metrics


if __name__ == "__main__":
    main()
