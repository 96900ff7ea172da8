"""tools/layer_shares.py and randperc_plugins.analysis: the table it prints, its inputs, the README's copy."""
import doctest
import os
import re

import pytest
import torch

from randperc_plugins.analysis import layer_shares, task_inputs
from randperc_plugins.losses import RandomCNNPerceptualLoss

README = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                      "README.md")


pytestmark = pytest.mark.usefixtures("one_thread")


def test_docstring_examples_run():
    pytest.importorskip("skimage")
    for module in (layer_shares, task_inputs):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.attempted >= 1 and result.failed == 0


def test_shares_are_each_terms_value_and_gradient_norm_over_the_sums():
    pytest.importorskip("skimage")
    layers = ("relu1_1", "relu2_1")
    shares = layer_shares.layer_shares("sr", init="kaiming", layers=layers)
    # independently: each layer alone (layer_weights), its value and its gradient norm on the prediction
    gt = task_inputs.photo_crops(layer_shares.SR_SIZE)
    bicubic = task_inputs.bicubic_prediction(gt, layer_shares.SR_SCALE)
    values, norms = [], []
    for name in layers:
        pred = task_inputs.sr_prediction(gt, bicubic, layer_shares.SR_QUALITY)
        value = RandomCNNPerceptualLoss(init="kaiming", layers=layers, layer_weights={name: 1.0})(pred, gt)
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


def test_readme_holds_the_command_and_a_table_in_the_tools_format():
    text = open(README).read()
    assert "python tools/layer_shares.py" in text
    header = ("| task | init | balance | relu1_2 loss % / grad % | relu2_2 loss % / grad % | "
              "relu3_4 loss % / grad % | every layer >= 11.1% |")
    assert header in text
    table = text[text.index(header):].split("\n\n")[0].splitlines()
    assert len(table) == 2 + 2 * 2 * 3  # tasks x inits x balances
    for line in table[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        pairs = [tuple(float(v) for v in re.split(r" / ", c)) for c in cells[3:6]]
        assert sum(p[0] for p in pairs) == pytest.approx(100, abs=0.3)
        assert sum(p[1] for p in pairs) == pytest.approx(100, abs=0.3)
        assert cells[6] == ("yes" if min(min(p) for p in pairs) >= 100 / 9 else "no")
