#!/usr/bin/env bash
# Data-parallel training with WORKER_NUM CPU processes, launched by msrun.
set -euo pipefail
USAGE="Usage: bash run_distribute_train_for_cpu.sh WORKER_NUM DATASET_PATH [--key value ...]
  WORKER_NUM    number of training processes (all nodes together)
  DATASET_PATH  dataset root with train/ and val/ (ImageFolder layout)
  --key value   any train.py option; --train_batch_size is per worker
Environment: OUTPUT_DIR (default ./output), RUN_NAME, PYTHON, MSRUN, DRY_RUN=1 (print the command only).
Several nodes: LOCAL_WORKER_NUM (workers on this node), NODE_RANK, MASTER_ADDR, MASTER_PORT (same on
every node), CLUSTER_TIME_OUT; start the script on every node with the same RUN_NAME."
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

split_args 2 "$@"
WORKER_NUM="${POSITIONAL[0]}"
require_positive WORKER_NUM "$WORKER_NUM"
DATASET_PATH="$(require_dir DATASET_PATH "${POSITIONAL[1]}")"
prepare_run "cpu-x$WORKER_NUM"
note "run folder: $RUN_DIR"

build_msrun "${LOCAL_WORKER_NUM:-$WORKER_NUM}" \
    "$REPO_ROOT/train.py" --device_target CPU --run_distribute true --overwrite true \
    --dataset_path "$DATASET_PATH" --save_ckpt_path "$OUTPUT_DIR" --run_name "$RUN_NAME" "${EXTRA_ARGS[@]}"
run_msrun
