"""The native depthwise kernel's instruction-set builds side by side on ProxylessNAS-Mobile's layer shapes.

    python benchmarks/kernel_isa.py [--repeats 20] [--out benchmarks/results]

Builds every variant this CPU can run (``src/native_depthwise.py``: avx512, avx2, generic), checks each
against numpy, then times the inference entry point (conv + folded-BN bias + ReLU6) at batch 1 through
ctypes on representative depthwise layers of the 224x224 network.  Writes ``kernel_isa.md``.
"""
from __future__ import annotations

import argparse
import ctypes
import logging
import os
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# (channels, map side of the input, kernel, stride): depthwise layers from each stage of the mobile net
LAYERS = ((32, 112, 3, 1), (96, 112, 3, 2), (144, 56, 5, 1), (240, 28, 7, 1), (480, 14, 5, 1), (1152, 7, 7, 1))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Time each build on each layer; write the table."""
    from benchmarks.run import cpu_model
    from src import native_depthwise as nd

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    libraries = {isa: ctypes.CDLL(str(nd.checked_library(isa))) for isa in nd.cpu_isas()}
    rng = np.random.default_rng(0)
    lines = ["# Native depthwise kernel: instruction-set builds", "",
             f"Written by `python benchmarks/kernel_isa.py` on {cpu_model()} (1-minute load average "
             f"{os.getloadavg()[0]:.2f}), a CPU with {', '.join(nd.cpu_isas())} builds; batch 1, conv + bias + ReLU6, median of "
             f"{args.repeats} rounds in ms, the builds called in turn within each round (the first column is "
             "this CPU's default).", "",
             "| layer (channels, map, kernel, stride) | " + " | ".join(libraries) + " |",
             "|---|" + "---|" * len(libraries)]
    for c, side, k, stride in LAYERS:
        x = rng.standard_normal((1, c, side, side)).astype(np.float32)
        w = rng.standard_normal((c, 1, k, k)).astype(np.float32)
        b = rng.standard_normal(c).astype(np.float32)
        out_side = (side + 2 * (k // 2) - k) // stride + 1
        y = np.zeros((1, c, out_side, out_side), np.float32)
        functions = [getattr(lib, f"DwForwardBiasRelu6S{stride}") for lib in libraries.values()]
        times = [[] for _ in functions]
        for _ in range(3):
            for fn in functions:
                nd._call(fn, [x, w, b, y])
        for _ in range(args.repeats):  # round-robin: a change in the machine's load hits every build alike
            for fn, spent in zip(functions, times):
                start = time.perf_counter()
                nd._call(fn, [x, w, b, y])
                spent.append(1000 * (time.perf_counter() - start))
        cells = [f"{np.median(spent):.3f}" for spent in times]
        lines.append(f"| {c}, {side}x{side}, {k}x{k}, s{stride} | " + " | ".join(cells) + " |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "kernel_isa.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'kernel_isa.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
