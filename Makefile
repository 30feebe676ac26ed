# Every target sets itself up: a fresh clone needs only Python 3.10+ and make.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
FMNIST := /usr/share/datasets/fashion-mnist
APT ?= apt-get

.PHONY: demo test test-fast lint bench deps data clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# What some commands and tests use beyond Python: Fashion-MNIST (the demo, the real-data tests), Graphviz's `dot`
# (diagrams) and Chromium (the report page rendered by its test), from Debian packages. Installed with apt-get when
# run as root on Debian; otherwise the missing ones are named and the tests that need them skip (CI: .ci/run).
# `make deps APT=none` only reports.
MISSING = { test -d $(FMNIST) || echo dataset-fashion-mnist; command -v dot >/dev/null || echo graphviz; \
	  command -v chromium >/dev/null || command -v chromium-browser >/dev/null || echo chromium; }

deps:
	@missing=$$($(MISSING) | xargs); \
	if [ -n "$$missing" ] && command -v $(APT) >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  echo "installing with $(APT): $$missing"; \
	  ($(APT) update -qq && DEBIAN_FRONTEND=noninteractive $(APT) install -y -qq $$missing) >/dev/null; \
	  missing=$$($(MISSING) | xargs); \
	fi; \
	if [ -n "$$missing" ]; then \
	  echo "not installed: $$missing (as root on Debian: apt-get install $$missing); the tests that need them will be skipped"; \
	  test -d $(FMNIST) || echo "Fashion-MNIST not found in $(FMNIST): the demo needs it (or --data-dir)"; \
	fi

# Kept for old habits: `make data` is `make deps`.
data: deps

# The training line ends with the test accuracy and the training time; the last line is the wall time.
demo: $(STAMP) deps
	@start=$$(date +%s.%N); \
	$(VENV)/bin/cnnlab train --model alexnet_fast --dataset fashion-mnist --recipe fast --out runs/demo --overwrite && \
	awk -v a=$$start -v b=$$(date +%s.%N) -F '  +' '/^final test accuracy/ { acc = $$2 } /^train seconds/ { t = $$2 } \
	  END { printf "demo: test accuracy %s after %s s of training; %.1f s wall time (set-up, data, training, evaluation, report)\n", acc, t, b - a }' \
	  runs/demo/summary.txt

test: $(STAMP) deps
	$(VENV)/bin/pytest -n 2 -q -rs

test-fast: $(STAMP) deps
	$(VENV)/bin/pytest -n 2 -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: $(STAMP) deps
	bash bench/run.sh

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
