#!/usr/bin/env bash
# The README's main-job command: installs (if needed), then collects demonstrations, trains,
# evaluates and writes a report with videos into runs/quickstart. Extra args go to the command.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
vla-sim quickstart "$@"
