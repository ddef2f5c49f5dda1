#!/usr/bin/env bash
# Tune a suite with N SLURM array tasks working on one Optuna study, then train and judge each variant's best
# configuration over the suite's seeds and write the report (one job, queued after the workers).
#   scripts/slurm/submit_tune.sh experiments/tune_quick.yaml results/tune_quick 4 [tune options]
# Extra sbatch options go in SBATCH_ARGS, e.g. SBATCH_ARGS="--gpus-per-task=1 --partition=gpu".
set -euo pipefail
suite=$1
out=$2
workers=$3
shift 3
here=$(cd "$(dirname "$0")" && pwd)
if ! [[ "$workers" =~ ^[1-9][0-9]*$ ]]; then
  echo "submit_tune.sh: workers=$workers must be a positive integer (the number of array tasks)" >&2
  exit 2
fi
# shellcheck disable=SC2086  # SBATCH_ARGS is a list of options
array=$(sbatch --parsable ${SBATCH_ARGS:-} --array="0-$((workers - 1))" "$here/tune.sbatch" "$suite" "$out" "$@")
# shellcheck disable=SC2086
final=$(sbatch --parsable ${SBATCH_ARGS:-} --dependency="afterany:$array" "$here/tune_final.sbatch" "$suite" "$out" "$@")
echo "tuning array job $array ($workers workers), final runs and report job $final; results in $out"
