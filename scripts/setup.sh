#!/usr/bin/env bash
# Create .venv (if missing) and install npkit with the given extras, torch pinned by constraints.txt.
# Usage: bash scripts/setup.sh [extras]   e.g. bash scripts/setup.sh dev
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python3 -m venv .venv
.venv/bin/python -m pip install -q -c constraints.txt -e ".${extras:+[$extras]}"
