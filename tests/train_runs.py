"""What the OpenMMLab training tests share beside the ``run_tool`` fixture of tests/conftest.py: a config
that inherits a test config, the loss network as each rank saw it, and the run's logged scalars."""
import glob
import json
import os


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
