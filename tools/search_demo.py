"""Architecture search demo on real data: scikit-learn's handwritten digits at 32x32, on this CPU.

    python tools/search_demo.py [--out search_demo_output] [--results FILE]

1. builds an ImageFolder dataset of the 1,797 digit scans (tools/demo.py's split, upscaled to 32x32);
2. measures an ONNX Runtime latency table (1 thread, batch 1) for this CPU: the default search space at 32x32
   plus the layers of the released networks (for the comparison rows), ``src.latency.build_table``;
3. sets the latency target from that table: ``--target_fraction`` of proxylessnas_mobile's predicted latency,
   kept between the cheapest and the most expensive network of the space;
4. runs search.py with that target (short schedule, fixed seeds; by default a depth search: every cell offers
   3x3_MBConv6 or, where the cell allows it, Zero; ``--conv_candidates official`` for the six official ops);
5. trains the searched network, proxylessnas_mobile and proxylessnas_cpu the same way from scratch (train.py,
   same epochs, image size and classes) and evaluates each (eval.py);
6. prints per network: latency predicted from the table, latency measured end to end on ONNX Runtime
   (1 thread), parameters, top-1 on the held-out digits.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tools.demo import build_digits_folder, run  # noqa: E402

IMAGE_SIZE, CLASSES = 32, 10
TRAIN = ["--config_path", str(ROOT / "configs" / "demo_digits.yaml")]
RELEASED = ("proxylessnas_mobile", "proxylessnas_cpu")


def build_demo_table(path: Path):
    """ONNX Runtime, 1 thread: the default space at 32x32 and the released networks' layers, in one table."""
    from src.latency import LatencyTable, build_table

    space = build_table("onnxruntime", IMAGE_SIZE, space="default", threads=1, num_classes=CLASSES, warmup=5,
                        runs=20)
    released = build_table("onnxruntime", IMAGE_SIZE, space="released", threads=1, num_classes=CLASSES, warmup=5,
                           runs=20)
    # a layer in both keeps the default-space measurement; _meta (and its call overhead) is the space's
    table = LatencyTable({**released.entries, **space.entries}, space.meta)
    table.meta["space"] = "default + released"
    table.save(path)
    return table


def choose_target(table, fraction: float, candidates=None):
    """(target ms, cheapest ms, most expensive ms, proxylessnas_mobile ms) of the default space at 32x32
    (with only ``candidates`` in every cell when given)."""
    from src.arch import get_arch
    from src.latency import default_space, predict_latency
    from src.nas.cost import latency_model

    model = latency_model(default_space(IMAGE_SIZE, 1.0, CLASSES, candidates), table)
    cheapest = model.fixed + sum(float(costs.min()) for costs in model.per_edge)
    dearest = model.fixed + sum(float(costs.max()) for costs in model.per_edge)
    mobile = predict_latency(table, get_arch("proxylessnas_mobile"), IMAGE_SIZE, CLASSES)[0]
    return min(max(fraction * mobile, cheapest), dearest), cheapest, dearest, mobile


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="search_demo_output", help="working folder (must not exist yet)")
    parser.add_argument("--target_fraction", type=float, default=0.8,
                        help="latency target as a fraction of proxylessnas_mobile's predicted latency")
    parser.add_argument("--batch", type=int, default=32, help="search batch size (weights and architecture)")
    parser.add_argument("--lr_per_256", type=float, default=0.1,
                        help="search warm-up lr at batch 256, scaled to --batch (official 0.05 over 40 epochs; "
                             "twice that for a few epochs); the joint phase uses half")
    parser.add_argument("--warmup_epochs", type=int, default=2, help="search warm-up epochs (weights only)")
    parser.add_argument("--search_epochs", type=int, default=3, help="joint search epochs after the warm-up")
    parser.add_argument("--arch_update_every", type=int, default=3, help="weight steps per architecture step")
    parser.add_argument("--train_epochs", type=int, default=6, help="training epochs of each compared network")
    parser.add_argument("--conv_candidates", default="3x3_MBConv6",
                        help="search.py --conv_candidates: 3x3_MBConv6 (default) searches the depth of the default "
                             "space (which blocks to keep), a supernet that learns in this budget; 'official' gives "
                             "every cell the six official candidates, whose supernet needs far more steps "
                             "(README, Architecture search)")
    parser.add_argument("--results", default="", help="also write the summary to this file (e.g. "
                                                      "benchmarks/results/search_demo.txt)")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    if out.exists() and any(out.iterdir()):
        print(f"error: --out {out} already exists: remove it or pass --out NEW_FOLDER", file=sys.stderr)
        return 2
    if not 0 < args.target_fraction:
        print(f"error: --target_fraction must be > 0, got {args.target_fraction}", file=sys.stderr)
        return 2
    from src.errors import UserError
    from src.latency import parse_candidates

    if args.conv_candidates == "official":
        args.conv_candidates = ""
    try:
        candidates = parse_candidates(args.conv_candidates) if args.conv_candidates else None
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    start = time.time()
    data = out / "digits"
    sizes = build_digits_folder(data, IMAGE_SIZE)
    print(f"dataset: {data} ({sizes['train']} train / {sizes['val']} val images)", flush=True)

    table_path = out / "cpu32_ort1.yaml"
    print("\n=== latency table: ONNX Runtime, 1 thread, batch 1, default space + released layers at 32x32", flush=True)
    table = build_demo_table(table_path)
    table_seconds = time.time() - start
    target, cheapest, dearest, mobile = choose_target(table, args.target_fraction, candidates)
    print(f"space at 32x32 on this CPU: cheapest network {cheapest:.3f} ms, most expensive {dearest:.3f} ms, "
          f"proxylessnas_mobile {mobile:.3f} ms -> target {target:.3f} ms ({args.target_fraction:g} x mobile)",
          flush=True)

    # lr scaled linearly to the batch; joint lr half the warm-up's, as the official 0.025 / 0.05
    warmup_lr = args.lr_per_256 * args.batch / 256
    search_start = time.time()
    run("search", ["search.py", "--device_target", "CPU", "--dataset_path", str(data / "train"),
                   "--num_classes", str(CLASSES), "--image_size", str(IMAGE_SIZE), "--train_batch_size",
                   str(args.batch), "--valid_batch_size", str(args.batch), "--warmup_epochs", str(args.warmup_epochs),
                   "--epoch_size", str(args.search_epochs), "--arch_update_every", str(args.arch_update_every),
                   "--warmup_lr", f"{warmup_lr:g}", "--lr_init", f"{warmup_lr / 2:g}", "--work_nums", "1",
                   "--cutout", "false", "--color_jitter", "0", "--random_flip", "false", "--min_crop_scale", "0.7",
                   "--crop_pct", "1.0", "--log_interval", "6", "--latency_table", str(table_path),
                   "--target_latency", f"{target:.4f}", "--save_ckpt_path", str(out), "--run_name", "search",
                   *(["--conv_candidates", args.conv_candidates] if args.conv_candidates else [])])
    search_seconds = time.time() - search_start
    epochs = [json.loads(line) for line in (out / "search" / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in epochs if r.get("type") == "epoch"]
    top1s = ", ".join(f"{100 * r['valid_top1']:.1f}%" for r in epochs)
    searched = out / "search" / "net.config"

    from src.arch import get_arch, spec_from_config
    from src.flops import net_macs_params
    from src.latency import measure_network, predict_latency

    rows = []
    train_start = time.time()
    for name, arch in (("searched", str(searched)), *((n, n) for n in RELEASED)):
        spec = spec_from_config(arch)[0] if arch.endswith(".config") else get_arch(arch)
        run(f"train {name}", ["train.py", *TRAIN, "--arch", arch, "--dataset_path", str(data),
                              "--epoch_size", str(args.train_epochs), "--eval_interval", "0",
                              "--save_ckpt_path", str(out), "--run_name", f"train_{name}", "--keep_checkpoint_max", "1"])
        last = sorted((out / f"train_{name}" / "checkpoints").glob("*-*_*.ckpt"))[-1]
        run(f"eval {name}", ["eval.py", *TRAIN, "--arch", arch, "--dataset_path", str(data),
                             "--checkpoint_path", str(last), "--eval_output", str(out / f"eval_{name}.json")])
        top1 = json.loads((out / f"eval_{name}.json").read_text())["results"][str(last)]["top1"]
        predicted, _ = predict_latency(table, spec, IMAGE_SIZE, CLASSES)
        measured = measure_network(spec, IMAGE_SIZE, CLASSES, "onnxruntime", 1, warmup=10, runs=100)
        rows.append((name, predicted, measured, net_macs_params(spec, IMAGE_SIZE, CLASSES)[1], top1))
    train_seconds = time.time() - train_start
    total = time.time() - start
    lines = [f"search demo, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: digits 32x32, 10 classes "
             f"({sizes['train']} train / {sizes['val']} val images), ONNX Runtime 1 thread, batch 1",
             f"table: {len(table)} layers ({table.meta.get('cpu', '?')}); space cheapest {cheapest:.3f} ms, most "
             f"expensive {dearest:.3f} ms, proxylessnas_mobile {mobile:.3f} ms; target {target:.3f} ms",
             f"search: {args.conv_candidates or 'the official six candidates'} (+ Zero), batch {args.batch}, "
             f"{args.warmup_epochs} warm-up + {args.search_epochs} joint epochs, "
             f"warm-up lr {warmup_lr:g}, joint lr {warmup_lr / 2:g}, an architecture step every "
             f"{args.arch_update_every} weight steps; top-1 of the argmax network on the held-out split per "
             f"epoch: {top1s}; final expected latency "
             f"{epochs[-1]['expected_cost']:.3f} ms",
             f"each network then trained from scratch {args.train_epochs} epochs (configs/demo_digits.yaml)",
             "",
             f"{'network':22s} {'predicted ms':>12s} {'measured ms':>12s} {'params':>10s} {'top-1':>7s}"]
    lines += [f"{n:22s} {p:12.3f} {m:12.3f} {q:10,d} {100 * t:6.2f}%" for n, p, m, q, t in rows]
    lines += ["", f"time: table {table_seconds / 60:.1f} min, search {search_seconds / 60:.1f} min, training + "
                  f"evaluation + measuring {train_seconds / 60:.1f} min; total {total / 60:.1f} min"]
    (out / "search_demo_summary.txt").write_text("\n".join(lines) + "\n")
    if args.results:
        Path(args.results).write_text("\n".join(lines) + "\n")
    print("\n" + "\n".join(lines))
    print(f"\nsearch demo done in {total / 60:.1f} min; outputs in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
