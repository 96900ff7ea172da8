"""tools/layer_shares.py and experiments.analysis: the table it prints, its inputs, the copy in docs/losses.md."""
import doctest
import os
import re

import pytest
import torch

from experiments.analysis import layer_shares, task_inputs
from randperc_plugins.losses import RandomCNNPerceptualLoss, tasks

# The docs page of the losses holds the table (its section "Layer shares of the random-CNN loss").
PAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                    "docs", "losses.md")


pytestmark = pytest.mark.usefixtures("one_thread")


def test_docstring_examples_run():
    pytest.importorskip("skimage")
    for module in (layer_shares, task_inputs):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.attempted >= 1 and result.failed == 0


def test_shares_are_each_terms_value_and_gradient_norm_over_the_sums():
    pytest.importorskip("skimage")
    layers = ("relu1_1", "relu2_1")
    shares = layer_shares.layer_shares("restoration", init="kaiming", layers=layers)
    # independently: each layer alone (layer_weights), its value and its gradient norm on the prediction
    gt = task_inputs.photo_crops(layer_shares.SR_SIZE)
    bicubic = task_inputs.bicubic_prediction(gt, layer_shares.SR_SCALE)
    values, norms = [], []
    for name in layers:
        pred = task_inputs.sr_prediction(gt, bicubic, layer_shares.SR_QUALITY)
        value = RandomCNNPerceptualLoss(init="kaiming", layers=layers, layer_weights={name: 1.0},
                                        widths=tasks.task_defaults("restoration", "random_cnn")["widths"])(pred, gt)
        (grad,) = torch.autograd.grad(value, pred)
        values.append(value.item())
        norms.append(grad.norm().item())
    for i, name in enumerate(layers):
        assert shares[name]["loss"] == pytest.approx(values[i] / sum(values), rel=1e-5)
        assert shares[name]["grad"] == pytest.approx(norms[i] / sum(norms), rel=1e-5)


def test_tool_prints_one_row_per_init_and_balance(capsys):
    pytest.importorskip("skimage")
    pytest.importorskip("mmengine")
    rows = layer_shares.main(["--tasks", "segmentation", "--inits", "gpl", "--balances", "none", "init",
                              "--layers", "relu1_1", "relu2_1"])
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0] == ("| task | init | balance | relu1_1 loss % / grad % | relu2_1 loss % / grad % | "
                      "every layer >= 16.7% |")
    assert len(out) == 4 and out[2].startswith("| segmentation | 'gpl' | 'none' |")
    assert [r["balance"] for r in rows] == ["none", "init"]
    first = rows[0]["shares"]["relu1_1"]
    assert f"{100 * first['loss']:.1f} / {100 * first['grad']:.1f}" in out[2]
    with pytest.raises(ValueError, match="`num_layers`"):
        layer_shares.share_floor(0)


def test_defaults_gives_one_row_per_task_at_its_own_settings(capsys):
    pytest.importorskip("skimage")
    pytest.importorskip("mmengine")
    layers = ["relu1_1", "relu2_1"]
    rows = layer_shares.main(["--defaults", "--layers", *layers])
    out = capsys.readouterr().out.strip().splitlines()
    assert [r["task"] for r in rows] == list(layer_shares.TASKS) and len(out) == 2 + len(rows)
    for row, line in zip(rows, out[2:]):
        settings = tasks.task_defaults(row["task"], "random_cnn")
        assert row["balance"] == settings.get("balance", "init")  # the core's documented defaults
        assert row["init"] == settings.get("init", "gpl")
        assert line.startswith(f"| {row['task']} (default) | '{row['init']}' | '{row['balance']}' |")
        assert row["shares"] == layer_shares.layer_shares(row["task"], layers=tuple(layers))


def test_instance_mask_shares_compare_the_sigmoid_of_the_roi_logits_with_the_targets():
    layers = ("relu1_1", "relu2_1")
    shares = layer_shares.layer_shares("instance_masks", init="kaiming", layers=layers)
    target = task_inputs.roi_targets(layer_shares.ROI_COUNT)
    values = []
    for name in layers:
        logits = task_inputs.roi_logits(target, layer_shares.ROI_QUALITY, torch.Generator().manual_seed(0))
        loss = RandomCNNPerceptualLoss(init="kaiming", layers=layers, layer_weights={name: 1.0},
                                       widths=tasks.task_defaults("instance_masks", "random_cnn")["widths"])
        values.append(loss(torch.sigmoid(logits), target[:, None]).item())
    for i, name in enumerate(layers):
        assert shares[name]["loss"] == pytest.approx(values[i] / sum(values), rel=1e-5)


def test_every_compared_layer_counts_at_each_tasks_default():
    """The defaults' promise: no compared layer of the random-CNN loss is negligible (below a third of
    an equal share of the loss or of its gradient) at any task's default settings."""
    pytest.importorskip("skimage")
    rows = layer_shares.default_rows()
    assert all(r["counts"] for r in rows), layer_shares.format_shares(rows)


def test_docs_hold_the_command_and_a_table_in_the_tools_format():
    text = open(PAGE).read()
    assert "python tools/layer_shares.py" in text
    header = ("| task | init | balance | relu1_2 loss % / grad % | relu2_2 loss % / grad % | "
              "relu3_4 loss % / grad % | every layer >= 11.1% |")
    assert header in text
    tables = [part.strip("\n").split("\n\n")[0].splitlines() for part in text.split(header)[1:]]
    # tasks x inits x balances, then one row per task at its defaults (`--defaults`)
    assert [len(t) for t in tables] == [1 + len(layer_shares.TASKS) * 2 * 3, 1 + len(layer_shares.TASKS)]
    assert all(line.startswith(f"| {task} (default) |") for task, line in zip(layer_shares.TASKS, tables[1][1:]))
    for line in tables[0][1:] + tables[1][1:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        pairs = [tuple(float(v) for v in re.split(r" / ", c)) for c in cells[3:6]]
        assert sum(p[0] for p in pairs) == pytest.approx(100, abs=0.3)
        assert sum(p[1] for p in pairs) == pytest.approx(100, abs=0.3)
        assert cells[6] == ("yes" if min(min(p) for p in pairs) >= 100 / 9 else "no")
