#!/usr/bin/env bash
# Build the Ascend 310 inference app into ascend310_infer/out/main.
# MINDSPORE_PATH (optional): the MindSpore package folder; default: the one PYTHON (python3) imports.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PYTHON=${PYTHON:-python3}
if [[ -z "${MINDSPORE_PATH:-}" ]]; then
    if ! MINDSPORE_PATH=$("$PYTHON" -c "import mindspore, os; print(os.path.dirname(mindspore.__file__))" 2>/dev/null); then
        echo "error: $PYTHON cannot import mindspore; install the Ascend build or set MINDSPORE_PATH" >&2
        exit 2
    fi
fi
if [[ ! -f "$MINDSPORE_PATH/include/api/model.h" ]]; then
    echo "error: $MINDSPORE_PATH has no include/api/model.h: this MindSpore package ships no C++ API" >&2
    exit 2
fi
echo "MindSpore: $MINDSPORE_PATH"
rm -rf "$HERE/build" "$HERE/out"
cmake -S "$HERE" -B "$HERE/build" -DMINDSPORE_PATH="$MINDSPORE_PATH" -DCMAKE_BUILD_TYPE=Release
cmake --build "$HERE/build" -j "$(nproc)"
echo "built $HERE/out/main"
