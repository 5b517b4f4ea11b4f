#!/usr/bin/env bash
# Set up with the dev extras, then run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
.venv/bin/python -m pytest "$@"
