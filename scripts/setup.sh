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
#   FORCE_SETUP=1 install again even where this script already installed the same thing (it leaves a stamp in
#                 the venv: a hash of pyproject.toml and the settings above; the install is editable, so code
#                 changes never need it)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

TORCH_SPEC=${TORCH_SPEC-torch==2.14.1 torchvision==0.29.1}
EXTRAS=${EXTRAS-dev}

STAMP="$VENV/.ae-lightning-setup"
WANT="$(cat pyproject.toml; echo "$TORCH_SPEC|$EXTRAS|${VENV_SYSTEM_SITE_PACKAGES:-0}")"
WANT=$(printf '%s' "$WANT" | sha256sum | cut -d' ' -f1)
if [ "${FORCE_SETUP:-0}" != 1 ] && [ -x "$VENV/bin/ae-lightning" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$WANT" ]; then
  echo "ae-lightning already installed in $VENV; nothing to install (FORCE_SETUP=1 reinstalls)"
  exit 0
fi

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
# setuptools' notice on every editable install (a package folder in the working directory shadows the installed
# one: here it is the installed one) says nothing to act on
PYTHONWARNINGS="ignore:Editable installation" "$VENV/bin/python" -m pip install -q -e ".${EXTRAS:+[$EXTRAS]}"

if [ "${INSTALL_DATASETS:-1}" = 1 ] && [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null \
   && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
    || echo "note: dataset-fashion-mnist not installed (not in this distribution?); Fashion-MNIST will be downloaded"
fi
echo "$WANT" > "$STAMP"
echo "ae-lightning installed in $VENV ($("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
