#!/usr/bin/env bash
# GPU smoke test: run it on one GPU node before a cluster campaign. In a few minutes it runs every GPU path of
# ae-lightning and prints one PASS/FAIL line per check (exit 1 if any failed):
#   1. one_gpu      the quick suite (six variants, 1 epoch) on one GPU
#   2. two_per_gpu  the same with --runs-per-gpu 2 (two runs sharing that GPU)
#   3. ddp          one run with --ddp on every GPU of the node
#   4. bf16         a bf16-mixed suite (KL-sparse AE and VAE: the half-precision traps)
#   5. compile      a suite with torch.compile'd networks (contractive included)
# and checks that every run is done, that the battery ran on the GPU and that fit/peak_mem_mb is GPU memory.
#
#   bash scripts/gpu_smoke.sh [OUT]          OUT default results/gpu_smoke (removed first)
#   DATA_ROOT=/scratch/data bash scripts/gpu_smoke.sh
# On a SLURM cluster: srun --gres=gpu:2 --cpus-per-task=8 --time=30 bash scripts/gpu_smoke.sh
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-$VENV/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3  # ae-lightning installed another way (a container's system Python)
OUT=${1:-results/gpu_smoke}
DATA_ROOT=${DATA_ROOT:-data}

gpus=$("$PYTHON" -c "import torch; print(torch.cuda.device_count())") || exit 2
if [ "$gpus" -lt 1 ]; then
  echo "gpu_smoke: no CUDA device here (torch.cuda.device_count() = 0, CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-unset});" \
       "run it on a GPU node" >&2
  exit 2
fi
# The first GPU this job owns: the first entry of the inherited list, or index 0.
first_gpu=${CUDA_VISIBLE_DEVICES:-0}
first_gpu=${first_gpu%%,*}
echo "gpu_smoke: $gpus GPU(s); results in $OUT"
rm -rf "$OUT"
mkdir -p "$OUT"

compare() {  # compare PART SUITE [ARGS…]: one part, its console output in OUT/PART.log
  local part=$1 suite=$2
  shift 2
  echo "== $part"
  "$PYTHON" -m ae_lightning compare "$suite" --out "$OUT/$part" --data-root "$DATA_ROOT" --wandb disabled "$@" \
    > "$OUT/$part.log" 2>&1 || echo "   (compare exited $?: see $OUT/$part.log)"
}

CUDA_VISIBLE_DEVICES=$first_gpu compare one_gpu experiments/quick.yaml --epochs 1
CUDA_VISIBLE_DEVICES=$first_gpu compare two_per_gpu experiments/quick.yaml --epochs 1 --runs-per-gpu 2
compare ddp experiments/quick.yaml --epochs 1 --ddp --only AE
CUDA_VISIBLE_DEVICES=$first_gpu compare bf16 experiments/smoke/smoke_bf16.yaml
CUDA_VISIBLE_DEVICES=$first_gpu compare compile experiments/smoke/smoke_compile.yaml

"$PYTHON" -m ae_lightning.smoke "$OUT" --expect-device cuda --gpus "$gpus"
