#!/usr/bin/env bash
# Install ae-lightning into a virtual environment. The one install recipe: the README, CI and docker/Dockerfile
# all run this script.
#   VENV          where (default .venv)
#   TORCH_SPEC    the torch/torchvision pair to install (default: the tested pair, torch 2.14.1 + torchvision
#                 0.29.1; on a GPU machine the build for its CUDA, e.g. TORCH_SPEC="torch torchvision"; empty:
#                 keep the torch already there, as in the PyTorch container with VENV_SYSTEM_SITE_PACKAGES=1)
#   VENV_SYSTEM_SITE_PACKAGES=1   let the venv see the system's packages (a base image's torch)
#   EXTRAS        pip extras (default "dev": pytest, ruff, hadolint; empty for a runtime install)
#   INSTALL_DATASETS=0            skip Debian's dataset-fashion-mnist (installed as root on Debian otherwise:
#                 the offline copy of Fashion-MNIST the defaults use)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

TORCH_SPEC=${TORCH_SPEC-torch==2.14.1 torchvision==0.29.1}
EXTRAS=${EXTRAS-dev}

if [ ! -x "$VENV/bin/python" ]; then
  if [ "${VENV_SYSTEM_SITE_PACKAGES:-0}" = 1 ]; then
    "$PYTHON" -m venv --system-site-packages "$VENV"
  else
    "$PYTHON" -m venv "$VENV"
  fi
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
if [ -n "$TORCH_SPEC" ]; then
  # shellcheck disable=SC2086  # TORCH_SPEC is a list of requirements
  "$VENV/bin/python" -m pip install -q $TORCH_SPEC
fi
"$VENV/bin/python" -m pip install -q -e ".${EXTRAS:+[$EXTRAS]}"

if [ "${INSTALL_DATASETS:-1}" = 1 ] && [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null \
   && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
    || echo "note: dataset-fashion-mnist not installed (not in this distribution?); Fashion-MNIST will be downloaded"
fi
echo "ae-lightning installed in $VENV ($("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
