#!/usr/bin/env bash
# Create .venv (if missing) and install vla-sim with its test extras.
# torch is pinned to the CPU build first, so nothing later pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
python -m pip install -q "torch==${VLA_SIM_TORCH:-2.13.0}"
python -m pip install -q -e ".[dev]"
python -c "import torch, vla_sim; print('vla-sim', vla_sim.__version__, '| torch', torch.__version__)"
