#!/usr/bin/env bash
# Rerun every benchmark on this machine and update BENCHMARKS.md (about 15 minutes on 2 CPU cores).
#
#   bash bench/run.sh            full run: waits (up to 20 min) for a quiet machine, then writes BENCHMARKS.md
#   bash bench/run.sh --quick    tiny budgets, a smoke test of every script; writes nothing
#   bash bench/run.sh --no-wait  full run without waiting for the load average to drop
#
# Every figure is a ratio against a peer measured in the same run; see BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
QUICK=() WRITE=(--write) WAIT=1
for arg in "$@"; do
  case "$arg" in
    --quick) QUICK=(--quick) WRITE=() WAIT=0 ;;
    --no-wait) WAIT=0 ;;
    *) echo "bench/run.sh: unknown option $arg (use --quick or --no-wait)" >&2; exit 2 ;;
  esac
done
if [ "$WAIT" = 1 ]; then
  # Other work on a 2-core machine distorts every figure: wait for a 1-minute load average below 1.5.
  "$PY" -c 'from bench.common import wait_for_quiet; print(f"load average {wait_for_quiet(1.5, 1200):.2f}")'
fi
start=$SECONDS
"$PY" -m bench.train_step "${QUICK[@]}" "${WRITE[@]}"
"$PY" -m bench.pipeline "${QUICK[@]}" "${WRITE[@]}"
# The fast recipe as `make demo` runs it (2 epochs) reaches 90-91%: time to 90%, the demo's goal.
# `python -m bench.tta --target 0.93 --epochs N` measures the 93% goal with longer schedules.
"$PY" -m bench.tta --target 0.90 "${QUICK[@]}" "${WRITE[@]}"
"$PY" -m bench.startup "${QUICK[@]}" "${WRITE[@]}"
if "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  "$PY" -m bench.gpu "${QUICK[@]}" "${WRITE[@]}"
else
  echo "bench/run.sh: no CUDA device, skipping bench/gpu.py (its section of BENCHMARKS.md stays as it was)"
fi
echo "bench/run.sh: done in $((SECONDS - start)) s"
