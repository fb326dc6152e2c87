#!/usr/bin/env bash
# Evaluate a checkpoint (or every checkpoint in a folder) on one GPU.
set -euo pipefail
USAGE="Usage: bash run_eval_for_gpu.sh DEVICE_ID DATASET_PATH CHECKPOINT [--key value ...]
  DEVICE_ID     GPU to use: its index among the visible GPUs (CUDA_VISIBLE_DEVICES)
  DATASET_PATH  dataset root with val/ (or the val folder itself)
  CHECKPOINT    a .ckpt file, or a folder whose checkpoints are all evaluated
  --key value   any eval.py option, e.g. --val_batch_size 125 (see python eval.py --help)
Environment: OUTPUT_DIR (logs go to OUTPUT_DIR/logs/RUN_NAME, default ./output), RUN_NAME, PYTHON,
DRY_RUN=1 (print the command only)."
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

split_args 3 "$@"
DEVICE_ID="${POSITIONAL[0]}"
require_uint DEVICE_ID "$DEVICE_ID"
DATASET_PATH="$(require_dir DATASET_PATH "${POSITIONAL[1]}")"
CHECKPOINT="$(require_path CHECKPOINT "${POSITIONAL[2]}")"
prepare_run "eval-gpu-d$DEVICE_ID"

run_logged "$LOG_DIR/eval.log" \
    "$PYTHON" "$REPO_ROOT/eval.py" --device_target GPU --device_id "$DEVICE_ID" \
    --dataset_path "$DATASET_PATH" --checkpoint_path "$CHECKPOINT" "${EXTRA_ARGS[@]}"
