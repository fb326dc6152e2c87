"""Latency tables on this machine: predicted (sum of per-layer entries) vs measured end to end.

    python benchmarks/latency_check.py [--image_size 224] [--runs 100] [--random_networks 5] [--out DIR]

Two checks, each for ONNX Runtime with 1 thread and with its default threads and for MindSpore (GRAPH
mode, default threads), tables built in ``build``'s default ``context`` order:

- held out: a table of the default search space (its layers timed inside the space's one-candidate
  networks), used to predict networks drawn at random from the space (Zero cells included; not among the
  networks the table was built from), each measured on its own before and after the table;
- released: a table of the four released networks' layers (``--space released``: the networks themselves
  are the context, so this shows repeatability, not generalisation), each network measured on its own
  before and after. ONNX Runtime 1 thread is done again with the older ``rotation`` order (layers timed
  apart, joins between them measured) to show what the context order changed.

The default-space build with ONNX Runtime 1 thread is also the timing of the table the search needs.
Writes ``latency_check.md`` and ``latency_check.json`` into ``--out`` (``latency_check_SIZE.*`` for another
``--image_size``), with the load average before and after every part: on a busy machine the numbers say
little.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

_LOG = logging.getLogger("latency_check")
NETWORKS = ("proxylessnas_mobile", "proxylessnas_mobile_14", "proxylessnas_cpu", "proxylessnas_gpu")
# (space, runtime, threads, order)
SETUPS = (("default", "onnxruntime", 1, "context"), ("default", "onnxruntime", None, "context"),
          ("default", "mindspore", None, "context"),
          ("released", "onnxruntime", 1, "context"), ("released", "onnxruntime", None, "context"),
          ("released", "mindspore", None, "context"), ("released", "onnxruntime", 1, "rotation"))


def _load() -> List[float]:
    return [round(x, 2) for x in os.getloadavg()]


def random_networks(image_size: int, count: int, seed: int = 0) -> List[Any]:
    """``count`` networks of the default space, every cell's op drawn uniformly (Zero included where allowed)."""
    import numpy as np

    from src.latency import default_space

    space = default_space(image_size)
    rng = np.random.default_rng(seed)
    return [space.spec([int(rng.integers(len(cell.op_names))) for cell in space.cells], f"random{i}")
            for i in range(count)]


def check_setup(space: str, runtime: str, threads: Optional[int], order: str, specs: Sequence[Any],
                image_size: int, warmup: int, runs: int) -> Dict[str, Any]:
    """Build one table (``space``), then predict each of ``specs`` from it and compare with the network
    measured on its own as ``tools/latency.py check`` does, once before the table and once after."""
    from src.latency import build_table, measure_network, network_summary, predict_latency

    load_before = _load()
    # on a shared machine the same network alone moves by 10-40% within minutes, so one reading cannot
    # judge a 10% goal; the mean of the two readings brackets the table's minutes
    before = {spec.name: measure_network(spec, image_size, 1000, runtime, threads, warmup=warmup, runs=runs)
              for spec in specs}
    table = build_table(runtime, image_size, space=space, threads=threads, warmup=warmup, runs=runs, order=order)
    rows = []
    for spec in specs:
        predicted, breakdown = predict_latency(table, spec, image_size, 1000)
        joins = next((ms for key, ms in breakdown if key.startswith("joins between layers")), 0.0)
        after = measure_network(spec, image_size, 1000, runtime, threads, warmup=warmup, runs=runs)
        alone = (before[spec.name] + after) / 2
        rows.append({"network": spec.name, "summary": network_summary(spec, image_size, 1000),
                     "predicted_ms": predicted, "plain_sum_ms": predicted - joins,
                     "alone_ms": alone, "alone_before_ms": before[spec.name], "alone_after_ms": after,
                     "ratio": predicted / alone, "plain_ratio": (predicted - joins) / alone})
        _LOG.info("%s %s threads %s %s table: predicted %.2f ms, measured alone %.2f / %.2f ms, ratio %.3f",
                  spec.name, runtime, threads or "default", order, predicted, before[spec.name], after,
                  predicted / alone)
    return {"space": space, "runtime": runtime, "threads": threads or "default", "order": order,
            "meta": table.meta, "entries": len(table), "rows": rows, "load_before": load_before, "load_after": _load()}


def write_markdown(result: Dict[str, Any], path: Path) -> None:
    """The human-readable report."""
    lines = [f"# Latency tables: predicted vs measured, image {result['image_size']}, batch 1", "",
             f"- date: {result['date']}; CPU: {result['cpu']['cpu']} ({result['cpu']['cpu_flags']}), "
             f"{result['cpu']['cpu_count']} logical cores; python {result['python']}",
             f"- command: `{result['command']}`, niceness {result['niceness']} (negative: run with priority "
             "over the machine's other jobs, e.g. `nice -n -10`)",
             f"- {result['warmup']} warm-up and {result['runs']} timed runs per layer and per network; "
             "predicted = what `tools/latency.py predict` prints: the sum of the table's entries for the "
             "network's layers + the per-call overhead once (- the joins between layers for a rotation table); "
             "plain sum = without the joins",
             "- measured = the whole network on its own, as `tools/latency.py check` times it, once before the "
             "table was built and once after (both given; the ratio uses their mean: the two readings show how "
             "much the machine itself moved)",
             "- table `default` / context: the default space's layers timed inside its one-candidate networks; "
             "the networks checked are drawn at random from the space and were not among them (held out). "
             "Table `released` / context: the four networks are the context themselves (repeatability). "
             "`rotation`: the older way, layers timed apart in rounds and the joins between them measured",
             "- in the build = the same network timed whole while the table was built (a context network of a "
             "`released` context table: its prediction is that time by construction, so there predicted / measured "
             "shows how far the machine moved between the build and the check)",
             "- load average (1, 5, 15 min) is given before and after each part: above ~1 on this 2-core "
             "machine other jobs were running and the numbers are noisy", ""]
    lines += ["| runtime | threads | table | network | MACs, params | predicted ms | plain sum ms | measured ms, "
              "before / after | predicted / measured | in the build ms |", "|---|---|---|---|---|---|---|---|---|---|"]
    for setup in result["setups"]:
        during = {**setup["meta"].get("contexts_ms", {}), **setup["meta"].get("networks_ms", {})}
        for row in setup["rows"]:
            built = f"{during[row['network']]:.2f}" if row["network"] in during else "-"
            lines.append(f"| {setup['runtime']} | {setup['threads']} | {setup['space']} / {setup['order']} | "
                         f"{row['network']} | {row['summary'].split(': ', 1)[1]} | {row['predicted_ms']:.2f} | "
                         f"{row['plain_sum_ms']:.2f} | {row['alone_before_ms']:.2f} / {row['alone_after_ms']:.2f} "
                         f"| {row['ratio']:.3f} | {built} |")
    lines += ["", "| setup | table | entries | build s | per-call overhead ms | load before | load after |",
              "|---|---|---|---|---|---|---|"]
    for setup in result["setups"]:
        meta = setup["meta"]
        ratios = [row["ratio"] for row in setup["rows"]]
        lines.append(f"| {setup['runtime']} {meta['runtime_version']}, threads {setup['threads']} | {setup['space']} / "
                     f"{setup['order']} | {setup['entries']} | {meta['build_seconds']} | "
                     f"{meta['call_overhead_ms']:.4f} | {setup['load_before']} | {setup['load_after']} |")
        setup["ratio_range"] = [min(ratios), max(ratios)]
    lines += ["", "Predicted / measured, lowest - highest per setup: " + "; ".join(
        f"{s['runtime']} threads {s['threads']} {s['space']}/{s['order']}: {s['ratio_range'][0]:.2f}-"
        f"{s['ratio_range'][1]:.2f}" for s in result["setups"]) + "."]
    build = next((s for s in result["setups"] if (s["space"], s["runtime"], s["threads"], s["order"])
                  == ("default", "onnxruntime", 1, "context")), None)
    if build:
        lines += ["", f"Whole default search space at {result['image_size']} (`build --runtime onnxruntime --threads 1 "
                  f"--space default`, {result['runs']} runs): {build['entries']} entries in "
                  f"{build['meta']['build_seconds']} s (layers exported in {build['meta']['prepare_seconds']} s)."]
    path.write_text("\n".join(lines) + "\n")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run every setup and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--markdown_from", metavar="JSON", help="only rewrite the report of an earlier run's JSON")
    parser.add_argument("--random_networks", type=int, default=5,
                        help="networks drawn from the default space to check the held-out prediction (default 5)")
    args = parser.parse_args(argv)
    from src.model_utils.cli import setup_logging
    from src.model_utils.device import configure_environment

    if args.markdown_from:
        source = Path(args.markdown_from)
        write_markdown(json.loads(source.read_text()), source.with_suffix(".md"))
        print(f"wrote {source.with_suffix('.md')}")
        return 0
    setup_logging()
    configure_environment("CPU")
    from src.latency import cpu_description

    result: Dict[str, Any] = {"image_size": args.image_size, "warmup": args.warmup, "runs": args.runs,
                              "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                              "cpu": cpu_description(), "python": platform.python_version(),
                              "niceness": os.nice(0),
                              "command": "python benchmarks/latency_check.py " + " ".join(argv or sys.argv[1:]),
                              "setups": []}
    from src.arch import get_arch

    held_out = random_networks(args.image_size, args.random_networks)
    for space, runtime, threads, order in SETUPS:
        specs = held_out if space == "default" else [get_arch(name) for name in NETWORKS]
        result["setups"].append(check_setup(space, runtime, threads, order, specs, args.image_size, args.warmup,
                                            args.runs))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "latency_check" if args.image_size == 224 else f"latency_check_{args.image_size}"
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    write_markdown(result, out / f"{stem}.md")
    print(f"wrote {out / (stem + '.md')} and {out / (stem + '.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
