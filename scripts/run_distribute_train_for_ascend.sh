#!/usr/bin/env bash
# Data-parallel training on the Ascend devices of this node, by rank table (default) or by msrun.
set -euo pipefail
USAGE="Usage: bash run_distribute_train_for_ascend.sh RANK_TABLE_FILE DATASET_PATH [--key value ...]
       LAUNCHER=msrun bash run_distribute_train_for_ascend.sh DEVICE_NUM DATASET_PATH [--key value ...]
  RANK_TABLE_FILE  HCCL rank table (JSON) listing the devices; one process is started per device of this
                   server (SERVER_ID=<server_id in the table> when it lists several servers)
  DEVICE_NUM       with LAUNCHER=msrun: devices of this node to use (0 .. DEVICE_NUM-1)
  DATASET_PATH     dataset root with train/ and val/ (ImageFolder layout)
  --key value      any train.py option; --train_batch_size is per device
Environment: LAUNCHER (ranktable or msrun), OUTPUT_DIR (default ./output), RUN_NAME, PYTHON, MSRUN,
  HCCL_CONNECT_TIMEOUT (default 600), DRY_RUN=1 (print the commands only).
  Several nodes with msrun: WORKER_NUM (devices of all nodes), NODE_RANK, MASTER_ADDR, MASTER_PORT
  (same on every node), CLUSTER_TIME_OUT; start the script on every node with the same RUN_NAME."
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# read_rank_table FILE: prints "RANK_SIZE n", then "device_id rank_id" for each device of this server.
read_rank_table() {
    "$PYTHON" - "$1" "${SERVER_ID:-}" <<'PY'
import json, sys
path, server_id = sys.argv[1], sys.argv[2]
try:
    with open(path, encoding="utf-8") as f:
        servers = json.load(f)["server_list"]
    devices = {s["server_id"]: [(int(d["device_id"]), int(d["rank_id"])) for d in s["device"]] for s in servers}
except (OSError, ValueError, KeyError, TypeError) as err:
    sys.exit(f"error: RANK_TABLE_FILE={path} is not a rank table (server_list/device/rank_id): {err}")
if not server_id and len(devices) == 1:
    server_id = next(iter(devices))
if server_id not in devices:
    sys.exit(f"error: SERVER_ID={server_id!r} is not in RANK_TABLE_FILE={path}; set SERVER_ID to one of "
             + ", ".join(devices))
print("RANK_SIZE", sum(len(d) for d in devices.values()))
for device_id, rank_id in sorted(devices[server_id], key=lambda d: d[1]):
    print(device_id, rank_id)
PY
}

# wait_ranks: wait for every rank; on the first failure stop the others and name the failed rank.
wait_ranks() {
    local remaining=${#PIDS[@]} i rc
    while [ "$remaining" -gt 0 ]; do
        for i in "${!PIDS[@]}"; do
            [ -n "${PIDS[$i]}" ] || continue
            kill -0 "${PIDS[$i]}" 2> /dev/null && continue
            rc=0
            wait "${PIDS[$i]}" || rc=$?
            PIDS[$i]=""
            remaining=$((remaining - 1))
            if [ "$rc" -ne 0 ]; then
                note "FAILED: rank ${RANKS[$i]} (device ${DEVICES[$i]}) exited with code $rc; log: $LOG_DIR/rank_${RANKS[$i]}.log"
                stop_ranks
                note "distributed run failed; logs: $LOG_DIR"
                exit 1
            fi
            note "rank ${RANKS[$i]} finished"
        done
        [ "$remaining" -eq 0 ] || sleep 2
    done
    note "all ${#RANKS[@]} ranks finished; logs: $LOG_DIR"
}

# stop_ranks: terminate the ranks still running (the ones this script started) and reap them.
stop_ranks() {
    local pid
    for pid in "${PIDS[@]}"; do
        [ -n "$pid" ] && kill -TERM "$pid" 2> /dev/null && note "stopping process $pid"
    done
    for pid in "${PIDS[@]}"; do
        [ -n "$pid" ] && { wait "$pid" 2> /dev/null || true; }
    done
    return 0
}

split_args 2 "$@"
LAUNCHER="${LAUNCHER:-ranktable}"
# --overwrite true: the launcher checks the run folder itself (see check_run_dir_unused in common.sh).
TRAIN_ARGS=("$REPO_ROOT/train.py" --device_target Ascend --run_distribute true --overwrite true)

case "$LAUNCHER" in
    ranktable)
        RANK_TABLE_FILE="$(require_file RANK_TABLE_FILE "${POSITIONAL[0]}")"
        DATASET_PATH="$(require_dir DATASET_PATH "${POSITIONAL[1]}")"
        TABLE="$(read_rank_table "$RANK_TABLE_FILE")" || exit 2
        RANK_SIZE="$(sed -n 's/^RANK_SIZE //p' <<< "$TABLE")"
        DEVICES=() RANKS=() PIDS=()
        while read -r device_id rank_id; do
            DEVICES+=("$device_id")
            RANKS+=("$rank_id")
        done < <(sed '1d' <<< "$TABLE")
        prepare_run "ascend-x$RANK_SIZE"
        note "run folder: $RUN_DIR"
        case " ${RANKS[*]} " in *" 0 "*) check_run_dir_unused ;; esac
        export RANK_TABLE_FILE RANK_SIZE
        export HCCL_CONNECT_TIMEOUT="${HCCL_CONNECT_TIMEOUT:-600}"
        trap 'stop_ranks; exit 130' INT TERM
        for i in "${!RANKS[@]}"; do
            CMD=("$PYTHON" "${TRAIN_ARGS[@]}" --dataset_path "$DATASET_PATH"
                 --save_ckpt_path "$OUTPUT_DIR" --run_name "$RUN_NAME" "${EXTRA_ARGS[@]}")
            LOG="$LOG_DIR/rank_${RANKS[$i]}.log"
            if is_dry_run; then
                echo "HCCL_CONNECT_TIMEOUT=$HCCL_CONNECT_TIMEOUT RANK_TABLE_FILE=$(printf '%q' "$RANK_TABLE_FILE")" \
                     "RANK_SIZE=$RANK_SIZE" \
                     "RANK_ID=${RANKS[$i]} DEVICE_ID=${DEVICES[$i]} $(quote_cmd "${CMD[@]}") > $(printf '%q' "$LOG") 2>&1 &"
                continue
            fi
            note "starting rank ${RANKS[$i]} on device ${DEVICES[$i]}, log: $LOG"
            (export RANK_ID="${RANKS[$i]}" DEVICE_ID="${DEVICES[$i]}"; exec "${CMD[@]}") > "$LOG" 2>&1 &
            PIDS+=("$!")
        done
        is_dry_run || wait_ranks
        ;;
    msrun)
        DEVICE_NUM="${POSITIONAL[0]}"
        require_positive DEVICE_NUM "$DEVICE_NUM"
        DATASET_PATH="$(require_dir DATASET_PATH "${POSITIONAL[1]}")"
        prepare_run "ascend-x${WORKER_NUM:-$DEVICE_NUM}"
        note "run folder: $RUN_DIR"
        build_msrun "$DEVICE_NUM" "${TRAIN_ARGS[@]}" --dataset_path "$DATASET_PATH" \
            --save_ckpt_path "$OUTPUT_DIR" --run_name "$RUN_NAME" "${EXTRA_ARGS[@]}"
        run_msrun
        ;;
    *)
        fail "LAUNCHER=$LAUNCHER: expected ranktable or msrun"
        ;;
esac
