#!/usr/bin/env bash
# Set up, then train a small ANP on built-in GP data, evaluate it against the GP oracle and plot.
# Everything lands in runs/quickstart/ (metrics.txt, metrics.json, figures/, logs/, model/).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
run="${1:-runs/quickstart}"
if [ -f "$run/checkpoints/latest.json" ]; then
  .venv/bin/npkit train --resume --run-dir "$run"
else
  if [ -f "$run/config.yaml" ]; then
    echo "quickstart: $run was stopped before its first checkpoint; starting it again" >&2
    rm -rf "$run"
  fi
  .venv/bin/npkit train quickstart --run-dir "$run"
fi
.venv/bin/npkit eval "$run"
.venv/bin/npkit plot "$run"
