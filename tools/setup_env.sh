#!/usr/bin/env bash
# Create or repair the project's virtual environment (default .venv) with every framework installed.
#
#   bash tools/setup_env.sh [VENV]
#
# Idempotent: each step checks what is already there, so re-running after an interruption picks up where
# it stopped, and pip's wheel cache makes a rebuilt mmcv fast on the same machine. `make env` calls this
# only when the environment's stamp is older than the files that define it.
set -euo pipefail

VENV=${1:-.venv}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3.11}
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --disable-pip-version-check -c "$ROOT/constraints.txt")

step() { printf '\n== [setup_env %s] %s\n' "$(date +%T)" "$*"; }

if ! "$PY" -c 'import sys' 2>/dev/null; then
    step "creating $VENV with $PYTHON"
    "$PYTHON" -m venv --clear "$VENV"
fi

step "build tools"
"${PIP[@]}" -q "pip>=23" "setuptools<81" wheel ninja

step "torch"
"${PIP[@]}" -q torch torchvision

step "mmengine, numpy, opencv"
"${PIP[@]}" -q mmengine numpy opencv-python-headless

# mmcv 2.1.0 is only an sdist on PyPI: build its C++ ops against the installed torch (no build
# isolation), on every core. pip caches the built wheel, so a rebuild on this machine takes seconds.
if ! "$PY" -c 'import mmcv._ext' 2>/dev/null; then
    step "mmcv (full build with ops; 10-15 min on 2 cores the first time)"
    MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} "${PIP[@]}" --no-build-isolation mmcv
fi

step "randperc_plugins with every framework and the test tools"
"${PIP[@]}" -q -e "$ROOT[all]" \
    diffusers transformers huggingface_hub tokenizers opencv-python opencv-contrib-python pandas

# Detectron2 is on no package registry: install the wheel built from its official source when the
# project's wheel folder has one (CI and the project's machines); elsewhere the README's from-source
# install applies and the `detectron2` tests skip. Its PyPI dependencies are pinned in constraints.txt.
WHEELS=${RANDPERC_WHEELS:-$ROOT/../shared/wheels}
D2_WHEELS=("$WHEELS"/detectron2-*.whl)
if [ -e "${D2_WHEELS[0]}" ]; then
    if ! "$PY" -c 'import detectron2._C' 2>/dev/null; then
        step "detectron2 (wheel ${D2_WHEELS[-1]##*/})"
        "${PIP[@]}" -q "${D2_WHEELS[-1]}"
    fi
else
    step "detectron2: no wheel in $WHEELS; build it from source to run its tests (README 'Detectron2')"
fi

"$PY" - <<'PY'
import mmcv._ext, mmseg.models, mmagic.models, mmdet.models  # noqa: F401  fail loudly if incomplete
import randperc_plugins
print("environment ready:", randperc_plugins.__version__)
PY
