"""Peak memory and step time of the architecture search against training proxylessnas_mobile.

    python benchmarks/search_memory.py [--image_size 32] [--batch 16] [--steps 6] [--width_mult 1.0]

Each measurement runs in its own process (peak RSS = ru_maxrss of that process, which includes the
framework itself, so the baseline "import + build" is reported too): training steps of the fixed
proxylessnas_mobile network (GRAPH mode, as train.py runs it, and PyNative), search weight steps (one
sampled path) and search architecture steps (``two`` mode: two paths per edge), on random data. Every row
runs its depthwise convs as the entry points do (``depthwise_kernel`` auto: the project's native CPU kernel
when it builds, as train.py and search.py use it). Writes benchmarks/results/search_memory.md with the CPU
model and the load average. Step times are medians after the first (compile) step.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "search_memory.md"


def _load():
    return [round(x, 2) for x in os.getloadavg()]


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child(kind: str, image_size: int, batch: int, steps: int, width_mult: float) -> dict:
    """One measurement in this process."""
    os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")
    sys.path.insert(0, str(ROOT))
    import numpy as np
    import mindspore as ms

    ms.set_context(mode=ms.GRAPH_MODE if kind == "train_graph" else ms.PYNATIVE_MODE)
    ms.set_device("CPU")
    ms.set_seed(0)
    from src.loss import CrossEntropySmooth
    from src.native_depthwise import apply_choice

    rng = np.random.default_rng(0)
    images = ms.Tensor(rng.normal(size=(batch, 3, image_size, image_size)).astype(np.float32))
    labels = ms.Tensor(rng.integers(0, 10, batch).astype(np.int32))
    loss_fn = CrossEntropySmooth(10, 0.1)
    if kind.startswith("train"):
        from mindspore import nn
        from src.proxylessnas_mobile import create_model

        net = create_model("proxylessnas_mobile", num_classes=10)
        native = apply_choice(net, "auto", "CPU")
        opt = nn.Momentum(net.trainable_params(), 0.01, 0.9, weight_decay=4e-5)
        step_net = nn.TrainOneStepCell(nn.WithLossCell(net, loss_fn), opt)
        step_net.set_train(True)
        base = _peak_mb()

        def step():
            step_net(images, labels).asnumpy()
    else:
        from src.nas.optim import ArchAdam, PathSGD
        from src.latency import default_space
        from src.nas.steps import ArchObjective, arch_step_two, sample_pairs, sample_paths, weight_step
        from src.nas.supernet import SuperNet

        net = SuperNet(default_space(image_size, width_mult, 10))
        native = apply_choice(net, "auto", "CPU")
        sgd = PathSGD(net.weights())
        adam = ArchAdam([e.num_ops for e in net.edges])
        objective = ArchObjective(10, None, 1.0, "none")
        base = _peak_mb()

        def step():
            if kind == "search_weight":
                weight_step(net, sgd, loss_fn, images, labels, sample_paths(rng, net.alpha_arrays()), 0.01)
            else:
                arch_step_two(net, adam, objective, images, labels, sample_pairs(rng, net.alpha_arrays()))
    times = []
    for _ in range(steps):
        start = time.time()
        step()
        times.append(time.time() - start)
    return {"kind": kind, "depthwise": "native" if native else "builtin", "peak_rss_mb": _peak_mb(), "after_build_mb": base,
            "step_s": float(np.median(times[1:])) if len(times) > 1 else times[0], "first_step_s": times[0]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--width_mult", type=float, default=1.0)
    parser.add_argument("--child", default="")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.image_size, args.batch, args.steps, args.width_mult)))
        return 0
    sys.path.insert(0, str(ROOT))
    from src.latency import cpu_description

    cpu, load_before = cpu_description(), _load()
    rows = []
    for kind in ("train_graph", "train_pynative", "search_weight", "search_arch_two"):
        out = subprocess.run([sys.executable, __file__, "--child", kind, "--image_size", str(args.image_size),
                              "--batch", str(args.batch), "--steps", str(args.steps), "--width_mult",
                              str(args.width_mult)], capture_output=True, text=True, cwd=ROOT)
        if out.returncode != 0:
            rows.append({"kind": kind, "error": (out.stderr.strip().splitlines() or ["failed"])[-1]})
            continue
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    ref = next((r for r in rows if r["kind"] == "train_graph" and "error" not in r), None)
    lines = [f"# Search memory and step time (CPU, {args.image_size}x{args.image_size}, batch {args.batch}, "
             f"width {args.width_mult}, {args.steps} steps each)", "",
             f"Command: `python benchmarks/search_memory.py --image_size {args.image_size} --batch {args.batch} "
             f"--steps {args.steps} --width_mult {args.width_mult}`; written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
             f"CPU: {cpu['cpu']} ({cpu['cpu_flags']}), {cpu['cpu_count']} logical cores; load average before "
             f"{load_before}, after {_load()} (above ~1 other jobs shared the 2 cores).",
             "Peak RSS is the whole process (framework included). x train = against training proxylessnas_mobile "
             "in GRAPH mode, as train.py runs it.", "",
             "| run | depthwise convs | peak RSS MB | x train (GRAPH) | RSS after build MB | median step s | "
             "step x train | first step s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['kind']} | failed: {r['error']} | | | | | | |")
            continue
        ratio = f"{r['peak_rss_mb'] / ref['peak_rss_mb']:.2f}" if ref else "n/a"
        step_ratio = f"{r['step_s'] / ref['step_s']:.1f}" if ref else "n/a"
        lines.append(f"| {r['kind']} | {r['depthwise']} | {r['peak_rss_mb']:.0f} | {ratio} | {r['after_build_mb']:.0f} | "
                     f"{r['step_s']:.2f} | {step_ratio} | {r['first_step_s']:.1f} |")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
