#!/usr/bin/env bash
# Data-parallel training on the GPUs of this node (and others), launched by msrun or mpirun.
set -euo pipefail
USAGE="Usage: bash run_distribute_train_for_gpu.sh DATASET_PATH [--key value ...]
  DATASET_PATH  dataset root with train/ and val/ (ImageFolder layout)
  --key value   any train.py option; --train_batch_size is per GPU
Environment:
  DEVICE_NUM    GPUs of this node to use (default: the number listed in CUDA_VISIBLE_DEVICES, else 8)
  LAUNCHER      msrun (default) or mpirun (OpenMPI; HOSTFILE=file for several nodes)
  OUTPUT_DIR (default ./output), RUN_NAME, PYTHON, MSRUN, DRY_RUN=1 (print the command only)
  Several nodes with msrun: WORKER_NUM (GPUs of all nodes), NODE_RANK, MASTER_ADDR, MASTER_PORT
  (same on every node), CLUSTER_TIME_OUT; start the script on every node with the same RUN_NAME."
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

split_args 1 "$@"
DATASET_PATH="$(require_dir DATASET_PATH "${POSITIONAL[0]}")"
if [ -z "${DEVICE_NUM:-}" ]; then
    if [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then
        IFS=, read -r -a visible <<< "$CUDA_VISIBLE_DEVICES"
        DEVICE_NUM=${#visible[@]}
    else
        DEVICE_NUM=8
    fi
fi
require_positive DEVICE_NUM "$DEVICE_NUM"
LAUNCHER="${LAUNCHER:-msrun}"
# --overwrite true: the launcher checks the run folder itself (see check_run_dir_unused in common.sh).
TRAIN_ARGS=("$REPO_ROOT/train.py" --device_target GPU --run_distribute true --overwrite true
            --dataset_path "$DATASET_PATH")

case "$LAUNCHER" in
    msrun)
        prepare_run "gpu-x${WORKER_NUM:-$DEVICE_NUM}"
        note "run folder: $RUN_DIR"
        build_msrun "$DEVICE_NUM" "${TRAIN_ARGS[@]}" \
            --save_ckpt_path "$OUTPUT_DIR" --run_name "$RUN_NAME" "${EXTRA_ARGS[@]}"
        run_msrun
        ;;
    mpirun)
        is_dry_run || command -v mpirun > /dev/null 2>&1 || fail "LAUNCHER=mpirun but mpirun is not installed"
        MPI_PROCS="${WORKER_NUM:-$DEVICE_NUM}"
        require_positive WORKER_NUM "$MPI_PROCS"
        prepare_run "gpu-x$MPI_PROCS"
        note "run folder: $RUN_DIR"
        check_run_dir_unused
        LAUNCH_CMD=(mpirun -n "$MPI_PROCS" --output-filename "$LOG_DIR" --merge-stderr-to-stdout)
        [ "$(id -u)" = "0" ] && LAUNCH_CMD+=(--allow-run-as-root)
        [ -n "${HOSTFILE:-}" ] && LAUNCH_CMD+=(--hostfile "$(require_file HOSTFILE "$HOSTFILE")")
        # mpirun itself names the rank that failed (its "Process name: [[job,rank]]" report).
        run_logged "$LOG_DIR/mpirun.log" "${LAUNCH_CMD[@]}" "$PYTHON" "${TRAIN_ARGS[@]}" \
            --save_ckpt_path "$OUTPUT_DIR" --run_name "$RUN_NAME" "${EXTRA_ARGS[@]}"
        ;;
    *)
        fail "LAUNCHER=$LAUNCHER: expected msrun or mpirun"
        ;;
esac
