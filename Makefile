# Every target sets itself up: a fresh clone needs only Python 3.10+ and make.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
FMNIST := /usr/share/datasets/fashion-mnist

.PHONY: demo test test-fast lint bench data clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# Fashion-MNIST comes from Debian's dataset-fashion-mnist package when apt is usable.
data:
	@test -d $(FMNIST) || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist graphviz) >/dev/null; } || \
	  echo "Fashion-MNIST not found in $(FMNIST): install Debian's dataset-fashion-mnist or pass --data-dir"

# The training line ends with the test accuracy and the training time; the last line is the wall time.
demo: $(STAMP) data
	@start=$$(date +%s.%N); \
	$(VENV)/bin/cnnlab train --model alexnet_fast --dataset fashion-mnist --recipe fast --out runs/demo --overwrite && \
	awk -v a=$$start -v b=$$(date +%s.%N) -F '  +' '/^final test accuracy/ { acc = $$2 } /^train seconds/ { t = $$2 } \
	  END { printf "demo: test accuracy %s after %s s of training; %.1f s wall time (set-up, data, training, evaluation, report)\n", acc, t, b - a }' \
	  runs/demo/summary.txt

test: $(STAMP)
	$(VENV)/bin/pytest -n 2 -q

test-fast: $(STAMP)
	$(VENV)/bin/pytest -n 2 -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: $(STAMP) data
	bash bench/run.sh

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
