#!/usr/bin/env bash
# The GPU check (at most 8 minutes): every method for a few steps on CUDA, then the SimCLR
# ResNet-18 step timed against the bare backbone and against the same step in fp32. Rows go
# to benchmarks/results/gpu.jsonl (with the GPU's name, torch version and commit).
#
#   benchmarks/gpu_check.sh                 # PYTHON=... to pick the interpreter
#
# Exits 3 with one line when there is no usable CUDA device; nothing is run or recorded.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"

if ! "$PY" -c "import torch" 2>/dev/null; then
    echo "gpu_check: $PY cannot import torch; run make first or set PYTHON" >&2
    exit 2
fi
status=0
"$PY" benchmarks/gpu_check.py --check || status=$?
if [ "$status" -ne 0 ]; then
    exit "$status"
fi
# 480 s in all; what finished before the limit is already recorded
timeout --signal=INT --kill-after=20 480 \
    "$PY" scripts/record.py gpu -- "$PY" benchmarks/gpu_check.py "$@" || status=$?
if [ "$status" -eq 124 ]; then
    echo "gpu_check: stopped at the 8-minute limit; rows so far are in benchmarks/results/gpu.jsonl" >&2
fi
exit "$status"
