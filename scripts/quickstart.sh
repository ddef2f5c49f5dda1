#!/usr/bin/env bash
# Set up, then train all six variants side by side on Fashion-MNIST (two epochs each), judge them on one
# evaluation battery and write the report: results/quick/report.md (+ PNGs), summary.json/csv, W&B runs.
# Offline on Debian the data comes from the dataset-fashion-mnist package; elsewhere torchvision downloads it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${VENV:-.venv}
"$VENV/bin/ae-lightning" compare experiments/quick.yaml --out "${OUT:-results/quick}" "$@"
