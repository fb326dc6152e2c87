#!/usr/bin/env bash
# Compile-check the Ascend 310 app against the MindSpore C++ API headers (no linking: no PyPI
# MindSpore ships a linkable C++ library for x86 CPU hosts).
# Header sources, first found wins:
#   MINDSPORE_INCLUDE_ROOT  a folder holding include/api/model.h (e.g. an Ascend install's mindspore/)
#   the mindspore package PYTHON imports, when it ships include/api (2.7.x does, 2.8-2.10 do not)
#   a cache of the mindspore 2.7.1 wheel's headers: ${XDG_CACHE_HOME:-~/.cache}/proxylessnas/mindspore-2.7.1
#   with MS_HEADERS_DOWNLOAD=1: download that wheel once (about 800 MB, Python 3.11 x86_64) and fill the cache
# Exit 0: compiled; 1: compile errors; 77: skipped (the reason is printed).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PYTHON=${PYTHON:-python3}
WHEEL_VERSION=2.7.1
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/proxylessnas/mindspore-$WHEEL_VERSION"
CXX=${CXX:-g++}

skip() { echo "skipped: $*"; exit 77; }
has_headers() { [[ -n "$1" && -f "$1/include/api/model.h" ]]; }

command -v "$CXX" >/dev/null || skip "no C++ compiler ($CXX) on this host"

root=""
if has_headers "${MINDSPORE_INCLUDE_ROOT:-}"; then
    root=$MINDSPORE_INCLUDE_ROOT
elif package=$("$PYTHON" -c "import importlib.util, os; s = importlib.util.find_spec('mindspore'); print(os.path.dirname(s.origin))" 2>/dev/null) \
        && has_headers "$package"; then
    root=$package
elif has_headers "$CACHE/mindspore"; then
    root=$CACHE/mindspore
elif [[ "${MS_HEADERS_DOWNLOAD:-0}" == "1" ]]; then
    command -v unzip >/dev/null || skip "MS_HEADERS_DOWNLOAD=1 but unzip is not installed"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    echo "downloading the mindspore $WHEEL_VERSION wheel for its C++ headers (about 800 MB)"
    if ! "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: "mindspore==$WHEEL_VERSION" -d "$tmp"; then
        skip "pip could not download mindspore==$WHEEL_VERSION for this Python/platform (it is published for CPython 3.9-3.11 on x86_64/aarch64 Linux)"
    fi
    mkdir -p "$CACHE"
    unzip -q -o "$tmp"/mindspore-*.whl 'mindspore/include/*' -d "$CACHE"
    has_headers "$CACHE/mindspore" || skip "the mindspore $WHEEL_VERSION wheel holds no include/api/model.h"
    root=$CACHE/mindspore
else
    skip "no MindSpore C++ API headers found (installed mindspore ships none; cache $CACHE empty); set MS_HEADERS_DOWNLOAD=1 to fetch the mindspore $WHEEL_VERSION wheel's headers once, or MINDSPORE_INCLUDE_ROOT"
fi

echo "headers: $root/include"
for source in "$HERE/src/main.cc" "$HERE/src/utils.cc"; do
    # -isystem: warnings of the MindSpore headers are not ours; our own code must be warning-free
    "$CXX" -std=c++17 -fsyntax-only -Wall -Wextra -Werror -I"$HERE" -isystem "$root" -isystem "$root/include" "$source"
    echo "ok: $(basename "$source")"
done
echo "syntax check passed against $root/include"
