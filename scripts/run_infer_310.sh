#!/usr/bin/env bash
# Ascend 310 inference of an exported MINDIR: preprocess -> inference -> postprocess (acc.log).
# Each step runs in the foreground and the script stops at the first one that fails.
set -euo pipefail

usage() {
    cat >&2 <<'USAGE'
usage: bash scripts/run_infer_310.sh MINDIR_PATH DATASET_NAME DATASET_PATH NEED_PREPROCESS [DEVICE_ID]
  MINDIR_PATH      model from: python export.py --file_format MINDIR --checkpoint CKPT ...
                   (or an .onnx file, INT8 ones included, with INFER_BACKEND=python: ONNX Runtime on CPU)
  DATASET_NAME     imagenet2012
  DATASET_PATH     validation images: ImageFolder (val/<class>/<image>), or a flat folder with VAL_LABEL_FILE
  NEED_PREPROCESS  y: write preprocess_Result/ from DATASET_PATH; n: reuse the preprocess_Result/ already here
  DEVICE_ID        Ascend device id (default 0)
environment:
  INFER_BACKEND    ascend (default): build and run ascend310_infer/ on the Ascend device;
                   python: run the same MINDIR with MindSpore on CPU (src/infer_runner.py), same files
  IMAGE_SIZE       input side the MINDIR was exported with (default: read from the MINDIR; a different
                   value is refused)
  VAL_LABEL_FILE   flat validation folder: file with one class index or synset per image (sorted names)
  PYTHON           Python interpreter with the requirements installed (default python3)
Writes to the current directory: preprocess_Result/ result_Files/ time_Result/ *.log acc.log
USAGE
    exit 2
}

fail() { echo "error: $*" >&2; exit 2; }

# run_step NAME LOG COMMAND...: run in the foreground with output in LOG; on failure show its tail and stop
run_step() {
    local name=$1 log=$2
    shift 2
    echo "[$name] log: $log"
    if ! "$@" >"$log" 2>&1; then
        echo "error: $name failed; last lines of $log:" >&2
        tail -n 20 "$log" >&2
        exit 1
    fi
}

[[ $# -eq 4 || $# -eq 5 ]] || usage

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(pwd)
MODEL=$(realpath -m "$1")
DATASET_NAME=$2
DATASET_PATH=$(realpath -m "$3")
NEED_PREPROCESS=$4
DEVICE_ID=${5:-0}
BACKEND=${INFER_BACKEND:-ascend}
IMAGE_SIZE=${IMAGE_SIZE:-}
PYTHON=${PYTHON:-python3}
PRE_RESULT="$WORK/preprocess_Result"
RESULT="$WORK/result_Files"
TIME_RESULT="$WORK/time_Result"

[[ -f "$MODEL" ]] || fail "MINDIR_PATH $MODEL not found (export one with export.py --file_format MINDIR)"
[[ "$DATASET_NAME" == "imagenet2012" ]] || fail "DATASET_NAME must be imagenet2012, got '$DATASET_NAME'"
[[ "$NEED_PREPROCESS" == "y" || "$NEED_PREPROCESS" == "n" ]] || fail "NEED_PREPROCESS must be y or n, got '$NEED_PREPROCESS'"
[[ "$DEVICE_ID" =~ ^[0-9]+$ ]] || fail "DEVICE_ID must be a number, got '$DEVICE_ID'"
[[ -z "$IMAGE_SIZE" || "$IMAGE_SIZE" =~ ^[0-9]+$ ]] || fail "IMAGE_SIZE must be a number, got '$IMAGE_SIZE'"
[[ "$BACKEND" == "ascend" || "$BACKEND" == "python" ]] || fail "INFER_BACKEND must be ascend or python, got '$BACKEND'"
command -v "$PYTHON" >/dev/null || fail "PYTHON=$PYTHON not found; set PYTHON to the interpreter with the requirements"

if [[ "$BACKEND" == "ascend" && "${MODEL,,}" == *.onnx ]]; then
    fail "the Ascend 310 app runs MINDIR files, not ONNX ($MODEL): export with --file_format MINDIR, or run the ONNX file with INFER_BACKEND=python (ONNX Runtime on CPU)"
fi

ASCEND_HOME=${ASCEND_HOME:-/usr/local/Ascend}
if [[ "$BACKEND" == "ascend" && ! -d "$ASCEND_HOME" ]]; then
    fail "no Ascend toolkit at $ASCEND_HOME (set ASCEND_HOME); on a host without Ascend run with INFER_BACKEND=python"
fi

# The MINDIR records the input shape it was exported with: inputs of another size would run (global
# pooling) and give a wrong accuracy, so the size comes from the file and a different IMAGE_SIZE is refused.
EXPORTED_SIZE=$(PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -c '
import sys
from src.files import image_size_of, mindir_input_shape
if sys.argv[1].lower().endswith(".onnx"):
    import onnxruntime
    shape = onnxruntime.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"]).get_inputs()[0].shape
else:
    shape = mindir_input_shape(sys.argv[1])
print(image_size_of(shape) or "")' "$MODEL" 2>/dev/null | tail -n 1) || EXPORTED_SIZE=""
if [[ -n "$EXPORTED_SIZE" && -n "$IMAGE_SIZE" && "$EXPORTED_SIZE" != "$IMAGE_SIZE" ]]; then
    fail "IMAGE_SIZE=$IMAGE_SIZE but $MODEL was exported for ${EXPORTED_SIZE}x${EXPORTED_SIZE} inputs: set IMAGE_SIZE=$EXPORTED_SIZE (or leave it unset)"
fi
IMAGE_SIZE=${IMAGE_SIZE:-${EXPORTED_SIZE:-224}}

echo "model: $MODEL"
echo "dataset: $DATASET_NAME at $DATASET_PATH"
echo "preprocess: $NEED_PREPROCESS, backend: $BACKEND, device id: $DEVICE_ID, image size: $IMAGE_SIZE"

if [[ "$NEED_PREPROCESS" == "y" ]]; then
    [[ -d "$DATASET_PATH" ]] || fail "DATASET_PATH $DATASET_PATH is not a folder"
    layout=(--val_layout imagefolder)
    if [[ -n "${VAL_LABEL_FILE:-}" ]]; then
        layout=(--val_layout flat --val_label_file "$(realpath -m "$VAL_LABEL_FILE")")
    fi
    rm -rf "$PRE_RESULT"
    run_step preprocess "$WORK/preprocess.log" "$PYTHON" "$REPO/preprocess.py" --device_target CPU \
        --dataset_path "$DATASET_PATH" "${layout[@]}" --image_size "$IMAGE_SIZE" --model_path "$MODEL" \
        --pre_result_path "$PRE_RESULT"
elif [[ ! -d "$PRE_RESULT/img_data" ]]; then
    fail "NEED_PREPROCESS is n but $PRE_RESULT/img_data does not exist; run once with y"
fi

rm -rf "$RESULT" "$TIME_RESULT"
mkdir -p "$RESULT" "$TIME_RESULT"
if [[ "$BACKEND" == "ascend" ]]; then
    for env_script in "$ASCEND_HOME/ascend-toolkit/set_env.sh" "$ASCEND_HOME/latest/set_env.sh"; do
        if [[ -f "$env_script" ]]; then
            set +u  # vendor script reads unset variables
            # shellcheck disable=SC1090
            source "$env_script"
            set -u
            break
        fi
    done
    run_step build "$WORK/build.log" bash "$REPO/ascend310_infer/build.sh"
    run_step inference "$WORK/infer.log" "$REPO/ascend310_infer/out/main" --mindir_path="$MODEL" \
        --input_path="$PRE_RESULT/img_data" --result_path="$RESULT" --time_path="$TIME_RESULT" --device_id="$DEVICE_ID"
else
    run_step inference "$WORK/infer.log" env PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m src.infer_runner \
        --mindir_path "$MODEL" --input_path "$PRE_RESULT/img_data" --result_path "$RESULT" --time_path "$TIME_RESULT" \
        --device_id "$DEVICE_ID"
fi
cat "$TIME_RESULT/test_perform_static.txt"

run_step postprocess "$WORK/postprocess.log" "$PYTHON" "$REPO/postprocess.py" --device_target CPU \
    --result_path "$RESULT" --pre_result_path "$PRE_RESULT" --acc_log "$WORK/acc.log"
cat "$WORK/acc.log"
