# `make run` and `make test` are the two commands; both create .venv on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
TORCH  := torch==2.13.0

.PHONY: run test venv test-tools clean-db clean

run: $(STAMP)
	$(VENV)/bin/mlco run

test: $(STAMP) test-tools
	$(PY) -m pytest $(PYTEST_ARGS)

# Tools the tests drive for real but that cannot share .venv: checkov (own venv), chromium (apt).
# Both scripts return at once when the tool is already there.
test-tools:
	bash tools/install_checkov.sh
	bash tools/install_browser.sh

venv: $(STAMP)

# Torch first, pinned to the CPU build on disk, so the project's looser range installs nothing more.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet $(TORCH)
	$(PIP) install --quiet -e '.[dev,dashboard]'
	touch $(STAMP)

clean-db:
	-$(VENV)/bin/mlco db stop
	rm -rf .mlco/pgdata

clean: clean-db
	rm -rf $(VENV) .mlco
