#!/usr/bin/env bash
# Train on one GPU.
set -euo pipefail
USAGE="Usage: bash run_standalone_train_for_gpu.sh DEVICE_ID DATASET_PATH [--key value ...]
  DEVICE_ID     GPU to use: its index among the visible GPUs (CUDA_VISIBLE_DEVICES)
  DATASET_PATH  dataset root with train/ and val/ (ImageFolder layout)
  --key value   any train.py option, e.g. --epoch_size 10 (see python train.py --help)
Environment: OUTPUT_DIR (default ./output), RUN_NAME, PYTHON, DRY_RUN=1 (print the command only)."
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

split_args 2 "$@"
DEVICE_ID="${POSITIONAL[0]}"
require_uint DEVICE_ID "$DEVICE_ID"
DATASET_PATH="$(require_dir DATASET_PATH "${POSITIONAL[1]}")"
prepare_run "gpu-d$DEVICE_ID"
note "run folder: $RUN_DIR"

# CUDA_VISIBLE_DEVICES is left alone: masking the GPUs to DEVICE_ID would renumber it as 0.
run_logged "$LOG_DIR/train.log" \
    "$PYTHON" "$REPO_ROOT/train.py" --device_target GPU --device_id "$DEVICE_ID" \
    --dataset_path "$DATASET_PATH" --save_ckpt_path "$OUTPUT_DIR" --run_name "$RUN_NAME" "${EXTRA_ARGS[@]}"
