# `make run` and `make test` are the two commands; both create .venv on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
TORCH  := torch==2.13.0

.PHONY: run test test-fast lint venv test-tools images images-cuda clean-db clean

run: $(STAMP)
	$(VENV)/bin/mlco run

test: $(STAMP) test-tools
	$(PY) -m pytest $(PYTEST_ARGS)

# The inner loop: everything but the tests marked slow, container or gpu (`make test` runs all).
test-fast: $(STAMP) test-tools
	$(PY) -m pytest -m "not slow and not container and not gpu" $(PYTEST_ARGS)

# ruff (lint and format check) and mypy, as configured in pyproject.toml.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Tools the tests drive for real but that cannot share .venv: checkov (own venv), chromium (apt).
# Both scripts return at once when the tool is already there.
test-tools:
	bash tools/install_checkov.sh
	bash tools/install_browser.sh

venv: $(STAMP)

# The CPU image (ml-cloud-optimizer:local) and the lean predictor image, from docker/Dockerfile.
# Needs a running Docker daemon (tools/start_docker.sh starts Debian's).
images: $(STAMP)
	bash tools/build_images.sh

# The CUDA image of the sequence-training step: the same Dockerfile with torch's CUDA build from
# the PyTorch index (which these development machines cannot reach).
images-cuda: $(STAMP)
	FLAVOR=cuda TORCH_VARIANT=cu128 TORCH_INDEX=https://download.pytorch.org/whl/cu128 bash tools/build_images.sh

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
