#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the tests on every core (pytest-xdist: one worker per CPU, each pinned to its
# own; the SLURM and multi-process DDP tests each stay on one worker), then the 25 slowest tests are listed.
#   bash scripts/test.sh           fast tests
#   bash scripts/test.sh --all     fast and slow tests (what CI runs)
#   bash scripts/test.sh -k vae    any other arguments go to pytest (-n 0: one process, no workers)
#   TEST_WORKERS=4 bash scripts/test.sh   workers (default: auto, one per CPU)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${VENV:-.venv}
args=(-n "${TEST_WORKERS:-auto}" --dist loadgroup --durations=25)
for arg in "$@"; do
  if [ "$arg" = "--all" ]; then args+=(-m "slow or not slow"); else args+=("$arg"); fi
done
exec "$VENV/bin/python" -m pytest "${args[@]}"
