"""Running the training tools in subprocesses, as the train tests of every OpenMMLab adapter do."""
import os
import socket
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tool_env(paths=(), **extra) -> dict:
    """The environment of a tool run: this checkout and ``paths`` importable, one thread per process."""
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]
    env["PYTHONPATH"] = os.pathsep.join([REPO, *paths, env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    env.update(extra)
    return env


def run_tool(cmd, paths=(), **env) -> str:
    """Run ``cmd`` from the repository root; fail with its output's tail; return stdout + stderr."""
    proc = subprocess.run(cmd, cwd=REPO, env=tool_env(paths, **env), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc.stdout + proc.stderr
