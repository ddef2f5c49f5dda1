#!/usr/bin/env bash
# Set up, then train each of the six variants for one epoch on Fashion-MNIST (offline on Debian: the
# dataset-fashion-mnist package; elsewhere torchvision downloads it into ./data) and print its validation MSE.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${VENV:-.venv}
EPOCHS=${EPOCHS:-1}
for config in autoencoder denoising sparse dropout contractive vae; do
  "$VENV/bin/ae-lightning" fit --config "experiments/configs/model/$config.yaml" \
    --config experiments/configs/data/fashion_mnist.yaml --trainer.max_epochs "$EPOCHS" \
    --trainer.enable_progress_bar false --trainer.logger.init_args.name "quickstart/$config" >/dev/null
  metrics=$(ls -td runs/quickstart/"$config"/version_*/ | head -n 1)metrics.csv
  "$VENV/bin/python" - "$config" "$metrics" <<'PY'
import csv, sys
rows = [r for r in csv.DictReader(open(sys.argv[2])) if r.get("val/mse")]
print(f"{sys.argv[1]:>12}: val/mse {float(rows[-1]['val/mse']):.4f}  ({sys.argv[2]})")
PY
done
