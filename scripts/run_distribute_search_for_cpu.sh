#!/usr/bin/env bash
# Data-parallel architecture search (search.py) over CPU processes, launched by msrun.
# Every rank samples the same paths each step (shared seed), gradients are averaged, alphas stay identical.
set -euo pipefail
USAGE="Usage: bash run_distribute_search_for_cpu.sh WORKER_NUM DATASET_PATH [--key value ...]
  WORKER_NUM    number of search processes (all nodes together: LOCAL_WORKER_NUM on this node)
  DATASET_PATH  dataset root with train/ (the validation split is held out from it)
  --key value   any search.py option; --train_batch_size and --valid_batch_size are per worker
Environment: OUTPUT_DIR (default ./output), RUN_NAME, PYTHON, MSRUN, DRY_RUN=1 (print the command only).
Several nodes: WORKER_NUM (workers of all nodes), NODE_RANK, MASTER_ADDR, MASTER_PORT (same on every
node), CLUSTER_TIME_OUT; start the script on every node with the same RUN_NAME."
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

split_args 2 "$@"
WORKER_NUM="${POSITIONAL[0]}"
require_positive WORKER_NUM "$WORKER_NUM"
DATASET_PATH="$(require_dir DATASET_PATH "${POSITIONAL[1]}")"
prepare_run "search-cpu-x$WORKER_NUM"
note "run folder: $RUN_DIR"
export ONEDNN_MAX_CPU_ISA="${ONEDNN_MAX_CPU_ISA:-AVX2}"
build_msrun "${LOCAL_WORKER_NUM:-$WORKER_NUM}" \
    "$REPO_ROOT/search.py" --device_target CPU --run_distribute true --overwrite true \
    --dataset_path "$DATASET_PATH" --save_ckpt_path "$OUTPUT_DIR" --run_name "$RUN_NAME" "${EXTRA_ARGS[@]}"
run_msrun
