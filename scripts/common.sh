# shellcheck shell=bash
# Shared helpers of the launch scripts; sourced, never run.
#
# Environment understood by every script:
#   PYTHON      interpreter to run train.py/eval.py with (default: python from PATH)
#   MSRUN       msrun launcher (default: msrun from PATH, else "$PYTHON -m mindspore.parallel.cluster.run")
#   OUTPUT_DIR  root of training runs and logs (default: ./output, relative to where you call the script)
#   RUN_NAME    name of this run (default: <kind>-<date>-<time>); training writes to OUTPUT_DIR/RUN_NAME
#   DRY_RUN=1   check the arguments and print the commands instead of running them
#
# Options after the positional arguments (--key value) are passed to the Python script unchanged,
# after the ones the script sets itself, so they win (e.g. --epoch_size 10 --lr_init 0.1).

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
SCRIPTS_DIR="$REPO_ROOT/scripts"
PYTHON="${PYTHON:-python}"
DRY_RUN="${DRY_RUN:-0}"
# Filled in by split_args / prepare_run.
POSITIONAL=()
EXTRA_ARGS=()

note() { echo "[$(basename "$0")] $*" >&2; }

# Print USAGE (set by the calling script) and exit 2; an optional message says what was wrong.
usage_error() {
    [ $# -gt 0 ] && echo "error: $*" >&2
    echo "$USAGE" >&2
    exit 2
}

# A precondition failed: one line naming the bad value, exit 2 before anything is launched.
fail() {
    echo "error: $*" >&2
    exit 2
}

is_dry_run() { [ "$DRY_RUN" = "1" ] || [ "$DRY_RUN" = "true" ]; }

# split_args N "$@": the first N arguments are positional, the rest must be --key value options.
split_args() {
    local count="$1"
    shift
    if [ $# -ge 1 ] && { [ "$1" = "-h" ] || [ "$1" = "--help" ]; }; then
        echo "$USAGE"
        exit 0
    fi
    [ $# -ge "$count" ] || usage_error "expected $count positional argument(s), got $#"
    POSITIONAL=("${@:1:$count}")
    local arg
    for arg in "${POSITIONAL[@]}"; do
        case "$arg" in --*) usage_error "expected $count positional argument(s) before the options, got '$arg'" ;; esac
    done
    EXTRA_ARGS=("${@:$((count + 1))}")
    if [ ${#EXTRA_ARGS[@]} -gt 0 ]; then
        case "${EXTRA_ARGS[0]}" in
            --*) ;;
            *) usage_error "too many positional arguments: '${EXTRA_ARGS[0]}' (options are written --key value)" ;;
        esac
    fi
}

# An absolute path for PATH, relative to the caller's working directory (need not exist).
absolute() {
    case "$1" in
        /*) printf '%s\n' "$1" ;;
        *) printf '%s\n' "$PWD/${1#./}" ;;
    esac
}

# require_dir NAME PATH: print the absolute path of an existing directory, or fail naming NAME.
require_dir() {
    [ -d "$2" ] || fail "$1=$2 is not a directory"
    (cd "$2" && pwd -P)
}

# require_file NAME PATH: print the absolute path of an existing file, or fail naming NAME.
require_file() {
    [ -f "$2" ] || fail "$1=$2 is not a file"
    printf '%s/%s\n' "$(cd "$(dirname "$2")" && pwd -P)" "$(basename "$2")"
}

# require_path NAME PATH: a file or a directory.
require_path() {
    if [ -d "$2" ]; then
        require_dir "$1" "$2"
    elif [ -f "$2" ]; then
        require_file "$1" "$2"
    else
        fail "$1=$2 does not exist"
    fi
}

require_uint() {
    case "$2" in
        '' | *[!0-9]*) fail "$1=$2 is not a non-negative integer" ;;
    esac
}

require_positive() {
    require_uint "$1" "$2"
    [ "$2" -gt 0 ] || fail "$1=$2 must be at least 1"
}

# option_value KEY DEFAULT: the value of the last --KEY value / --KEY=value in EXTRA_ARGS, else DEFAULT.
option_value() {
    local key="$1" value="$2" i
    for ((i = 0; i < ${#EXTRA_ARGS[@]}; i++)); do
        case "${EXTRA_ARGS[$i]}" in
            "--$key") [ $((i + 1)) -lt ${#EXTRA_ARGS[@]} ] && value="${EXTRA_ARGS[$((i + 1))]}" ;;
            "--$key="*) value="${EXTRA_ARGS[$i]#--"$key"=}" ;;
        esac
    done
    printf '%s\n' "$value"
}

# prepare_run KIND: choose OUTPUT_DIR, RUN_NAME, RUN_DIR and LOG_DIR (created unless dry run) and print them.
# --save_ckpt_path / --run_name among the pass-through options take precedence over the environment.
prepare_run() {
    local kind="$1"
    OUTPUT_DIR="$(absolute "$(option_value save_ckpt_path "${OUTPUT_DIR:-output}")")"
    RUN_NAME="$(option_value run_name "${RUN_NAME:-$kind-$(date +%Y%m%d-%H%M%S)}")"
    case "$RUN_NAME" in
        '' | */* | . | ..) fail "RUN_NAME='$RUN_NAME' must be a plain folder name" ;;
    esac
    RUN_DIR="$OUTPUT_DIR/$RUN_NAME"
    # Logs live beside the run folder, not in it: train.py owns (and may refuse to reuse) RUN_DIR.
    LOG_DIR="$OUTPUT_DIR/logs/$RUN_NAME"
    # A rerun with this RUN_NAME (refused, resumed, or an evaluation again) never overwrites the earlier
    # logs: it gets logs/RUN_NAME.2, .3, ...  Not for multi-node runs (NODE_RANK set): their nodes share
    # one log folder, and only node 0 could pick a new name.
    if [ -z "${NODE_RANK:-}" ] && [ -d "$LOG_DIR" ] && [ -n "$(ls -A "$LOG_DIR")" ]; then
        local attempt=2
        while [ -e "$LOG_DIR.$attempt" ]; do attempt=$((attempt + 1)); done
        note "logs of an earlier run named $RUN_NAME are kept in $LOG_DIR"
        LOG_DIR="$LOG_DIR.$attempt"
    fi
    if ! is_dry_run; then
        mkdir -p "$LOG_DIR"
    fi
    note "logs: $LOG_DIR"
}

# Distributed runs: the launcher on the node of rank 0 refuses a run folder that is already in use, and the
# ranks get --overwrite true.  train.py's own check is made by rank 0 after init(), when the other ranks
# may already have written their data shards there (it would then refuse its own run).
check_run_dir_unused() {
    local overwrite
    overwrite="$(option_value overwrite false)"
    case "${overwrite,,}" in true | 1 | yes | on) return 0 ;; esac
    [ -z "$(option_value resume "")" ] || return 0
    if [ -d "$RUN_DIR" ] && [ -n "$(ls -A "$RUN_DIR")" ]; then
        fail "run folder $RUN_DIR already exists: choose another RUN_NAME, or pass --overwrite true"
    fi
    return 0
}

# The exact command line, shell-quoted, as it would be typed.
quote_cmd() {
    local out="" word
    for word in "$@"; do
        out+="$(printf '%q' "$word") "
    done
    printf '%s\n' "${out% }"
}

# run_logged LOG CMD...: run in the foreground, output to the terminal and LOG; returns CMD's exit code.
run_logged() {
    local log="$1"
    shift
    if is_dry_run; then
        echo "$(quote_cmd "$@") > $(printf '%q' "$log") 2>&1"
        return 0
    fi
    note "running: $(quote_cmd "$@")"
    local rc
    set +e
    "$@" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    set -e
    return "$rc"
}

# ---------------------------------------------------------------------------
# msrun (MindSpore's own launcher: one scheduler plus N workers per node)
# ---------------------------------------------------------------------------
# Multi-node runs: set WORKER_NUM (all nodes), NODE_RANK (0 on the master node), MASTER_ADDR and
# MASTER_PORT identically on every node, and start the script once per node.

# msrun workers run "python" from PATH: make it the PYTHON the user chose.
python_on_path() {
    case "$PYTHON" in
        */*) PATH="$(cd "$(dirname "$PYTHON")" && pwd -P):$PATH"; export PATH ;;
    esac
}

find_msrun() {
    if [ -n "${MSRUN:-}" ]; then
        read -r -a MSRUN_CMD <<< "$MSRUN"
    elif command -v msrun > /dev/null 2>&1; then
        MSRUN_CMD=(msrun)
    else
        MSRUN_CMD=("$PYTHON" -m mindspore.parallel.cluster.run)
    fi
}

free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])'
}

# build_msrun LOCAL_WORKERS SCRIPT ARGS...: sets LAUNCH_CMD and FIRST_RANK from WORKER_NUM, NODE_RANK,
# MASTER_ADDR, MASTER_PORT, CLUSTER_TIME_OUT.
build_msrun() {
    local local_num="$1"
    shift
    require_positive LOCAL_WORKER_NUM "$local_num"
    local total="${WORKER_NUM:-$local_num}"
    require_positive WORKER_NUM "$total"
    [ "$total" -ge "$local_num" ] || fail "WORKER_NUM=$total is smaller than the $local_num workers of this node"
    local node_rank="${NODE_RANK:-0}" port="${MASTER_PORT:-}"
    require_uint NODE_RANK "$node_rank"
    if [ "$total" -gt "$local_num" ]; then
        # Several nodes: every node must name the same master and port, and its own rank.
        [ -n "${NODE_RANK:-}" ] || fail "NODE_RANK is required when WORKER_NUM=$total exceeds the $local_num local workers"
        [ -n "${MASTER_ADDR:-}" ] || fail "MASTER_ADDR is required for a multi-node run (the IP of node 0)"
        port="${port:-8118}"
    elif [ -z "$port" ]; then
        port="$(free_port)"
    fi
    require_positive MASTER_PORT "$port"
    FIRST_RANK=$((node_rank * local_num))
    LOCAL_RANKS=()
    local i
    for ((i = 0; i < local_num; i++)); do LOCAL_RANKS+=($((FIRST_RANK + i))); done
    find_msrun
    LAUNCH_CMD=("${MSRUN_CMD[@]}" "--worker_num=$total" "--local_worker_num=$local_num"
                "--master_addr=${MASTER_ADDR:-127.0.0.1}" "--master_port=$port")
    [ "$total" -gt "$local_num" ] && LAUNCH_CMD+=("--node_rank=$node_rank")
    [ -n "${CLUSTER_TIME_OUT:-}" ] && LAUNCH_CMD+=("--cluster_time_out=$CLUSTER_TIME_OUT")
    LAUNCH_CMD+=("--log_dir=$LOG_DIR" "--join=True" "--tail_worker_log=${TAIL_WORKER_LOG:-$FIRST_RANK}"
                 "$SCRIPTS_DIR/msrun_worker.py" "$@")
    [ "$FIRST_RANK" -ne 0 ] || check_run_dir_unused
}

# run_msrun: run LAUNCH_CMD; on failure name the rank(s) that failed, from the exit codes msrun_worker.py records.
run_msrun() {
    python_on_path
    export WORKER_STATUS_DIR="$LOG_DIR/status"
    if is_dry_run; then
        echo "WORKER_STATUS_DIR=$(printf '%q' "$WORKER_STATUS_DIR") $(quote_cmd "${LAUNCH_CMD[@]}")" \
             "> $(printf '%q' "$LOG_DIR/msrun.log") 2>&1"
        return 0
    fi
    mkdir -p "$WORKER_STATUS_DIR"
    rm -f "$WORKER_STATUS_DIR"/rank_*  # left by an earlier attempt with this RUN_NAME
    note "worker logs: $LOG_DIR/worker_<rank>.log"
    local rc=0
    run_logged "$LOG_DIR/msrun.log" "${LAUNCH_CMD[@]}" || rc=$?
    local rank code pid failed=() failed_ranks=() stopped=()
    for rank in "${LOCAL_RANKS[@]}"; do
        if [ -f "$WORKER_STATUS_DIR/rank_$rank.exit" ]; then
            code="$(cat "$WORKER_STATUS_DIR/rank_$rank.exit")"
        elif [ -f "$WORKER_STATUS_DIR/rank_$rank.pid" ]; then
            # Killed before it could record an exit: msrun names the process id and its exit code.
            pid="$(cat "$WORKER_STATUS_DIR/rank_$rank.pid")"
            code="$(sed -n "s/.*Worker process $pid exit with exception\. Error code: \(-\{0,1\}[0-9]*\).*/\1/p" \
                    "$LOG_DIR/msrun.log" | head -n 1)"
        else
            code=""
        fi
        if [ -z "$code" ]; then
            stopped+=("$rank")
        elif [ "$code" != "0" ]; then
            failed+=("rank $rank (exit code $code, log $LOG_DIR/worker_$rank.log)")
            failed_ranks+=("$rank")
        fi
    done
    if [ "$rc" -eq 0 ] && [ ${#failed[@]} -eq 0 ] && [ ${#stopped[@]} -eq 0 ]; then
        note "all ${#LOCAL_RANKS[@]} local workers finished; logs: $LOG_DIR"
        return 0
    fi
    local item
    for item in "${failed[@]}"; do note "FAILED: $item"; done
    # The cause is in the failed worker's own log: show its end here, where the user looks.
    for rank in "${failed_ranks[@]}"; do
        if [ -f "$LOG_DIR/worker_$rank.log" ]; then
            note "last lines of $LOG_DIR/worker_$rank.log:"
            tail -n "${TAIL_LINES:-15}" "$LOG_DIR/worker_$rank.log" | sed 's/^/    /' >&2
        fi
    done
    if [ ${#stopped[@]} -gt 0 ]; then
        note "no exit status from rank(s) ${stopped[*]}: stopped by msrun after another worker failed, or killed"
    fi
    [ "$rc" -ne 0 ] || rc=1
    note "distributed run failed (msrun exit code $rc); logs: $LOG_DIR"
    return "$rc"
}

# distribute_search TARGET "$@": the body of scripts/run_distribute_search_for_{cpu,gpu,ascend}.sh (USAGE is
# the calling script's). Arguments: COUNT DATASET_PATH [--key value ...]. CPU: COUNT is the workers of all
# nodes (WORKER_NUM; LOCAL_WORKER_NUM on this node, default all); GPU/Ascend: COUNT is this node's devices
# (DEVICE_NUM; WORKER_NUM for all nodes together).
distribute_search() {
    local target="$1" local_num
    shift
    split_args 2 "$@"
    if [ "$target" = "CPU" ]; then
        WORKER_NUM="${POSITIONAL[0]}"
        require_positive WORKER_NUM "$WORKER_NUM"
        local_num="${LOCAL_WORKER_NUM:-$WORKER_NUM}"
    else
        local_num="${POSITIONAL[0]}"
        require_positive DEVICE_NUM "$local_num"
    fi
    DATASET_PATH="$(require_dir DATASET_PATH "${POSITIONAL[1]}")"
    prepare_run "search-$(echo "$target" | tr '[:upper:]' '[:lower:]')-x${WORKER_NUM:-$local_num}"
    note "run folder: $RUN_DIR"
    build_msrun "$local_num" \
        "$REPO_ROOT/search.py" --device_target "$target" --run_distribute true --overwrite true \
        --dataset_path "$DATASET_PATH" --save_ckpt_path "$OUTPUT_DIR" --run_name "$RUN_NAME" "${EXTRA_ARGS[@]}"
    run_msrun
}
