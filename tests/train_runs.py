"""What the OpenMMLab training tests share: running tools/train.py and tools/dist_train.sh in a subprocess
with this checkout (and the test's folder, for test-only hooks) importable, and reading the run's log."""
import glob
import json
import os
import socket
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_config(tmp_path, base, name, body):
    """A config file ``name.py`` in ``tmp_path`` that inherits ``base`` and adds ``body``."""
    path = tmp_path / f"{name}.py"
    path.write_text(f"_base_ = {base!r}\n{body}\n")
    return str(path)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_tool(cmd, test_dir, **env):
    """Run ``cmd`` in the checkout with ``test_dir`` importable; fail the test with its output if it fails."""
    full_env = dict(os.environ)
    full_env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + full_env["PATH"]
    full_env["PYTHONPATH"] = os.pathsep.join([REPO, test_dir, full_env.get("PYTHONPATH", "")])
    full_env["OMP_NUM_THREADS"] = "1"
    full_env.update(env)
    proc = subprocess.run(cmd, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc.stdout + proc.stderr


def logged_scalars(work_dir):
    """Every row of ``vis_data/scalars.json`` of the latest run in ``work_dir`` (one run per folder)."""
    path = sorted(glob.glob(os.path.join(work_dir, "*", "vis_data", "scalars.json")))[-1]
    with open(path) as f:
        return [json.loads(line) for line in f]
