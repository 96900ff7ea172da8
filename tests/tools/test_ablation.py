"""The ablation tool: arms resolved over TASK_DEFAULTS and checked, equal-gradient-share weights, the
table built from compare results, and the quick segmentation run end to end (real MMSegmentation runs)."""
import csv
import glob
import json
import math

import numpy as np
import pytest
import torch

from experiments import calibration
from experiments.ablation import arms_of, calibrated_weights, select_arms, weights
from experiments.ablation.arms import AblationArm
from experiments.ablation.stages import config_line
from experiments.ablation.table import ablation_rows, markdown_table, write_csv
from randperc_plugins.compare.stats import difference
from randperc_plugins.losses import RandomCNNPerceptualLoss
from randperc_plugins.losses.tasks import task_defaults


# --- arms -----------------------------------------------------------------------------------------

def test_arms_are_overrides_merged_over_the_task_defaults():
    table = {"super_resolution": {"patch_mmd": {"p3": {"patch_size": 3}, "one": {"sigmas": (2.94,)}}}}
    reference, p3, one = arms_of("super_resolution", "patch_mmd", table)
    defaults = task_defaults("restoration", "patch_mmd")
    assert (reference.name, reference.settings, reference.resolved) == ("patch_mmd", {}, defaults)
    assert p3.resolved == {**defaults, "patch_size": 3} and p3.settings == {"patch_size": 3}
    assert one.resolved == {**defaults, "sigmas": (2.94,)}
    assert [a.name for a in arms_of("segmentation", "random_cnn")][0] == "gpl"
    # an override replaces the default of the same key; the other defaults stay
    table = {"super_resolution": {"patch_mmd": {"rf": {"method": "random_features"}}}}
    assert arms_of("super_resolution", "patch_mmd", table)[1].resolved == {**defaults, "method": "random_features"}
    p5 = {a.name: a for a in arms_of("segmentation", "patch_mmd")}["patch_mmd_p5"]
    assert (p5.name, p5.resolved["patch_size"], p5.resolved["max_size"]) == ("patch_mmd_p5", 5, 128)


def test_every_shipped_arm_builds_its_core_loss():
    for task in ("segmentation", "super_resolution"):
        for loss in ("random_cnn", "patch_mmd"):
            arms = arms_of(task, loss)
            assert len(arms) >= 3 and arms[0].is_reference and all(a.settings for a in arms[1:])


def test_unknown_setting_names_the_arm_and_the_key():
    table = {"segmentation": {"random_cnn": {"gpl_typo": {"initt": "kaiming"}}}}
    with pytest.raises(ValueError, match=r"`gpl_typo`.*unknown setting\(s\) `initt`"):
        arms_of("segmentation", "random_cnn", table)
    table = {"segmentation": {"patch_mmd": {"pmmd_typo": {"patch_sise": 5}}}}
    with pytest.raises(ValueError, match=r"`pmmd_typo`.*`patch_sise`"):
        arms_of("segmentation", "patch_mmd", table)


def test_refused_value_names_the_arm_and_the_setting():
    table = {"segmentation": {"random_cnn": {"gpl_bad": {"init": "orthogonal"}}}}
    with pytest.raises(ValueError, match=r"ablation arm `gpl_bad` \(random_cnn\) with init='orthogonal'.*`init`"):
        arms_of("segmentation", "random_cnn", table)
    table = {"super_resolution": {"patch_mmd": {"bad": {"patch_size": 0}}}}
    with pytest.raises(ValueError, match=r"`bad`.*patch_size=0.*`patch_size`"):
        arms_of("super_resolution", "patch_mmd", table)


def test_select_arms_keeps_each_reference_and_refuses_unknown_names():
    chosen = select_arms("segmentation", ["random_cnn", "patch_mmd"], ["gpl_kaiming"])
    assert {loss: [a.name for a in arms] for loss, arms in chosen.items()} == {
        "random_cnn": ["gpl", "gpl_kaiming"]}
    quick = select_arms("segmentation", ["random_cnn", "patch_mmd"], quick=True)
    assert {loss: [a.name for a in arms] for loss, arms in quick.items()} == {
        "random_cnn": ["gpl", "gpl_balance_none"]}
    with pytest.raises(ValueError, match=r"`--arms` names \['gpl_nope'\]"):
        select_arms("segmentation", ["random_cnn"], ["gpl_nope"])


def test_main_refuses_a_bad_arm_before_training(tmp_path, monkeypatch):
    from experiments.ablation import arms as arms_module
    from experiments.ablation import cli

    monkeypatch.setitem(arms_module.ABLATIONS, "segmentation",
                        {"random_cnn": {"gpl_bad": {"distance": "cosine"}}})
    with pytest.raises(SystemExit, match=r"ablate: ablation arm `gpl_bad`.*`distance`"):
        cli.main(["segmentation", "--loss", "random_cnn", "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_loss_takes_the_core_names_and_the_earlier_spelling_with_a_warning():
    from experiments.ablation.cli import parse_args

    assert parse_args(["segmentation", "--loss", "random_cnn"]).loss == "random_cnn"
    assert parse_args(["segmentation"]).loss == "both"
    with pytest.warns(FutureWarning, match="'gpl' is an earlier spelling of 'random_cnn'"):
        assert parse_args(["segmentation", "--loss", "gpl"]).loss == "random_cnn"


def test_seeds_below_three_are_refused(capsys):
    from experiments.ablation.cli import parse_args

    with pytest.raises(SystemExit):
        parse_args(["segmentation", "--seeds", "2"])
    assert "`--seeds` must be at least 3" in capsys.readouterr().err


def test_config_line_holds_the_overrides_and_the_weight():
    arm = arms_of("super_resolution", "patch_mmd")[1]
    line = config_line("super_resolution", arm, 0.25)
    scope = {"dict": dict}
    exec(line, scope)
    assert scope["model"] == {"pixel_loss": {"type": "randperc_plugins.mmagic.AddPatchMMDLoss",
                                             "perceptual": {**arm.settings, "loss_weight": 0.25}}}


# --- weights --------------------------------------------------------------------------------------

@pytest.fixture
def small_point(monkeypatch):
    # a smaller crop than the demo's, so the test is fast; the rule does not depend on it
    monkeypatch.setitem(weights.CALIBRATION_POINTS, "segmentation", dict(num_classes=4, size=(32, 32)))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tool calibrates in one thread too (a shared machine)
    yield
    torch.set_num_threads(threads)


def test_a_variant_ten_times_larger_gets_a_tenth_of_the_weight(small_point):
    table = {"segmentation": {"random_cnn": {"x10": {"layer_weights": (10.0, 10.0, 10.0)},
                                             "fixed": {"init": "kaiming", "loss_weight": 0.7}}}}
    arms = arms_of("segmentation", "random_cnn", table)
    w = calibrated_weights("segmentation", arms)
    default_weight = task_defaults("segmentation", "random_cnn")["loss_weight"]
    assert w["gpl"] == default_weight
    assert w["x10"] == pytest.approx(default_weight / 10, rel=1e-5)
    assert w["fixed"] == 0.7  # the arm's own weight: not calibrated


def test_calibrated_weight_equalises_the_gradient_share(small_point):
    """Gradients of the weighted terms, measured here on the calibration's inputs: the variant at its
    weight pulls on the logits as hard, relative to cross-entropy, as the default at its weight."""
    arms = arms_of("segmentation", "random_cnn",
                   {"segmentation": {"random_cnn": {"k": {"init": "kaiming", "balance": "none"}}}})
    w = calibrated_weights("segmentation", arms)
    assert not math.isclose(w["k"], w["gpl"], rel_tol=0.1)  # unbalanced kaiming changes the term's scale

    def share(settings):
        loss = RandomCNNPerceptualLoss(**settings)  # the weight as the arm trains with it
        return calibration.segmentation_rows(loss, 4, (32, 32))[-1]["grad_ratio"]

    shared_default = share(arms[0].resolved)
    shared_variant = share({**arms[1].resolved, "loss_weight": w["k"]})
    assert shared_variant == pytest.approx(shared_default, rel=1e-5)


def test_first_arm_must_be_the_reference():
    arm = AblationArm("v", "random_cnn", {"init": "kaiming"}, {"init": "kaiming", "loss_weight": 5.0})
    with pytest.raises(ValueError, match="reference"):
        calibrated_weights("segmentation", [arm])


# --- table ----------------------------------------------------------------------------------------

def _compare_result(reference, values, classes):
    rows = []
    for metric, per_arm in values.items():
        for kind in ("final", "best"):
            for arm, vals in per_arm.items():
                rows.append(dict(arm=arm, metric=metric, kind=kind, seeds=len(vals), mean=float(np.mean(vals)),
                                 std=float(np.std(vals, ddof=1)), values=vals, higher_is_better=True,
                                 diff=None if arm == reference else difference(vals, per_arm[reference])))
    class_rows = [dict(cls=cls, arm=arm, baseline=float(np.mean(per_arm[reference])),
                       mean=float(np.mean(vals)), diff=difference(vals, per_arm[reference]))
                  for cls, per_arm in classes.items() for arm, vals in per_arm.items() if arm != reference]
    return dict(rows=rows, class_rows=class_rows)


def test_table_rows_from_hand_made_compare_results(tmp_path):
    arms = {a.name: a for a in arms_of("segmentation", "random_cnn")}
    result = _compare_result("gpl", {"mIoU": {"gpl": [50.0, 51.0, 52.0], "gpl_kaiming": [60.0, 61.0, 62.0],
                                              "gpl_mse": [50.5, 52.5, 51.0]}},
                             {"line": {"gpl": [10.0, 11.0, 12.0], "gpl_kaiming": [9.0, 11.0, 12.5],
                                       "gpl_mse": [20.0, 20.5, 21.0]}})
    weights_ = {"gpl": 5.0, "gpl_kaiming": 0.87, "gpl_deeper": 5.0, "gpl_mse": 24.0}
    rows = ablation_rows(result, "gpl", arms, weights_)
    by = {(r["arm"], r["metric"]): r for r in rows}
    assert set(by) == {("gpl_kaiming", "mIoU"), ("gpl_mse", "mIoU"), ("gpl_kaiming", "IoU.line"),
                       ("gpl_mse", "IoU.line")}
    kaiming = by[("gpl_kaiming", "mIoU")]
    assert kaiming["diff"].value == pytest.approx(10.0) and kaiming["diff"].verdict() == "significant"
    assert kaiming["reference_mean"] == 51.0 and kaiming["loss_weight"] == 0.87
    assert kaiming["settings"] == "init='kaiming', balance='none'"
    assert by[("gpl_mse", "mIoU")]["diff"].verdict() == "not significant"
    assert by[("gpl_kaiming", "IoU.line")]["diff"].verdict() == "not significant"
    assert by[("gpl_mse", "IoU.line")]["diff"].value == pytest.approx(9.5)

    md = markdown_table(rows, ("mIoU", "IoU.line")).splitlines()
    assert len(md) == 2 + 4
    assert md[2].startswith("| gpl_kaiming | init='kaiming', balance='none' | 0.87 | mIoU | gpl | 51 | 61 | +10 | [")
    assert md[2].endswith("| significant (welch) |")
    assert "| gpl_mse | distance='mse' | 24 | IoU.line | gpl | 11 | 20.5 | +9.5 |" in md[5]
    assert len(markdown_table(rows, ("mIoU",)).splitlines()) == 2 + 2

    write_csv(tmp_path / "a.csv", rows)
    with open(tmp_path / "a.csv") as f:
        written = list(csv.DictReader(f))
    assert len(written) == 4 and float(written[0]["diff"]) == pytest.approx(rows[0]["diff"].value)
    assert {r["verdict"] for r in written} == {"significant", "not significant"}


# --- end to end -----------------------------------------------------------------------------------

def _final(scalars, metric):
    with open(scalars) as f:
        return [json.loads(line) for line in f if f'"{metric}"' in line][-1][metric]


@pytest.mark.slow
def test_quick_segmentation_ablation_matches_the_runs(tmp_path, capsys):
    pytest.importorskip("mmseg")
    from experiments.ablation import main

    out = tmp_path / "ablation"
    result = main(["segmentation", "--quick", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "9 runs (3 arms incl. the baseline 'ce' x 3 seeds, 20 iterations each" in printed
    assert "| gpl_balance_none | random_cnn | balance='none' |" in printed
    for name in ("ablation.md", "ablation.csv", "gpl_vs_default/compare.md", "vs_baseline/compare.md"):
        assert (out / name).is_file(), name

    def finals(arm):
        paths = glob.glob(str(out / "runs" / "segmentation" / arm / "seed*" / "*" / "vis_data" / "scalars.json"))
        return [_final(p, "mIoU") for p in sorted(paths)]

    with open(out / "ablation.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["metric"] == "mIoU"]
    assert [(r["arm"], r["reference"]) for r in rows] == [("gpl_balance_none", "gpl"), ("gpl", "ce"),
                                                           ("gpl_balance_none", "ce")]
    for r in rows:
        arm, ref = finals(r["arm"]), finals(r["reference"])
        assert len(arm) == len(ref) == 3
        assert float(r["mean"]) == pytest.approx(np.mean(arm))
        assert float(r["diff"]) == pytest.approx(np.mean(arm) - np.mean(ref))
        assert r["ci_method"] in ("welch", "no seed variance")
        assert float(r["loss_weight"]) == pytest.approx(result["weights"][r["arm"]])
    assert result["weights"]["gpl"] == task_defaults("segmentation", "random_cnn")["loss_weight"]
    # the term trained in the loss arms only (mmseg logs it beside the cross-entropy)
    for arm, has_term in (("ce", False), ("gpl", True), ("gpl_balance_none", True)):
        for scalars in glob.glob(str(out / "runs" / "segmentation" / arm / "seed*" / "*" / "vis_data"
                                     / "scalars.json")):
            assert ('"decode.loss_gpl"' in open(scalars).read()) == has_term, (arm, scalars)
    # the weight trained is the one recorded: in the config the runner dumped
    dumped = glob.glob(str(out / "runs" / "segmentation" / "gpl_balance_none" / "seed0" / "*.py"))
    assert dumped and f"{result['weights']['gpl_balance_none']!r}"[:8] in open(dumped[0]).read()
    md = (out / "ablation.md").read_text()
    assert "| gpl_balance_none | balance='none' |" in md and "| mIoU | gpl |" in md and "| mIoU | ce |" in md
