"""tools/test.py, dist_test.sh and slurm_test.sh evaluate checkpoints of tiny mmseg training runs: the
metrics match a reference computed here from the checkpoint, the baseline's checkpoint and the one-line
config's evaluate with the same command, and several gloo processes give the single process's metrics."""
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("mmseg")

from experiments.datasets.seg_scenes import make_seg_dataset  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOY_CONFIG = os.path.join(REPO, "tests", "mmseg", "data", "toy_fcn.py")
GPL_LINE = ("model = dict(decode_head=dict(loss_decode=dict("
            "type='randperc_plugins.mmseg.AddRandomCNNPerceptualLoss')))")
NUM_CLASSES = 4
IGNORE_INDEX = 255
FAKE_SRUN = '''#!{python}
"""A stand-in for Slurm's srun: record the command line, then start --ntasks local copies of the
command with the variables srun gives each task (or none, with FAKE_SRUN_DRY_RUN=1)."""
import argparse, json, os, subprocess, sys

with open(os.environ["FAKE_SRUN_RECORD"], "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
parser = argparse.ArgumentParser()
for option in ("-p", "--job-name", "--gres", "--ntasks", "--ntasks-per-node", "--cpus-per-task",
               "--kill-on-bad-exit", "--time"):
    parser.add_argument(option)
parser.add_argument("command", nargs=argparse.REMAINDER)
args = parser.parse_args()
if os.environ.get("FAKE_SRUN_DRY_RUN"):
    sys.exit(0)
tasks = [subprocess.Popen(args.command, env=dict(os.environ, SLURM_PROCID=str(rank),
                                                 SLURM_LOCALID=str(rank), SLURM_NTASKS=args.ntasks,
                                                 SLURM_NODELIST="localhost"))
         for rank in range(int(args.ntasks))]
sys.exit(max(task.wait() for task in tasks))
'''


def _data_options(root):
    return ["--cfg-options", f"train_dataloader.dataset.data_root={root}",
            f"val_dataloader.dataset.data_root={root}", f"test_dataloader.dataset.data_root={root}"]


def _test_metrics(work_dir):
    """The metrics tools/test.py wrote as json into its (single) timestamped run folder."""
    (path,) = glob.glob(os.path.join(work_dir, "*", "*.json"))
    with open(path) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, run_tool):
    """A toy dataset and a 2-iteration checkpoint of the baseline config and of the one-line config."""
    tmp = tmp_path_factory.mktemp("test_tool")
    data_root = make_seg_dataset(str(tmp / "data"), num_train=4, num_val=3)
    configs = {"baseline": TOY_CONFIG, "gpl": str(tmp / "toy_gpl.py")}
    (tmp / "toy_gpl.py").write_text(f"_base_ = {TOY_CONFIG!r}\n{GPL_LINE}\n")
    checkpoints = {}
    for name, config in configs.items():
        work_dir = str(tmp / f"train_{name}")
        run_tool([sys.executable, "tools/train.py", config, "--work-dir", work_dir]
                 + _data_options(data_root) + ["train_cfg.max_iters=2", "train_cfg.val_interval=2"])
        checkpoints[name] = os.path.join(work_dir, "iter_2.pth")
    return dict(tmp=tmp, data_root=data_root, configs=configs, checkpoints=checkpoints, run=run_tool)


def _evaluate(runs, config, checkpoint, name, *extra):
    work_dir = str(runs["tmp"] / name)
    log = runs["run"]([sys.executable, "tools/test.py", runs["configs"][config],
                       runs["checkpoints"][checkpoint], "--work-dir", work_dir, *extra]
                      + _data_options(runs["data_root"]))
    return _test_metrics(work_dir), log


def _reference(runs, config, checkpoint):
    """Predicted label maps of the val images and their mIoU (%), computed here in float64."""
    from mmseg.apis import inference_model, init_model

    model = init_model(runs["configs"][config], device="cpu")
    state = torch.load(runs["checkpoints"][checkpoint], map_location="cpu", weights_only=False)
    model.load_state_dict(state["state_dict"], strict=True)
    preds, intersect, union = {}, np.zeros(NUM_CLASSES), np.zeros(NUM_CLASSES)
    for img in sorted(glob.glob(os.path.join(runs["data_root"], "img_dir", "val", "*.png"))):
        name = os.path.basename(img)
        pred = inference_model(model, img).pred_sem_seg.data[0].numpy()
        label = np.array(Image.open(os.path.join(runs["data_root"], "ann_dir", "val", name)))
        valid = label != IGNORE_INDEX
        for cls in range(NUM_CLASSES):
            p, t = (pred == cls) & valid, (label == cls) & valid
            intersect[cls] += np.sum(p & t)
            union[cls] += np.sum(p | t)
        preds[name] = pred
    with np.errstate(invalid="ignore"):
        miou = np.nanmean(intersect / union) * 100  # classes absent from both are left out, as mmseg
    return preds, miou


@pytest.mark.parametrize("name", ["baseline", "gpl"])
def test_test_tool_evaluates_the_checkpoint(runs, name):
    out_dir = str(runs["tmp"] / f"out_{name}")
    metrics, log = _evaluate(runs, name, name, f"single_{name}", "--out", out_dir)
    preds, miou = _reference(runs, name, name)
    assert metrics["mIoU"] == pytest.approx(miou, abs=0.006)  # mmseg rounds to 2 decimals
    assert f"mIoU: {metrics['mIoU']:.4f}" in log
    written = sorted(os.listdir(out_dir))
    assert written == sorted(preds)
    for file_name, pred in preds.items():
        np.testing.assert_array_equal(np.array(Image.open(os.path.join(out_dir, file_name))), pred)


@pytest.fixture(scope="module")
def gpl_metrics(runs):
    """The one-line config's checkpoint evaluated with its own config in one process."""
    return _evaluate(runs, "gpl", "gpl", "gpl_by_gpl_config")[0]


def _same_metrics(metrics, expected):
    for key in ("aAcc", "mIoU", "mAcc"):
        assert metrics[key] == expected[key], key


def test_baseline_config_evaluates_the_one_line_checkpoint(runs, gpl_metrics):
    by_baseline, _ = _evaluate(runs, "baseline", "gpl", "gpl_by_baseline_config")
    _same_metrics(by_baseline, gpl_metrics)


@pytest.mark.dist
def test_two_process_dist_test_matches_one_process(runs, gpl_metrics, run_tool, free_port):
    work_dir = str(runs["tmp"] / "dist_two")
    log = run_tool(["bash", "tools/dist_test.sh", runs["configs"]["gpl"], runs["checkpoints"]["gpl"], "2",
                    "--work-dir", work_dir] + _data_options(runs["data_root"]), PORT=str(free_port()))
    assert "Distributed training: True" in log and "GPU number: 2" in log  # mmengine's world size
    _same_metrics(_test_metrics(work_dir), gpl_metrics)


@pytest.fixture
def fake_srun(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(FAKE_SRUN.format(python=sys.executable))
    (bin_dir / "srun").chmod(0o755)
    record = tmp_path / "srun_calls.jsonl"

    def env(**extra):
        return dict(PATH=f"{bin_dir}{os.pathsep}{os.path.dirname(sys.executable)}{os.pathsep}"
                         f"{os.environ['PATH']}",
                    FAKE_SRUN_RECORD=str(record), **extra)

    def calls():
        return [json.loads(line) for line in record.read_text().splitlines()]
    return env, calls


def _srun_options(partition, job, gpus, per_node, cpus):
    return ["-p", partition, f"--job-name={job}", f"--gres=gpu:{per_node}", f"--ntasks={gpus}",
            f"--ntasks-per-node={per_node}", f"--cpus-per-task={cpus}", "--kill-on-bad-exit=1"]


@pytest.mark.dist
def test_slurm_test_runs_two_cpu_tasks_with_the_single_process_metrics(runs, gpl_metrics, fake_srun,
                                                                      run_tool, free_port):
    env, calls = fake_srun
    config, checkpoint = runs["configs"]["gpl"], runs["checkpoints"]["gpl"]
    work_dir = str(runs["tmp"] / "slurm_two")
    log = run_tool(["bash", "tools/slurm_test.sh", "part", "eval_gpl", config, checkpoint,
                    "--work-dir", work_dir] + _data_options(runs["data_root"]),
                   **env(GPUS="2", GPUS_PER_NODE="2", CPUS_PER_TASK="1", SRUN_ARGS="--time=5",
                         MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port())))
    assert "Distributed launcher: slurm" in log and "GPU number: 2" in log
    (call,) = calls()
    assert call == _srun_options("part", "eval_gpl", 2, 2, 1) + [
        "--time=5", "python", "-u", os.path.join(REPO, "tools", "test.py"), config, checkpoint,
        "--launcher=slurm", "--work-dir", work_dir] + _data_options(runs["data_root"])
    _same_metrics(_test_metrics(work_dir), gpl_metrics)


def test_slurm_train_command_line(fake_srun, run_tool):
    env, calls = fake_srun
    run_tool(["bash", "tools/slurm_train.sh", "gpu", "gpl", "CONFIG.py", "work/gpl", "--amp"],
             **env(FAKE_SRUN_DRY_RUN="1"))
    run_tool(["bash", "tools/slurm_train.sh", "gpu", "gpl", "CONFIG.py", "--resume"],
             **env(FAKE_SRUN_DRY_RUN="1", GPUS="16", SRUN_ARGS="--time=60 --job-name=x"))
    with_dir, without_dir = calls()
    train = ["python", "-u", os.path.join(REPO, "tools", "train.py"), "CONFIG.py", "--launcher=slurm"]
    assert with_dir == _srun_options("gpu", "gpl", 8, 8, 5) + train + ["--work-dir=work/gpl", "--amp"]
    assert without_dir == _srun_options("gpu", "gpl", 16, 8, 5) + ["--time=60", "--job-name=x"] + train + [
        "--resume"]
