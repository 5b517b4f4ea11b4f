#!/usr/bin/env bash
# Create .venv (if missing or built by an unsuitable Python) and install npkit with the given
# extras, torch pinned by constraints.txt.
# Usage: bash scripts/setup.sh [extras]   e.g. bash scripts/setup.sh dev   (PYTHON=python3.11 to choose)
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python="${PYTHON:-python3}"
supported='import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'
if ! "$python" -c "$supported" 2>/dev/null; then
  echo "setup: $python is $("$python" --version 2>&1 || echo missing); npkit needs Python >= 3.11 (set PYTHON=...)" >&2
  exit 2
fi
if [ -d .venv ] && ! .venv/bin/python -c "$supported" 2>/dev/null; then
  echo "setup: .venv was built by an unsuitable or broken Python; rebuilding it" >&2
  rm -rf .venv
fi
"$python" -m venv .venv
.venv/bin/python -m pip install -q -c constraints.txt -e ".${extras:+[$extras]}"
