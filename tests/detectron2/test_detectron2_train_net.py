"""tools/train_net.py on the toy COCO dataset: a short YAML run with COCO evaluation (bbox and segm AP),
resume, the strict load of its checkpoint into the baseline, a LazyConfig run, and two CPU processes on
gloo whose loss networks agree although detectron2 seeds the ranks differently."""
import json
import os
import subprocess
import sys

import pytest
import torch

pytestmark = pytest.mark.detectron2

pytest.importorskip("detectron2.config")  # not the tests/detectron2 folder
from experiments.datasets.coco_shapes import make_coco_dataset  # noqa: E402
from randperc_plugins.benchmarks import _detectron2_models as dm  # noqa: E402
from train_runs import FINAL_CHECKPOINT_ONLY, detectron2_datasets, detectron2_lazy_opts  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TRAIN_NET = os.path.join(REPO, "tools", "train_net.py")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return make_coco_dataset(str(tmp_path_factory.mktemp("coco_shapes")), num_train=4, num_val=2,
                             size=128)


# No ImageNet weights are downloaded: a randomly initialised ResNet with detectron2's FrozenBN blows
# its activations up (losses ~1e18), so the tests train it with BN, which keeps them in range; a score
# threshold of 0 and a tiny learning rate keep the detections of a few-step model (a larger one soon
# scores every box as background), so that COCO evaluation has some to score.
def _yaml_opts(out, max_iter):
    return ["MODEL.RESNETS.NORM", "BN", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "DATASETS.TRAIN", "('shapes_train',)", "DATASETS.TEST", "('shapes_val',)",
            "MODEL.ROI_HEADS.NUM_CLASSES", "4", "MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu",
            "INPUT.MASK_FORMAT", "bitmask", "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MAX_SIZE_TRAIN", "128",
            "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "128", "SOLVER.IMS_PER_BATCH", "2",
            "SOLVER.BASE_LR", "1e-5", "SOLVER.MAX_ITER", str(max_iter), "SOLVER.STEPS", "()",
            "SOLVER.WARMUP_ITERS", "0", "SOLVER.CHECKPOINT_PERIOD", str(FINAL_CHECKPOINT_ONLY), "TEST.EVAL_PERIOD", "0",
            "DATALOADER.NUM_WORKERS", "0", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32",
            "MODEL.RPN.POST_NMS_TOPK_TRAIN", "64", "MODEL.RPN.PRE_NMS_TOPK_TEST", "128",
            "MODEL.RPN.POST_NMS_TOPK_TEST", "64", "TEST.DETECTIONS_PER_IMAGE", "20",
            "OUTPUT_DIR", str(out)]


def _run(args, script=TRAIN_NET):
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([REPO, os.path.join(REPO, "tools"), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, script] + args, cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, f"{args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc.stdout + proc.stderr


def _metrics(out):
    with open(os.path.join(out, "metrics.json")) as f:
        return [json.loads(line) for line in f]


def _checkpoint(path):
    return torch.load(path, map_location="cpu", weights_only=False)


def test_yaml_run_evaluates_with_coco_resumes_and_loads_into_the_baseline(tmp_path, data_root):
    out = tmp_path / "gpl"
    config = "configs/detectron2/mask_rcnn_R_50_FPN_1x_gpl.yaml"
    _run(["--config-file", config] + detectron2_datasets(data_root) + _yaml_opts(out, 2))
    records = _metrics(out)
    train = [r for r in records if "loss_mask_gpl" in r]
    assert train and all(r["loss_mask_gpl"] > 0 and r["loss_mask"] > 0 for r in train)
    final = records[-1]
    for key in ("bbox/AP", "bbox/AP50", "segm/AP", "segm/AP50"):
        assert key in final, f"COCOEvaluator gave no {key}: {sorted(final)}"
    assert _checkpoint(out / "model_final.pth")["iteration"] == 1

    log = _run(["--config-file", config, "--resume"] + detectron2_datasets(data_root) + _yaml_opts(out, 4))
    assert "Starting training from iteration 2" in log
    resumed = _checkpoint(out / "model_final.pth")
    assert resumed["iteration"] == 3

    # the checkpoint of the model with our head loads into detectron2's baseline, strictly
    base_cfg = dm.model_zoo_config("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml")
    base_cfg.MODEL.ROI_HEADS.NUM_CLASSES = 4
    base_cfg.MODEL.RESNETS.NORM = "BN"
    baseline = dm.build_model(base_cfg)
    incompatible = baseline.load_state_dict(resumed["model"], strict=True)
    assert not incompatible.missing_keys and not incompatible.unexpected_keys

    # --eval-only on the trained weights
    log = _run(["--config-file", config, "--eval-only"] + detectron2_datasets(data_root) +
               _yaml_opts(out, 4)[:-2] + ["OUTPUT_DIR", str(tmp_path / "eval"),
                                          "MODEL.WEIGHTS", str(out / "model_final.pth")])
    assert "Evaluation results for segm" in log and "Evaluation results for bbox" in log


def test_lazyconfig_run_trains_and_evaluates(tmp_path, data_root):
    # one step: the model zoo's schedule gives its full LR from the second step of so short a run,
    # after which a randomly initialised model scores every box as background
    out = tmp_path / "patch_mmd"
    log = _run(["--config-file", "configs/detectron2/mask_rcnn_R_50_FPN_1x_patch_mmd.py"] +
               detectron2_datasets(data_root) + detectron2_lazy_opts(out, 1))
    records = _metrics(out)
    train = [r for r in records if "loss_mask_patch_mmd" in r]
    assert train and all(r["loss_mask_patch_mmd"] > 0 for r in train)
    assert "segm/AP" in records[-1] and "bbox/AP" in records[-1]
    assert "Evaluation results for segm" in log


@pytest.mark.dist
def test_two_cpu_processes_train_on_gloo_with_identical_loss_networks(tmp_path, data_root):
    out = tmp_path / "dist"
    _run(["--config-file", "configs/detectron2/mask_rcnn_R_50_FPN_1x_gpl.yaml", "--num-gpus", "2",
          "--dist-url", "auto"] + detectron2_datasets(data_root) + _yaml_opts(out, 2),
         script=os.path.join(HERE, "data", "train_net_rank_record.py"))
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert not torch.equal(ranks[0]["draw"], ranks[1]["draw"]), "ranks were not seeded differently"
    assert ranks[0]["weights"] and all(torch.equal(a, b) for a, b in
                                        zip(ranks[0]["weights"], ranks[1]["weights"]))
    # DDP kept the trained parameters in step
    torch.testing.assert_close(ranks[0]["predictor"], ranks[1]["predictor"], rtol=0, atol=0)
    assert os.path.isfile(out / "model_final.pth")
