"""Where MindSpore's time goes, operator by operator: ``src/predict.py``'s checkpoint path at batch 1.

    python benchmarks/profile_ops.py [--calls 30] [--image_size 224] [--isa project|AVX2|...] [--out benchmarks/results]

Builds a checkpoint (random weights), opens it with ``open_model`` as ``predict.py`` does (GRAPH mode, BN
folded, native kernels), times ``--calls`` calls without the profiler, then runs them again under
``mindspore.Profiler`` and sums its per-operator times per call.  ``--isa project`` (default) leaves the
oneDNN setting to the project (src/model_utils/device.py: capped at AVX2, lifted where the native kernels
cover the slow convolutions); any other value is set as ONEDNN_MAX_CPU_ISA before MindSpore runs.
Writes ``profile_ops[_<isa>].md`` into ``--out``.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def profile(calls: int, image_size: int, workdir: Path) -> dict:
    """Median wall time per call, then the profiler's operator times per call, of ``open_model``'s ``run``."""
    from src.model_utils.device import configure_environment, onednn_isa
    configure_environment("CPU")
    from src import create_model, native_depthwise
    from src.checkpoint import params_list, save_checkpoint_atomic
    from src.predict import open_model

    ckpt = save_checkpoint_atomic(params_list(create_model("proxylessnas_mobile", num_classes=1000)),
                                  str(workdir / "random.ckpt"))
    model = open_model(ckpt, image_size=image_size, mode="GRAPH")
    isa = onednn_isa()  # what oneDNN reads at the first convolution, just below
    x = np.random.default_rng(0).standard_normal((1, 3, image_size, image_size)).astype(np.float32)
    for _ in range(5):
        model.run(x)  # compile and warm up
    wall: List[float] = []
    for _ in range(calls):
        start = time.perf_counter()
        model.run(x)
        wall.append(time.perf_counter() - start)
    from mindspore import Profiler

    profiler = Profiler(output_path=str(workdir / "profile"))
    for _ in range(calls):
        model.run(x)
    profiler.analyse()
    found = sorted((workdir / "profile").rglob("cpu_op_type_info_*.csv"))
    if not found:
        raise RuntimeError(f"the profiler wrote no cpu_op_type_info file under {workdir / 'profile'}")
    ops: Dict[str, dict] = {}
    with open(found[0], newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            ops[row["op_type"]] = {"count": int(row["type_occurrences"]) / calls,
                                   "ms": float(row["total_compute_time"]) / calls}
    return {"median_ms": float(np.median(wall)) * 1e3, "ops": ops, "onednn_isa": isa,
            "kernel_isa": native_depthwise.active_isa()}


def markdown(result: dict, calls: int, image_size: int, command: str) -> str:
    """The operator table, largest first, with the gap between the operators' sum and the wall time."""
    from benchmarks.run import cpu_model, load_average

    total = sum(node["ms"] for node in result["ops"].values())
    lines = [f"# Operators of one batch-1 call: predict.py's checkpoint path, GRAPH, image {image_size}", "",
             f"- date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; CPU: {cpu_model()}, {os.cpu_count()} logical cores; "
             f"load average {load_average()}",
             f"- command: `{command}`; oneDNN: {result['onednn_isa']} (AVX2 = capped, lifted = no cap); native "
             f"kernels built for {result['kernel_isa'] or 'none'}",
             f"- {calls} calls: median {result['median_ms']:.2f} ms per call without the profiler; the profiler's "
             f"operator times sum to {total:.2f} ms per call (the rest is the runtime between operators and the "
             "call itself). Timings on a shared machine are indicative; the shares count.", "",
             "| operator | per call | ms per call | share |", "|---|---|---|---|"]
    for name, node in sorted(result["ops"].items(), key=lambda item: -item[1]["ms"]):
        lines.append(f"| {name} | {node['count']:.0f} | {node['ms']:.3f} | {node['ms'] / total:.0%} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--isa", default="project", help="ONEDNN_MAX_CPU_ISA to set, or 'project' (default)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    if args.calls < 1:
        parser.error(f"--calls must be >= 1, got {args.calls}")
    if args.isa != "project":
        os.environ["ONEDNN_MAX_CPU_ISA"] = args.isa
    with tempfile.TemporaryDirectory(prefix="proxylessnas-profile-") as work:
        result = profile(args.calls, args.image_size, Path(work))
    command = "python benchmarks/profile_ops.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text = markdown(result, args.calls, args.image_size, command.strip())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / ("profile_ops.md" if args.isa == "project" else f"profile_ops_{args.isa.lower()}.md")
    path.write_text(text)
    print(text)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
