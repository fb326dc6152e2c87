"""Where the time of one batch-1 call goes: ``src/predict.py``'s checkpoint path, profiled with cProfile.

    python benchmarks/profile_batch1.py [--mode GRAPH] [--calls 30] [--image_size 224] [--out benchmarks/results]

Builds a checkpoint (random weights), opens it with ``open_model`` as ``predict.py`` does and profiles
``Model.run`` on a numpy image: the Python-side cost per call (input conversion, the graph launch, the
copy back) against the total.  Writes ``profile_batch1.md`` into ``--out``.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import logging
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def profile_calls(mode: str, calls: int, image_size: int, workdir: Path) -> dict:
    """cProfile statistics of ``calls`` batch-1 ``Model.run`` calls after a warm-up."""
    from src.model_utils.device import configure_environment
    configure_environment("CPU")
    from src import create_model
    from src.checkpoint import params_list, save_checkpoint_atomic
    from src.predict import open_model

    ckpt = save_checkpoint_atomic(params_list(create_model("proxylessnas_mobile", num_classes=1000)),
                                  str(workdir / "random.ckpt"))
    model = open_model(ckpt, image_size=image_size, mode=mode)
    x = np.random.default_rng(0).standard_normal((1, 3, image_size, image_size)).astype(np.float32)
    for _ in range(3):
        model.run(x)  # compile and warm up
    wall: List[float] = []
    profiler = cProfile.Profile()
    for _ in range(calls):
        start = time.perf_counter()
        profiler.enable()
        model.run(x)
        profiler.disable()
        wall.append(time.perf_counter() - start)
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text).sort_stats("tottime")
    stats.print_stats(12)
    rows = []
    for (file, line, name), (_, ncalls, tottime, cumtime, _) in sorted(
            stats.stats.items(), key=lambda item: -item[1][2])[:12]:
        rows.append({"function": f"{Path(file).name}:{line}({name})", "calls_per_run": ncalls / calls,
                     "self_ms_per_run": 1000 * tottime / calls, "cum_ms_per_run": 1000 * cumtime / calls})
    # the graph launch (C++: the network's kernels) against everything Python does around it
    launch = sum(v[3] for (f, _, name), v in stats.stats.items() if name in ("_exec_pip", "run_op_async", "_run_op"))
    total = sum(v[2] for v in stats.stats.values())
    return {"mode": mode, "calls": calls, "median_ms": 1000 * float(np.median(wall)), "rows": rows,
            "launch_ms": 1000 * launch / calls, "python_ms": 1000 * (total - launch) / calls}


def report(result: dict, image_size: int) -> str:
    """The profile as markdown."""
    lines = [f"# Batch-1 profile: predict.py's checkpoint path, {result['mode']} mode, image {image_size}", "",
             f"Written by `python benchmarks/profile_batch1.py --mode {result['mode']}` "
             f"({result['calls']} profiled calls, median {result['median_ms']:.2f} ms per call with cProfile on;"
             " timings on a shared machine are indicative only).", "",
             f"- graph execution (MindSpore's C++ runtime, the network's kernels): {result['launch_ms']:.2f} ms per image",
             f"- Python around it (input conversion, Cell.__call__ bookkeeping, copy back): "
             f"{result['python_ms']:.2f} ms per image (inflated by cProfile's own cost per Python call)", "",
             "| function (top by own time) | calls per image | own ms per image | cumulative ms per image |",
             "|---|---|---|---|"]
    for row in result["rows"]:
        lines.append(f"| `{row['function']}` | {row['calls_per_run']:.0f} | {row['self_ms_per_run']:.3f} | "
                     f"{row['cum_ms_per_run']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Profile and write the summary."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", default="GRAPH", choices=["GRAPH", "PYNATIVE"])
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    with tempfile.TemporaryDirectory() as workdir:
        result = profile_calls(args.mode, args.calls, args.image_size, Path(workdir))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"profile_batch1{'' if args.mode == 'GRAPH' else '_pynative'}.md"
    path.write_text(report(result, args.image_size))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
