"""The core tier (`make test-core`, tests marked `core` by tests/conftest.py) runs without any training
framework: here every framework is made unimportable, in pytest and in the processes its tests start."""
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Imported by every Python process started with this folder on PYTHONPATH: importing a framework then
# fails as if it were not installed, with a reason this test can find.
BLOCKER = '''
import importlib.abc, importlib.machinery, sys

FRAMEWORKS = {"mmengine", "mmcv", "mmseg", "mmagic", "mmdet", "detectron2"}


class _NotInstalled(importlib.abc.Loader):
    def create_module(self, spec):
        raise ModuleNotFoundError(f"No module named {spec.name!r} (blocked by test_core_tier)",
                                  name=spec.name)

    def exec_module(self, module):
        pass


class _BlockFrameworks(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in FRAMEWORKS:
            return importlib.machinery.ModuleSpec(name, _NotInstalled())
        return None


sys.meta_path.insert(0, _BlockFrameworks())
'''


def _pytest(args, blocker_dir):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(blocker_dir), REPO]), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def test_the_blocker_blocks(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    code = "import mmseg"
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode != 0 and "blocked by test_core_tier" in proc.stderr


def test_core_tier_passes_with_every_framework_unimportable(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    proc = _pytest(["-m", "core"], tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    assert "blocked by test_core_tier" not in out, out[-5000:]  # no test skipped for want of one
    assert " passed" in out
