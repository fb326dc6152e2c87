#!/usr/bin/env bash
# Data-parallel architecture search (search.py) over Ascend devices of this node, launched by msrun.
# Every rank samples the same paths each step (shared seed), gradients are averaged, alphas stay identical.
set -euo pipefail
USAGE="Usage: bash run_distribute_search_for_ascend.sh DEVICE_NUM DATASET_PATH [--key value ...]
  DEVICE_NUM    number of search processes on this node
  DATASET_PATH  dataset root with train/ (the validation split is held out from it)
  --key value   any search.py option; --train_batch_size and --valid_batch_size are per worker
Environment: OUTPUT_DIR (default ./output), RUN_NAME, PYTHON, MSRUN, DRY_RUN=1 (print the command only).
Several nodes: WORKER_NUM (workers of all nodes), NODE_RANK, MASTER_ADDR, MASTER_PORT (same on every
node), CLUSTER_TIME_OUT; start the script on every node with the same RUN_NAME."
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

distribute_search Ascend "$@"
