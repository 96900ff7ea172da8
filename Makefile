# The two commands of the README: `make demo` and `make test`. Both build .venv first when needed.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.randperc-env
PYTEST_ARGS ?=

.PHONY: env demo test test-slow test-all bench clean-env

env: $(STAMP)

# The stamp is written only after a complete install, so an interrupted build is resumed next time,
# and a complete one is rebuilt only when the files that define it change.
$(STAMP): constraints.txt setup.cfg pyproject.toml tools/setup_env.sh
	bash tools/setup_env.sh $(VENV)
	touch $@

demo: env
	$(PY) tools/demo.py

# pytest's exit code 5 means "no tests collected": not a failure for this project.
test: env
	$(PY) -m pytest $(PYTEST_ARGS) || { rc=$$?; [ $$rc -eq 5 ] && echo "pytest: no tests collected" || exit $$rc; }

test-slow: env
	$(MAKE) test PYTEST_ARGS="--runslow $(PYTEST_ARGS)"

bench: env
	$(PY) tools/benchmark.py all

clean-env:
	rm -rf $(VENV)
