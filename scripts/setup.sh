#!/usr/bin/env bash
# Install ae-lightning into a virtual environment (default .venv; VENV=... to choose) with the dev extra.
#   TORCH_SPEC  the torch/torchvision pair to install (default: the tested pair, torch 2.14.1 + torchvision 0.29.1;
#               on a GPU machine pick the build for its CUDA, e.g. TORCH_SPEC="torch torchvision")
# As root on Debian it also installs dataset-fashion-mnist, the offline copy of Fashion-MNIST the defaults use.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
# shellcheck disable=SC2086  # TORCH_SPEC is a list of requirements
"$VENV/bin/python" -m pip install -q ${TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}
"$VENV/bin/python" -m pip install -q -e ".[dev]"

if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi
echo "ae-lightning installed in $VENV ($("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
