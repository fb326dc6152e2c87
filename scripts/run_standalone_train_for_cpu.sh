#!/usr/bin/env bash
# Train on the CPU (one process).
set -euo pipefail
USAGE="Usage: bash run_standalone_train_for_cpu.sh DATASET_PATH [--key value ...]
  DATASET_PATH  dataset root with train/ and val/ (ImageFolder layout)
  --key value   any train.py option, e.g. --epoch_size 10 (see python train.py --help)
Environment: OUTPUT_DIR (default ./output), RUN_NAME, PYTHON, DRY_RUN=1 (print the command only)."
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

split_args 1 "$@"
DATASET_PATH="$(require_dir DATASET_PATH "${POSITIONAL[0]}")"
prepare_run cpu
note "run folder: $RUN_DIR"

run_logged "$LOG_DIR/train.log" \
    "$PYTHON" "$REPO_ROOT/train.py" --device_target CPU \
    --dataset_path "$DATASET_PATH" --save_ckpt_path "$OUTPUT_DIR" --run_name "$RUN_NAME" "${EXTRA_ARGS[@]}"
