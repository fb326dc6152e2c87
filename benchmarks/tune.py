"""MindSpore settings tried for speed, each measured with benchmarks/run.py's workers on the same weights.

    python benchmarks/tune.py [--batch 32] [--image_size 224] [--out benchmarks/results]

Variants: the oneDNN ISA cap, jit levels, graph kernel fusion, runtime threads (BN folding is part of
every run: folded and unfolded rows).  The baseline runs first and last, so drift in the machine's load
shows.  Writes ``tuning.json`` and ``tuning.md``.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import run as bench  # noqa: E402

_LOG = logging.getLogger("tune")

VARIANTS: Dict[str, List[str]] = {
    "baseline (AVX2, default jit, default threads)": [],
    "jit_level O0": ["--jit_level", "O0"],
    "jit_level O1": ["--jit_level", "O1"],
    "jit_level O2": ["--jit_level", "O2"],
    "graph kernel fusion": ["--graph_kernel"],
    "runtime_num_threads 1": ["--threads", "1"],
    "runtime_num_threads 2": ["--threads", "2"],
    "oneDNN ISA not capped (MindSpore default)": ["--isa", "default"],
    "baseline again": [],
}


def summary(results: dict) -> dict:
    """The numbers a variant is judged on."""
    def get(*keys):
        return bench._get(results, *keys)

    failed = {k: v.get("failed", "").splitlines()[0] for k, v in results["sections"].items()
              if isinstance(v, dict) and v.get("failed")}
    return {
        "train_img_per_s": get("train_mindspore", "img_per_s"),
        "train_first_step_s": get("train_mindspore", "first_call_s"),
        "infer_b1_folded_ms": get("infer_mindspore", "folded", "batch1", "median_ms"),
        "infer_b1_plain_ms": get("infer_mindspore", "plain", "batch1", "median_ms"),
        "infer_bN_folded_img_per_s": get("infer_mindspore", "folded", "batchN", "img_per_s"),
        "infer_bN_plain_img_per_s": get("infer_mindspore", "plain", "batchN", "img_per_s"),
        "max_logit_diff_vs_torch": max(results["logits_vs_torch_rel"].values(), default=None),
        "load_before": results["load_average_before"][0], "load_after": results["load_average_after"][0],
        **({"failed": failed} if failed else {}),
    }


def markdown(rows: Dict[str, dict], settings: dict) -> str:
    """The variants as one table."""
    def f(value, digits=1):
        return "-" if value is None else f"{value:.{digits}f}"

    lines = [f"# MindSpore settings tried ({settings['arch']}, image {settings['image_size']}, "
             f"batch {settings['batch']})", "",
             f"| variant | train img/s | first train step s | batch 1 ms (BN folded) | batch 1 ms (as trained) | "
             f"batch {settings['batch']} img/s (folded) | batch {settings['batch']} img/s (as trained) | "
             "logits vs PyTorch (rel.) | load 1 min before/after |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, s in rows.items():
        note = f" (failed: {'; '.join(f'{k}: {v}' for k, v in s['failed'].items())})" if s.get("failed") else ""
        diff = "-" if s["max_logit_diff_vs_torch"] is None else f"{s['max_logit_diff_vs_torch']:.1e}"
        lines.append(f"| {name}{note} | {f(s['train_img_per_s'])} | {f(s['train_first_step_s'])} | "
                     f"{f(s['infer_b1_folded_ms'], 2)} | {f(s['infer_b1_plain_ms'], 2)} | "
                     f"{f(s['infer_bN_folded_img_per_s'])} | {f(s['infer_bN_plain_img_per_s'])} | {diff} | "
                     f"{s['load_before']} / {s['load_after']} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run every variant; write tuning.json and tuning.md."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--train_steps", type=int, default=4)
    parser.add_argument("--infer_iters", type=int, default=20)
    parser.add_argument("--variants", default="", help="comma-separated subset of the variant names")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    chosen = [v.strip() for v in args.variants.split(",") if v.strip()] or list(VARIANTS)
    rows, raw = {}, {}
    for name in chosen:
        common = ["--batch", str(args.batch), "--image_size", str(args.image_size), "--train_steps",
                  str(args.train_steps), "--infer_iters", str(args.infer_iters),
                  "--sections", "weights,infer_torch,infer_mindspore,train_mindspore"]
        run_args = bench.parse_args(common + VARIANTS[name])
        _LOG.info("variant: %s", name)
        raw[name] = bench.run_benchmark(run_args)
        rows[name] = summary(raw[name])
        _LOG.info("%s: %s", name, json.dumps(rows[name]))
    settings = {"arch": "proxylessnas_mobile", "batch": args.batch, "image_size": args.image_size}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tuning.json").write_text(json.dumps({"settings": settings, "machine": bench.machine_info(),
                                                 "summary": rows, "runs": raw}, indent=2) + "\n")
    (out / "tuning.md").write_text(markdown(rows, settings))
    print(markdown(rows, settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
