#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the tests; the 25 slowest are listed at the end.
#   bash scripts/test.sh           fast tests
#   bash scripts/test.sh --all     fast and slow tests (what CI runs)
#   bash scripts/test.sh -k vae    any other arguments go to pytest
#   TEST_WORKERS=2 bash scripts/test.sh   pytest-xdist workers (the SLURM and DDP tests each keep to one worker);
#                  one process by default: on 2 cores the workers were not faster (most of the time goes to starting
#                  ae-lightning processes, which compete for the same cores)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${VENV:-.venv}
args=(--durations=25)
if [ -n "${TEST_WORKERS:-}" ]; then args+=(-n "$TEST_WORKERS" --dist loadgroup); fi
for arg in "$@"; do
  if [ "$arg" = "--all" ]; then args+=(-m "slow or not slow"); else args+=("$arg"); fi
done
exec "$VENV/bin/python" -m pytest "${args[@]}"
