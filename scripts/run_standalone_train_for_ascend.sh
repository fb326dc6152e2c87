#!/usr/bin/env bash
# Train on one Ascend device.
set -euo pipefail
USAGE="Usage: bash run_standalone_train_for_ascend.sh DEVICE_ID DATASET_PATH [--key value ...]
  DEVICE_ID     Ascend device to use (0, 1, ...)
  DATASET_PATH  dataset root with train/ and val/ (ImageFolder layout)
  --key value   any train.py option, e.g. --epoch_size 10 (see python train.py --help)
Environment: OUTPUT_DIR (default ./output), RUN_NAME, PYTHON, DRY_RUN=1 (print the command only)."
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

split_args 2 "$@"
DEVICE_ID="${POSITIONAL[0]}"
require_uint DEVICE_ID "$DEVICE_ID"
DATASET_PATH="$(require_dir DATASET_PATH "${POSITIONAL[1]}")"
prepare_run "ascend-d$DEVICE_ID"
note "run folder: $RUN_DIR"

# A leftover distributed environment would make MindSpore expect a cluster.
unset RANK_TABLE_FILE RANK_ID RANK_SIZE
export DEVICE_ID
run_logged "$LOG_DIR/train.log" \
    "$PYTHON" "$REPO_ROOT/train.py" --device_target Ascend --device_id "$DEVICE_ID" \
    --dataset_path "$DATASET_PATH" --save_ckpt_path "$OUTPUT_DIR" --run_name "$RUN_NAME" "${EXTRA_ARGS[@]}"
