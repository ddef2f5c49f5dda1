#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the tests. Default: the fast suite (about 18 minutes of pytest on 2 CPU cores).
#   bash scripts/test.sh           fast tests
#   bash scripts/test.sh --all     fast and slow tests (what CI runs)
#   bash scripts/test.sh -k vae    any other arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${VENV:-.venv}
args=()
for arg in "$@"; do
  if [ "$arg" = "--all" ]; then args+=(-m "slow or not slow"); else args+=("$arg"); fi
done
exec "$VENV/bin/python" -m pytest "${args[@]}"
