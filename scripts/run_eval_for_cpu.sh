#!/usr/bin/env bash
# Evaluate a checkpoint (or every checkpoint in a folder) on the CPU.
set -euo pipefail
USAGE="Usage: bash run_eval_for_cpu.sh DATASET_PATH CHECKPOINT [--key value ...]
  DATASET_PATH  dataset root with val/ (or the val folder itself)
  CHECKPOINT    a .ckpt file, or a folder whose checkpoints are all evaluated
  --key value   any eval.py option, e.g. --val_batch_size 125 (see python eval.py --help)
Environment: OUTPUT_DIR (logs go to OUTPUT_DIR/logs/RUN_NAME, default ./output), RUN_NAME, PYTHON,
DRY_RUN=1 (print the command only)."
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

split_args 2 "$@"
DATASET_PATH="$(require_dir DATASET_PATH "${POSITIONAL[0]}")"
CHECKPOINT="$(require_path CHECKPOINT "${POSITIONAL[1]}")"
prepare_run eval-cpu

run_logged "$LOG_DIR/eval.log" \
    "$PYTHON" "$REPO_ROOT/eval.py" --device_target CPU \
    --dataset_path "$DATASET_PATH" --checkpoint_path "$CHECKPOINT" "${EXTRA_ARGS[@]}"
