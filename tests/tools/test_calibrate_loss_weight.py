"""tools/calibrate_loss_weight.py: the loss and task names, and the earlier spellings it still takes."""
import importlib.util
import os

import pytest

pytest.importorskip("mmengine")  # its --loss-options parser

TOOL = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                    "tools", "calibrate_loss_weight.py")


def _tool():
    spec = importlib.util.spec_from_file_location("calibrate_loss_weight_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_names_and_earlier_spellings_give_the_same_rows(capsys):
    tool = _tool()
    args = ["--num-classes", "4", "--size", "32", "32", "--batch", "1",
            "--loss-options", "patch_size=3", "max_size=32"]
    rows = tool.main(["patch_mmd", *args])
    with pytest.warns(FutureWarning, match="'patch-mmd' is an earlier spelling of 'patch_mmd'"):
        old = tool.main(["patch-mmd", *args])
    assert rows == old and len(rows) == 3
    assert "suggested loss_weight" in capsys.readouterr().out


def test_an_unknown_loss_or_task_is_refused(capsys):
    tool = _tool()
    with pytest.raises(SystemExit):
        tool.main(["vgg"])
    assert "`loss` must be one of ('random_cnn', 'patch_mmd')" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        tool.main(["random_cnn", "--task", "depth"])
