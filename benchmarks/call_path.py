"""Batch-1 GRAPH-mode call path: ``net(x)`` against ``src.inference.graph_runner`` (what predict.py and eval.py
run), timed alternately in the same process on the same compiled network.

    python benchmarks/call_path.py [--blocks 8] [--calls 50] [--image_size 224] [--out benchmarks/results]

``net(x)`` goes through ``Cell.__call__``, which looks the compiled graph up again and sets the compile phase
on every sub-cell at each call; the runner checks once per input shape that the compiled graph run directly
gives the same outputs and then runs it directly.  Each of ``--blocks`` rounds times ``--calls`` calls of one
path, then of the other (numpy in, numpy out, as ``Model.run``), and records each block's median.  Writes
``call_path.md`` into ``--out``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def block_median(call: Callable[[], object], calls: int) -> float:
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    from src.model_utils.device import configure_environment

    configure_environment("CPU")
    import mindspore as ms

    from src.arch import get_arch
    from src.inference import graph_runner, inference_form
    from src.latency import cpu_description
    from src.proxylessnas_mobile import ProxylessNAS

    ms.set_context(mode=ms.GRAPH_MODE)
    net = inference_form(ProxylessNAS(get_arch("proxylessnas_mobile"), num_classes=1000))  # as predict.py
    run = graph_runner(net)
    x = np.random.default_rng(0).standard_normal((1, 3, args.image_size, args.image_size)).astype(np.float32)
    paths = {"net(x) (Cell.__call__)": lambda: net(ms.Tensor(x)).asnumpy(),
             "graph_runner (predict.py, eval.py)": lambda: run(ms.Tensor(x)).asnumpy()}
    for call in paths.values():  # compile, check, warm up
        for _ in range(10):
            call()
    direct = all(run.direct_shapes.values()) and bool(run.direct_shapes)
    medians: dict = {name: [] for name in paths}
    load_before = [round(v, 2) for v in os.getloadavg()]
    for _ in range(args.blocks):
        for name, call in paths.items():
            medians[name].append(block_median(call, args.calls))
    load_after = [round(v, 2) for v in os.getloadavg()]
    cpu = cpu_description()
    names: List[str] = list(paths)
    base, fast = (float(np.median(medians[n])) for n in names)
    lines = [f"# Batch-1 call path, GRAPH mode, proxylessnas_mobile at {args.image_size}x{args.image_size}", "",
             f"- date: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; CPU: {cpu['cpu']} ({cpu['cpu_flags']}), "
             f"{cpu['cpu_count']} logical cores; load average before {load_before}, after {load_after}",
             f"- command: `python benchmarks/call_path.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
             f"- {args.blocks} rounds, each {args.calls} calls of one path then of the other; ms = median of a block; "
             f"runner on the direct path: {direct}", "",
             "| path | block medians ms | median of blocks ms |", "|---|---|---|"]
    for name in names:
        lines.append(f"| {name} | {', '.join(f'{v:.2f}' for v in medians[name])} | {np.median(medians[name]):.2f} |")
    lines += ["", f"graph_runner / net(x): {fast / base:.3f} (median of blocks); the runner was faster in "
              f"{sum(f < b for b, f in zip(*(medians[n] for n in names)))} of {args.blocks} rounds."]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "call_path.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
