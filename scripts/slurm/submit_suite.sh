#!/usr/bin/env bash
# Submit a suite as a SLURM array (one task per variant x seed) plus its report job.
#   scripts/slurm/submit_suite.sh experiments/fashion_mnist.yaml results/fashion_mnist [compare options]
# Extra sbatch options go in SBATCH_ARGS, e.g. SBATCH_ARGS="--gpus-per-task=1 --partition=gpu".
set -euo pipefail
suite=$1
out=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
runs=$("${AE_LIGHTNING:-ae-lightning}" compare "$suite" --out "$out" --count "$@")
# shellcheck disable=SC2086  # SBATCH_ARGS is a list of options
array=$(sbatch --parsable ${SBATCH_ARGS:-} --array="0-$((runs - 1))" "$here/suite_array.sbatch" "$suite" "$out" "$@")
report=$(sbatch --parsable --dependency="afterany:$array" "$here/suite_report.sbatch" "$suite" "$out" "$@")
echo "array job $array ($runs runs), report job $report; results in $out"
