"""tools/compare.py on work dirs of short real MMSegmentation runs (2 arms x 2 seeds through
tools/train.py), plus hand-written broken logs for the errors."""
import glob
import json
import os
import shutil
import sys

import numpy as np
import pytest
from scipy import stats as sps

from randperc_plugins.compare import LogError, difference, load_arms, read_run
from randperc_plugins.compare.cli import main as compare_main
from train_runs import run_tools, write_config

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TOY_CONFIG = os.path.join(REPO, "tests", "mmseg", "data", "toy_fcn.py")
GPL_LINE = "model = dict(decode_head=dict(loss_decode=dict(type='randperc_plugins.mmseg.AddRandomCNNPerceptualLoss')))"


@pytest.fixture(scope="session")
def mmseg_runs(tmp_path_factory):
    """``root/{baseline,gpl}/seed{0,1}``: real runs of 4 iterations, validated at iterations 2 and 4."""
    pytest.importorskip("mmseg")
    from experiments.datasets.seg_scenes import make_seg_dataset

    root = tmp_path_factory.mktemp("compare_runs")
    data = make_seg_dataset(str(root / "data"), num_train=8, num_val=2)
    commands = []
    for arm, body in (("baseline", ""), ("gpl", GPL_LINE)):
        cfg = write_config(root, TOY_CONFIG, arm, body)
        for seed in (0, 1):
            commands.append([sys.executable, os.path.join(REPO, "tools", "train.py"), cfg,
                             "--work-dir", str(root / arm / f"seed{seed}"), "--cfg-options",
                             f"train_dataloader.dataset.data_root={data}",
                             f"val_dataloader.dataset.data_root={data}",
                             f"randomness.seed={seed}", "train_cfg.val_interval=2"])
    run_tools(commands)
    return root


def _json_records(work_dir):
    path = glob.glob(os.path.join(work_dir, "*", "vis_data", "scalars.json"))[0]
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_reads_mmseg_losses_metrics_and_per_class_iou(mmseg_runs):
    work_dir = str(mmseg_runs / "gpl" / "seed1")
    run = read_run(work_dir)
    assert run.framework == "mmseg"  # the default_scope of the config saved with the run
    records = _json_records(work_dir)
    train = [r for r in records if "iter" in r]
    val = [r for r in records if "mIoU" in r]
    assert set(run.losses) == {"loss", "decode.loss_ce", "decode.loss_gpl", "aux.loss_ce"}
    assert run.losses["decode.loss_gpl"] == ([r["iter"] for r in train], [r["decode.loss_gpl"] for r in train])
    assert set(run.metrics) == {"aAcc", "mIoU", "mAcc"}
    assert run.metrics["mIoU"] == ([2, 4], [r["mIoU"] for r in val])
    # The per-class table comes from the text log; its IoUs average to the logged mIoU (both rounded to 0.01).
    assert run.per_class is not None and len(run.per_class) == 4
    for i, record in enumerate(val):
        ious = [values[i] for values in run.per_class.values()]
        assert np.nanmean(ious) == pytest.approx(record["mIoU"], abs=0.01)


def test_cli_report_tables_and_curves(mmseg_runs, tmp_path, capsys):
    out = tmp_path / "report"
    result = compare_main([str(mmseg_runs / "baseline"), str(mmseg_runs / "gpl"), "--out", str(out),
                           "--no-progress"])
    printed = capsys.readouterr().out
    final = {arm: [ _json_records(str(mmseg_runs / arm / f"seed{s}"))[-1]["mIoU"] for s in (0, 1)]
             for arm in ("baseline", "gpl")}
    best = {arm: [max(r["mIoU"] for r in _json_records(str(mmseg_runs / arm / f"seed{s}")) if "mIoU" in r)
                  for s in (0, 1)] for arm in ("baseline", "gpl")}
    rows = {(r["arm"], r["metric"], r["kind"]): r for r in result["rows"]}
    gpl_final = rows[("gpl", "mIoU", "final")]
    assert gpl_final["seeds"] == 2
    assert gpl_final["mean"] == pytest.approx(np.mean(final["gpl"]))
    assert gpl_final["std"] == pytest.approx(np.std(final["gpl"], ddof=1))
    assert gpl_final["diff"].value == pytest.approx(np.mean(final["gpl"]) - np.mean(final["baseline"]))
    assert gpl_final["diff"].method in ("bootstrap", "no seed variance")  # 2 seeds per arm
    assert rows[("gpl", "mIoU", "best")]["mean"] == pytest.approx(np.mean(best["gpl"]))
    assert rows[("baseline", "mIoU", "final")]["diff"] is None

    md = (out / "compare.md").read_text()
    assert "| gpl | 2 | mIoU |" in md and "| baseline | 2 | mIoU |" in md and "Per-class IoU" in md
    assert "background" in md and "gained" in md
    assert "gpl vs baseline: final mIoU" in printed
    with open(out / "metrics.csv") as f:
        lines = f.read().splitlines()
    assert lines[0].startswith("arm,metric,kind,seeds,mean,std")
    assert len(lines) == 1 + 3 * 2 * 2  # 3 metrics x final/best x 2 arms
    with open(out / "per_class_iou.csv") as f:
        assert len(f.read().splitlines()) == 1 + 4  # 4 classes x 1 non-baseline arm
    import matplotlib.image
    for name in ("loss_decode.loss_gpl", "loss_decode.loss_ce", "loss_aux.loss_ce", "loss_loss",
                 "metric_mIoU", "metric_mAcc", "metric_aAcc"):
        image = matplotlib.image.imread(str(out / "curves" / f"{name}.png"))
        assert image.ndim == 3 and image.shape[0] > 100


def test_globs_and_names(mmseg_runs):
    arms = load_arms([str(mmseg_runs / "baseline" / "seed*"), str(mmseg_runs / "gpl" / "seed0")],
                     progress=False)
    assert [a.name for a in arms] == ["baseline", "seed0"]  # the glob's parent folder; the folder's name
    assert [len(a.runs) for a in arms] == [2, 1]
    arms = load_arms([str(mmseg_runs / "baseline" / "seed*"), str(mmseg_runs / "gpl" / "seed*")],
                     names=["ce", "ce+gpl"], progress=False)
    assert [a.name for a in arms] == ["ce", "ce+gpl"]
    with pytest.raises(ValueError, match="same name"):
        load_arms([str(mmseg_runs / "baseline" / "seed0"), str(mmseg_runs / "gpl" / "seed0")], progress=False)
    with pytest.raises(ValueError, match="`--name` given 1 times for 2 arms"):
        load_arms([str(mmseg_runs / "baseline"), str(mmseg_runs / "gpl")], names=["x"], progress=False)


# --- statistics against independent references -------------------------------------------------------

def test_welch_interval_matches_the_textbook_formula():
    a, b = np.array([30.1, 31.5, 29.8, 30.9]), np.array([28.0, 29.2, 28.8])
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    df = (va + vb) ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1))
    half = sps.t.ppf(0.975, df) * np.sqrt(va + vb)
    d = difference(a, b)
    assert d.method == "welch"
    assert (d.low, d.high) == pytest.approx((a.mean() - b.mean() - half, a.mean() - b.mean() + half))
    assert d.significant and d.verdict() == "significant"
    assert not difference([1.0, 2.0, 3.0], [1.5, 2.5, 2.0]).significant


def test_bootstrap_with_two_seeds_stays_within_the_resampled_extremes():
    d = difference([2.0, 2.4], [1.0, 1.2])
    assert d.method == "bootstrap"
    # each resampled mean lies between the arm's min and max
    assert 2.0 - 1.2 - 1e-12 <= d.low <= d.value <= d.high <= 2.4 - 1.0 + 1e-12
    assert d.significant
    assert difference([1.0], [2.0, 3.0]).verdict() == "no interval"
    assert difference([1.0, 1.0], [1.0, 1.0]).method == "no seed variance"
    with pytest.raises(ValueError, match="`method`"):
        difference([1.0, 2.0], [1.0, 2.0], method="t")


# --- bad logs -----------------------------------------------------------------------------------------

def _mm_dir(tmp_path, name, text, log=None):
    run_dir = tmp_path / name / "20260101_000000"
    (run_dir / "vis_data").mkdir(parents=True)
    (run_dir / "vis_data" / "scalars.json").write_text(text)
    if log is not None:
        (run_dir / "20260101_000000.log").write_text(log)
    return str(tmp_path / name)


@pytest.mark.parametrize("text, message", [
    ("\n", r"scalars\.json: empty; expected one JSON object per line"),
    ('{"loss": 1.0, "iter": 1, "step": 1}\n{"mIoU": 3.0, "step": \n', r"scalars\.json, line 2: not valid JSON"),
    ('{"loss": 1.0, "iter": 1}\n', r"scalars\.json, line 1: no `step`"),
    ('{"loss": "high", "iter": 1, "step": 1}\n', r"line 1: `loss` should be a number, got 'high'"),
    ('[1, 2]\n', r"line 1: expected a JSON object, got list"),
    ('{"loss": 1.0, "iter": 1, "step": 1}\n', r"scalars\.json: no validation metrics found"),
])
def test_malformed_mmengine_logs_name_the_file_and_line(tmp_path, text, message):
    with pytest.raises(LogError, match=message):
        read_run(_mm_dir(tmp_path, "run", text))


def test_missing_logs_name_the_file(tmp_path):
    with pytest.raises(LogError, match="no such folder"):
        load_arms([str(tmp_path / "nowhere"), str(tmp_path / "nowhere2")], progress=False)
    (tmp_path / "bare").mkdir()
    with pytest.raises(LogError, match=r"bare: no training log found; expected mmengine's .*scalars\.json"):
        read_run(str(tmp_path / "bare"))
    (tmp_path / "d2").mkdir()
    (tmp_path / "d2" / "metrics.json").write_text('{"total_loss": 1.0}\n')
    with pytest.raises(LogError, match=r"metrics\.json, line 1: no `iteration`"):
        read_run(str(tmp_path / "d2"))


def test_refuses_mixed_frameworks_and_metric_sets(mmseg_runs, tmp_path):
    (tmp_path / "d2").mkdir()
    (tmp_path / "d2" / "metrics.json").write_text('{"iteration": 3, "total_loss": 1.0, "segm/AP": 2.0}\n')
    with pytest.raises(ValueError, match="written by detectron2 .* by mmseg; compare runs of one framework"):
        load_arms([str(mmseg_runs / "baseline"), str(tmp_path / "d2")], progress=False)
    other = tmp_path / "other"
    shutil.copytree(mmseg_runs / "gpl" / "seed0", other)
    path = glob.glob(str(other / "*" / "vis_data" / "scalars.json"))[0]
    with open(path) as f:
        text = f.read().replace('"mAcc"', '"PSNR"')
    with open(path, "w") as f:
        f.write(text)
    with pytest.raises(ValueError, match=r"logs the metrics \['PSNR', 'aAcc', 'mIoU'\]"):
        load_arms([str(mmseg_runs / "baseline"), str(other)], progress=False)
    with pytest.raises(SystemExit, match="compare: .*same metrics"):
        compare_main([str(mmseg_runs / "baseline"), str(other), "--out", str(tmp_path / "r"), "--no-progress"])


def test_per_class_table_that_does_not_match_the_validations_is_reported(tmp_path):
    scalars = ('{"loss": 1.0, "iter": 2, "step": 2}\n{"mIoU": 40.0, "step": 2}\n'
               '{"loss": 0.9, "iter": 4, "step": 4}\n{"mIoU": 45.0, "step": 4}\n')
    table = ("2026/01/01 00:00:00 - mmengine - INFO - per class results:\n"
             "2026/01/01 00:00:00 - mmengine - INFO - \n+-----+-----+\n| Class | IoU | Acc |\n"
             "+-----+-----+\n| road | 40.0 | 50.0 |\n| sky | nan | nan |\n+-----+-----+\n"
             "2026/01/01 00:00:00 - mmengine - INFO - Iter(val) [1/1]    mIoU: 40.0\n")
    run = read_run(_mm_dir(tmp_path, "one_table", scalars, log=table))
    assert run.per_class is None and "1 per-class tables for 2 validations" in run.per_class_note
    run = read_run(_mm_dir(tmp_path, "two_tables", scalars, log=table + table.replace("40.0", "45.0")))
    assert run.per_class["road"] == [40.0, 45.0] and np.isnan(run.per_class["sky"]).all()


def test_validations_logged_by_epoch_sit_at_the_last_logged_iteration(tmp_path):
    scalars = ('{"loss": 1.0, "epoch": 1, "iter": 50, "step": 50}\n{"coco/bbox_mAP": 0.1, "step": 1}\n'
               '{"loss": 0.8, "epoch": 2, "iter": 100, "step": 100}\n{"coco/bbox_mAP": 0.2, "step": 2}\n')
    run = read_run(_mm_dir(tmp_path, "det", scalars))
    assert run.metrics["coco/bbox_mAP"] == ([50, 100], [0.1, 0.2])
    assert run.per_class is None


def test_detectron2_metrics_json(tmp_path):
    # Hand-written in detectron2's JSONWriter format (detectron2 is not importable here): one line per
    # written iteration; the evaluator's flattened results share the line of their iteration.
    lines = [{"iteration": 19, "total_loss": 2.0, "loss_mask": 0.7, "lr": 0.01, "fast_rcnn/cls_accuracy": 0.5},
             {"iteration": 39, "total_loss": 1.5, "loss_mask": 0.6, "lr": 0.01, "segm/AP": 1.0,
              "segm/AP-person": 3.0, "bbox/AP": 2.0, "sem_seg/mIoU": 10.0, "sem_seg/IoU-road": 20.0}]
    (tmp_path / "metrics.json").write_text("".join(json.dumps(line) + "\n" for line in lines))
    run = read_run(str(tmp_path))
    assert run.framework == "detectron2"
    assert run.losses == {"loss_mask": ([19, 39], [0.7, 0.6]), "total_loss": ([19, 39], [2.0, 1.5])}
    assert run.metrics == {"bbox/AP": ([39], [2.0]), "segm/AP": ([39], [1.0]), "sem_seg/mIoU": ([39], [10.0])}
    assert run.per_class == {"road": [20.0]}


def test_final_and_best_per_seed_follow_the_metric_direction():
    from randperc_plugins.compare import Arm, Run
    from randperc_plugins.compare.report import metric_rows

    def run(miou, mae):
        return Run("x", "mmengine", metrics={"mIoU": ([1, 2, 3], miou), "MAE": ([1, 2, 3], mae)})

    base = Arm("base", [run([10.0, 30.0, 20.0], [0.5, 0.2, 0.3]), run([12.0, 32.0, 22.0], [0.6, 0.1, 0.4])])
    ours = Arm("ours", [run([11.0, 25.0, 24.0], [0.5, 0.3, 0.2]), run([13.0, 27.0, 26.0], [0.7, 0.4, 0.3])])
    rows = {(r["arm"], r["metric"], r["kind"]): r for r in metric_rows([base, ours])}
    assert rows[("base", "mIoU", "final")]["values"] == [20.0, 22.0]
    assert rows[("base", "mIoU", "best")]["values"] == [30.0, 32.0]  # higher is better
    assert rows[("base", "MAE", "best")]["values"] == [0.2, 0.1]  # lower is better
    assert not rows[("base", "MAE", "final")]["higher_is_better"]
    assert rows[("ours", "mIoU", "final")]["diff"].value == pytest.approx(25.0 - 21.0)
    assert rows[("ours", "mIoU", "best")]["diff"].value == pytest.approx(26.0 - 31.0)


def test_mmdet_strings_per_category_ap_and_unevaluated_values_stay_out_of_the_tables(tmp_path):
    # as mmdet's CocoMetric can log them: a copypaste string, per-category AP (classwise=True; NaN for a
    # category without ground truth) and -1 for an area range without ground truth
    def scalars(bbox_maps):
        lines = []
        for i, value in enumerate(bbox_maps, 1):
            lines.append(json.dumps({"loss": 1.0 / i, "loss_mask_gpl": 0.1 / i, "iter": 2 * i, "step": 2 * i}))
            lines.append(json.dumps({"coco/bbox_mAP": value, "coco/bbox_mAP_l": -1.0,
                                     "coco/bbox_mAP_copypaste": f"{value} 0.0 0.0 0.0 0.0 -1.0",
                                     "coco/disc_precision": float("nan"), "coco/bar_precision": 0.25,
                                     "data_time": 0.1, "time": 0.2, "step": 0}))
        return "\n".join(lines) + "\n"

    dirs = {name: _mm_dir(tmp_path / name, "seed0", scalars(maps)) for name, maps in
            (("base", [0.1, 0.3]), ("ours", [0.2, 0.25]))}
    run = read_run(dirs["ours"])
    assert run.metrics["coco/bbox_mAP"] == ([2, 4], [0.2, 0.25])
    assert set(run.metrics) == {"coco/bbox_mAP", "coco/bbox_mAP_l"}
    assert np.isnan(run.metrics["coco/bbox_mAP_l"][1]).all()
    assert run.per_class is None and run.per_class_note == ""

    result = compare_main([dirs["base"], dirs["ours"], "--name", "base", "--name", "ours",
                           "--out", str(tmp_path / "report"), "--no-progress"])
    assert {r["metric"] for r in result["rows"]} == {"coco/bbox_mAP"}
    best = {r["arm"]: r["values"] for r in result["rows"] if r["kind"] == "best"}
    assert best == {"base": [0.3], "ours": [0.25]}
    md = (tmp_path / "report" / "compare.md").read_text()
    assert "Not evaluated in any run (no value but NaN or COCO's -1" in md and "coco/bbox_mAP_l." in md
    assert "copypaste" not in md and "precision" not in md and "Per-class" not in md
    assert sorted(os.listdir(tmp_path / "report" / "curves")) == [
        "loss_loss.png", "loss_loss_mask_gpl.png", "metric_coco_bbox_mAP.png"]


def test_a_seed_without_a_value_gives_no_interval(tmp_path):
    # detectron2 writes NaN for every AP of an evaluation in which the model made no prediction
    runs = {}
    for name, ap in (("a", 1.0), ("b", 2.0), ("c", float("nan")), ("d", 3.0)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(
            json.dumps({"iteration": 9, "total_loss": 1.0, "segm/AP": ap}) + "\n")
        runs[name] = str(tmp_path / name)
    arms = load_arms([str(tmp_path / "[ab]"), str(tmp_path / "[cd]")], names=["base", "ours"], progress=False)
    assert np.isnan(arms[1].runs[0].metrics["segm/AP"][1][0])
    from randperc_plugins.compare.report import metric_rows
    final = [r for r in metric_rows(arms) if r["arm"] == "ours" and r["kind"] == "final"][0]
    assert final["values"][1] == 3.0 and np.isnan(final["values"][0])
    assert final["diff"].method == "a seed without a value" and final["diff"].verdict() == "no interval"
    d = difference([1.0, float("nan")], [1.0, 2.0])
    assert np.isnan(d.value) and not d.significant


def test_restoration_runs_have_no_per_class_section(tmp_path):
    scalars = ('{"loss": 1.0, "loss_pix": 1.0, "iter": 2, "step": 2}\n{"PSNR": 20.0, "SSIM": 0.5, "step": 2}\n'
               '{"loss": 0.9, "loss_pix": 0.9, "iter": 4, "step": 4}\n{"PSNR": 21.0, "SSIM": 0.6, "step": 4}\n')
    dirs = [_mm_dir(tmp_path / arm, "seed0", scalars) for arm in ("l1", "l1_gpl")]
    compare_main(dirs + ["--name", "l1", "--name", "l1+gpl", "--out", str(tmp_path / "report"), "--no-progress"])
    md = (tmp_path / "report" / "compare.md").read_text()
    assert "| l1+gpl | 1 | PSNR |" in md
    assert "Per-class" not in md and "per-class" not in md
    assert not (tmp_path / "report" / "per_class_iou.csv").exists()


def test_out_onto_a_file_is_a_one_line_error(mmseg_runs, tmp_path):
    a_file = tmp_path / "report.md"
    a_file.write_text("mine")
    with pytest.raises(SystemExit, match=rf"compare: --out {a_file} is a file; give a folder"):
        compare_main([str(mmseg_runs / "baseline"), str(mmseg_runs / "gpl"), "--out", str(a_file),
                      "--no-progress"])
    assert a_file.read_text() == "mine"
    below = a_file / "sub"  # a folder that cannot be made: its parent is a file
    with pytest.raises(SystemExit, match=rf"compare: cannot write the report into {below}"):
        compare_main([str(mmseg_runs / "baseline"), str(mmseg_runs / "gpl"), "--out", str(below),
                      "--no-progress"])


def _detectron2_run(folder, ap):
    folder.mkdir(parents=True)
    lines = [{"iteration": 9, "total_loss": 1.0}, {"iteration": 19, "total_loss": 0.8, "segm/AP": ap}]
    (folder / "metrics.json").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return str(folder)


@pytest.mark.parametrize("case", ["existing file", "under a file"])
def test_out_onto_a_file_is_a_one_line_error_with_the_path(tmp_path, capsys, case):
    base = _detectron2_run(tmp_path / "base" / "seed0", 1.0)
    ours = _detectron2_run(tmp_path / "ours" / "seed0", 2.0)
    (tmp_path / "report.md").write_text("keep me\n")
    out = tmp_path / "report.md" if case == "existing file" else tmp_path / "report.md" / "sub"
    with pytest.raises(SystemExit) as exit_info:
        compare_main([os.path.dirname(base), os.path.dirname(ours), "--out", str(out), "--no-progress"])
    message = str(exit_info.value.code)
    assert message.startswith("compare: ") and str(tmp_path / "report.md") in message
    assert len(message.splitlines()) == 1
    assert (tmp_path / "report.md").read_text() == "keep me\n"


def test_out_error_from_the_command_line_has_no_traceback(tmp_path):
    import subprocess

    base = _detectron2_run(tmp_path / "base" / "seed0", 1.0)
    ours = _detectron2_run(tmp_path / "ours" / "seed0", 2.0)
    (tmp_path / "taken").write_text("x\n")
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "compare.py"), os.path.dirname(base),
                           os.path.dirname(ours), "--out", str(tmp_path / "taken"), "--no-progress"],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": REPO})
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert str(tmp_path / "taken") in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
