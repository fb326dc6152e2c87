"""Architecture search demo on real data: scikit-learn's handwritten digits at 32x32, on this CPU.

    python tools/search_demo.py [--out search_demo_output] [--target_ms 1.2]

1. builds an ImageFolder dataset of the 1,797 digit scans (tools/demo.py's split, upscaled to 32x32);
2. measures an ONNX Runtime latency table (1 thread, batch 1) of the default search space at 32x32 for this
   CPU (``src.latency.build_table``);
3. runs search.py with a latency target on that table (short schedule, fixed seeds);
4. trains the searched network, proxylessnas_mobile and proxylessnas_cpu the same way (train.py, same
   epochs, image size and classes) and evaluates each (eval.py);
5. prints per network: latency predicted from the table, latency measured on ONNX Runtime, parameters,
   top-1 on the held-out digits.
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="search_demo_output", help="working folder (must not exist yet)")
    parser.add_argument("--target_ms", type=float, default=1.2, help="latency target (ms, this CPU, ORT 1 thread)")
    parser.add_argument("--search_epochs", type=int, default=2, help="joint search epochs (after 2 warm-up epochs)")
    parser.add_argument("--train_epochs", type=int, default=6, help="training epochs of each compared network")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    if out.exists() and any(out.iterdir()):
        sys.exit(f"error: {out} already exists: remove it or pass --out NEW_FOLDER")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    start = time.time()
    data = out / "digits"
    sizes = build_digits_folder(data, IMAGE_SIZE)
    print(f"dataset: {data} ({sizes['train']} train / {sizes['val']} val images)", flush=True)

    from src.latency import build_table, measure_network, predict_latency

    table_path = out / "cpu32_ort1.yaml"
    print("\n=== latency table: ONNX Runtime, 1 thread, batch 1, default space at 32x32", flush=True)
    build_table("onnxruntime", IMAGE_SIZE, space="default", threads=1, num_classes=CLASSES, warmup=5,
                runs=20).save(table_path)

    run("search", ["search.py", "--device_target", "CPU", "--dataset_path", str(data / "train"),
                   "--num_classes", str(CLASSES), "--image_size", str(IMAGE_SIZE), "--train_batch_size", "64",
                   "--valid_batch_size", "64", "--val_batch_size", "120", "--warmup_epochs", "2",
                   "--epoch_size", str(args.search_epochs), "--arch_update_every", "2", "--warmup_lr", "0.05",
                   "--lr_init", "0.025", "--work_nums", "1", "--cutout", "false", "--color_jitter", "0",
                   "--random_flip", "false", "--min_crop_scale", "0.7", "--crop_pct", "1.0", "--log_interval", "6",
                   "--latency_table", str(table_path), "--target_latency", str(args.target_ms),
                   "--save_ckpt_path", str(out), "--run_name", "search"])
    searched = out / "search" / "net.config"

    from src.arch import get_arch, spec_from_config
    from src.flops import net_macs_params
    from src.latency import LatencyTable

    table = LatencyTable.load(table_path)
    rows = []
    for name, arch, extra in (("searched", str(searched), ["--pretrained", str(out / "search" / "init.ckpt")]),
                              ("proxylessnas_mobile", "proxylessnas_mobile", []),
                              ("proxylessnas_cpu", "proxylessnas_cpu", [])):
        spec = spec_from_config(arch)[0] if arch.endswith(".config") else get_arch(arch)
        run(f"train {name}", ["train.py", *TRAIN, "--arch", arch, *extra, "--dataset_path", str(data),
                              "--epoch_size", str(args.train_epochs), "--save_ckpt_path", str(out),
                              "--run_name", f"train_{name}", "--keep_checkpoint_max", "1"])
        last = sorted((out / f"train_{name}" / "checkpoints").glob("*-*_*.ckpt"))[-1]
        run(f"eval {name}", ["eval.py", *TRAIN, "--arch", arch, "--dataset_path", str(data),
                             "--checkpoint_path", str(last), "--eval_output", str(out / f"eval_{name}.json")])
        top1 = json.loads((out / f"eval_{name}.json").read_text())["results"][str(last)]["top1"]
        predicted, _ = predict_latency(table, spec, IMAGE_SIZE, CLASSES)
        measured = measure_network(spec, IMAGE_SIZE, CLASSES, "onnxruntime", 1, warmup=10, runs=50)
        rows.append((name, predicted, measured, net_macs_params(spec, IMAGE_SIZE, CLASSES)[1], top1))
    lines = [f"{'network':22s} {'predicted ms':>12s} {'measured ms':>12s} {'params':>10s} {'top-1':>7s}"]
    lines += [f"{n:22s} {p:12.3f} {m:12.3f} {q:10,d} {100 * t:6.2f}%" for n, p, m, q, t in rows]
    (out / "search_demo_summary.txt").write_text("\n".join(lines) + "\n")
    print("\n" + "\n".join(lines))
    print(f"\nsearch demo done in {(time.time() - start) / 60:.1f} min (target {args.target_ms} ms); outputs in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
