# The commands of the README: `make demo`, `make test`, the fast `make test-core` and `make docs`. Each
# builds its environment first when needed.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.randperc-env
# The framework-free tier: torch and the test extras only, no mmcv build.
CORE_VENV  ?= .venv-core
CORE_PY    := $(CORE_VENV)/bin/python
CORE_STAMP := $(CORE_VENV)/.randperc-core-env
PYTHON ?= python3.11
PYTEST_ARGS ?=

# pytest's exit code 5 means "no tests collected": not a failure for this project.
run-pytest = $(1) -m pytest $(2) || { rc=$$?; [ $$rc -eq 5 ] && echo "pytest: no tests collected" || exit $$rc; }

.PHONY: env env-core demo demo-readme test test-core test-slow test-all bench docs clean-env

env: $(STAMP)

# The stamp is written only after a complete install, so an interrupted build is resumed next time,
# and a complete one is rebuilt only when the files that define it change.
$(STAMP): constraints.txt setup.cfg pyproject.toml tools/setup_env.sh
	bash tools/setup_env.sh $(VENV)
	touch $@

# torch comes pinned by constraints.txt, the same wheel the full environment installs, so pip's cache
# serves it to both: CI downloads torch once.
env-core: $(CORE_STAMP)

$(CORE_STAMP): constraints.txt setup.cfg pyproject.toml
	$(PYTHON) -m venv $(CORE_VENV)
	$(CORE_PY) -m pip install --disable-pip-version-check -q -c constraints.txt -e ".[test]"
	touch $@

demo: env
	$(PY) tools/demo.py

# After `make demo`: record its run (docs/demo_results.json, the pictures) and rewrite the demo results
# of docs/demo.md and the README's headline table from it.
demo-readme: env
	$(PY) tools/demo_readme.py demo_report

test: env
	$(call run-pytest,$(PY),$(PYTEST_ARGS))

# The tests marked `core` (tests/conftest.py says which): they import torch and the core only.
test-core: env-core
	$(call run-pytest,$(CORE_PY),-m core $(PYTEST_ARGS))

test-slow: env
	$(MAKE) test PYTEST_ARGS="--runslow $(PYTEST_ARGS)"

bench: env
	$(PY) tools/benchmark.py all

# The documentation site (docs/, Markdown through MyST) into docs/_build/html; warnings are errors. Its
# requirements (docs/requirements.txt, pinned) are installed into the environment when missing.
docs: env
	$(PY) -m pip install --disable-pip-version-check -q -c constraints.txt -r docs/requirements.txt
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html

clean-env:
	rm -rf $(VENV) $(CORE_VENV)
