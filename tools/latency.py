"""Per-layer latency lookup tables for your own device: build, predict, check.

    python tools/latency.py build --runtime onnxruntime --threads 1 --image_size 224 --space default \\
        --output tables/ort1_224.yaml
    python tools/latency.py predict --table tables/ort1_224.yaml --arch proxylessnas_mobile
    python tools/latency.py check --table tables/ort1_224.yaml --arch proxylessnas_mobile --runtime onnxruntime --threads 1

Tables use the official ProxylessNAS format (``mobile_trim.yaml``) plus a ``_meta`` record, so the
official table works with ``predict`` and tables built here work with the official code.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import List, Optional, Sequence

# Runnable as a script from any directory: make the project's ``src`` importable.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from src.errors import UserError  # noqa: E402

_LOG = logging.getLogger("latency")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one line (and exit 2), like every other input error."""

    def error(self, message: str) -> None:
        self.exit(2, f"error: {message} (see python tools/latency.py {self.prog.split()[-1]} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The command line of this tool."""
    parser = _Parser(prog="latency.py", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def runtime_options(p: argparse.ArgumentParser, required: bool) -> None:
        p.add_argument("--runtime", required=required, help="onnxruntime or mindspore"
                       + ("" if required else " (default: the table's)"))
        p.add_argument("--threads", type=int, default=None,
                       help="intra-op threads (ONNX Runtime) / runtime_num_threads (MindSpore); "
                            "default: the runtime's own choice")
        p.add_argument("--warmup", type=int, default=10, help="untimed runs before timing (default 10)")
        p.add_argument("--runs", type=int, default=50, help="timed runs per layer or network (default 50)")

    build = commands.add_parser("build", help="measure a table on this machine")
    runtime_options(build, required=True)
    build.add_argument("--image_size", type=int, required=True, help="input side, e.g. 224")
    what = build.add_mutually_exclusive_group()
    what.add_argument("--space", default="default",
                      help="default: the official search space; released: the four released networks")
    what.add_argument("--arch", help="only the layers of one network: a released name or an official .config")
    build.add_argument("--output", required=True, help="the table to write (.yaml)")
    build.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    build.add_argument("--num_classes", type=int, default=1000, help="classifier size (default 1000)")
    build.add_argument("--width_mult", type=float, default=1.0, help="width multiplier of the default space")
    build.add_argument("--order", default="auto",
                       help="context (what auto, the default, means): every layer timed inside whole networks of "
                            "the layers being measured (ONNX Runtime: the network's node profile; MindSpore: the "
                            "layers' own times) and each network's time split between its layers; rotation: "
                            "layers timed apart in rounds, joins between them measured; sequential: each layer's "
                            "runs back to back (caches hot). rotation and sequential are kept for comparison: "
                            "benchmarks/results/latency_check.md")
    build.add_argument("--no_overhead_correction", action="store_true",
                       help="keep the runtime's per-call overhead inside every entry")
    build.add_argument("--no_joins", action="store_true",
                       help="rotation and sequential orders: do not measure the joins between layers "
                            "(Boundary-tensor entries; predict then sums the layers as the official estimate does, "
                            "which overestimates a network run)")

    for name, text in (("predict", "sum a network's latency from a table"),
                       ("check", "predicted vs measured end to end")):
        p = commands.add_parser(name, help=text)
        p.add_argument("--table", required=True, help="a latency table (.yaml), e.g. the official mobile_trim.yaml")
        p.add_argument("--arch", required=True, help="a released name or an official ProxylessNASNets .config")
        p.add_argument("--image_size", type=int, default=None, help="default: the table's input size")
        p.add_argument("--num_classes", type=int, default=None,
                       help="default: the config's classes (1000 for released names)")
        if name == "check":
            runtime_options(p, required=False)
    return parser


def _summaries(args) -> List[str]:
    """Parameters and MACs (src/flops.py) of the network(s) a command is about."""
    from src.arch import ARCHS, get_arch
    from src.flops import net_macs_params
    from src.latency import default_space, network_summary, resolve_arch, space_spec

    if getattr(args, "arch", None):
        spec, classes = resolve_arch(args.arch)
        return [network_summary(spec, args.image_size, args.num_classes or classes)]
    if args.space == "released":
        return [network_summary(get_arch(name), args.image_size, args.num_classes) for name in sorted(ARCHS)]
    space = default_space(args.image_size, args.width_mult, args.num_classes)
    lines = []
    for label, choices in (("smallest", [None if c.zero else c.candidates[0] for c in space.cells]),
                           ("largest", [c.candidates[-1] for c in space.cells])):
        macs, params = net_macs_params(space_spec(space, choices), args.image_size, args.num_classes)
        lines.append(f"search space, {label} network: {params:,} parameters, {macs / 1e6:.1f} M MACs "
                     f"at {args.image_size}x{args.image_size}")
    return lines


def _build(args) -> str:
    from src.latency import LatencyTable, _check_runtime, build_table, layers_to_build

    if Path(args.output).exists() and not args.overwrite:  # before minutes of measuring, not after
        raise UserError(f"{args.output} exists: pass --overwrite to replace it, or choose another --output")
    _check_runtime(args.runtime, args.threads)
    layers = layers_to_build(args.image_size, args.space, args.arch, args.num_classes, args.width_mult)
    for line in _summaries(args):
        _LOG.info("%s", line)
    _LOG.info("measuring %d layers on %s (threads: %s), %d warm-up + %d timed runs each", len(layers),
              args.runtime, args.threads or "default", args.warmup, args.runs)
    table: LatencyTable = build_table(args.runtime, args.image_size, space=args.space, arch=args.arch,
                                      threads=args.threads, num_classes=args.num_classes,
                                      width_mult=args.width_mult, warmup=args.warmup, runs=args.runs, order=args.order,
                                      subtract_overhead=not args.no_overhead_correction, joins=not args.no_joins)
    path = table.save(args.output, overwrite=args.overwrite)
    meta = table.meta
    return (f"wrote {path}: {len(table)} entries ({meta['runtime']} {meta['runtime_version']}, threads "
            f"{meta['threads']}, image size {meta['image_size']}, call overhead {meta['call_overhead_ms']:.4f} ms, "
            f"{meta['order']} order, {meta.get('boundaries', 0)} joins) in {meta['build_seconds']} s")


def _predict(args, table) -> float:
    from src.latency import predict_latency, resolve_arch

    spec, classes = resolve_arch(args.arch)
    args.num_classes = args.num_classes or classes
    _LOG.info("%s", _summaries(args)[0])
    total, breakdown = predict_latency(table, spec, args.image_size, args.num_classes)
    width = max(len(key) for key, _ in breakdown)
    for key, ms in breakdown:
        _LOG.info("  %-*s %8.3f ms", width, key, ms)
    return total


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one subcommand; a user mistake prints one line and returns 2."""
    args = build_parser().parse_args(argv)
    from src.model_utils.cli import setup_logging
    from src.model_utils.device import configure_environment

    setup_logging()
    configure_environment("CPU")  # before MindSpore loads: the CPU settings every entry point uses
    try:
        if args.command == "build":
            print(_build(args))
            return 0
        from src.latency import LatencyTable, measure_network, resolve_arch

        table = LatencyTable.load(args.table)
        args.image_size = args.image_size or table.image_size or 224
        total = _predict(args, table)
        if args.command == "predict":
            print(f"predicted latency: {total:.3f} ms")
            return 0
        runtime = args.runtime or table.meta.get("runtime")
        if not runtime:
            raise UserError(f"{args.table} does not say which runtime measured it: pass --runtime onnxruntime|mindspore")
        table_threads = table.meta.get("threads")
        threads = args.threads
        if threads is None and runtime == table.meta.get("runtime") and isinstance(table_threads, int):
            threads = table_threads  # by default the check runs as the table was measured
        measured_with = (table.meta.get("runtime"), table.meta.get("threads"))
        if measured_with[0] and (measured_with[0], measured_with[1]) != (runtime, threads or "default"):
            _LOG.warning("the table was measured with %s (threads %s), the check runs %s (threads %s)",
                         measured_with[0], measured_with[1], runtime, threads or "default")
        spec, _ = resolve_arch(args.arch)
        measured = measure_network(spec, args.image_size, args.num_classes, runtime, threads,
                                   warmup=args.warmup, runs=args.runs)
        print(f"predicted {total:.3f} ms, measured {measured:.3f} ms ({runtime}, threads {threads or 'default'}), "
              f"predicted/measured {total / measured:.3f}")
        return 0
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
