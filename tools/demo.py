"""Demo on real data: ProxylessNAS-Mobile trained from scratch on scikit-learn's handwritten digits.

    python tools/demo.py [--out demo_output] [--epochs N] [--image_size 64]

Builds an ImageFolder dataset from the 1,797 8x8 digit scans shipped with scikit-learn (fixed
stratified split 80/20, upscaled to image_size), then runs the real entry scripts one after the
other: train.py, eval.py, export.py (MINDIR), predict.py on a few validation images.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "demo_digits.yaml"


def build_digits_folder(out: Path, image_size: int, val_fraction: float = 0.2, seed: int = 0) -> dict:
    """Write digits/train/<d>/*.png and digits/val/<d>/*.png; returns the split sizes."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    counts = {"train": 0, "val": 0}
    for label in range(10):
        idx = np.flatnonzero(digits.target == label)
        rng.shuffle(idx)
        n_val = int(round(len(idx) * val_fraction))
        for split, part in (("val", idx[:n_val]), ("train", idx[n_val:])):
            folder = out / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            for i in part:
                pixels = (digits.images[i] * (255.0 / 16.0)).astype(np.uint8)  # values are 0..16
                img = Image.fromarray(pixels, "L").resize((image_size, image_size), Image.BICUBIC)
                img.save(folder / f"digit_{i:04d}.png")
            counts[split] += len(part)
    return counts


def run(step: str, args: list) -> str:
    """Run one entry script, streaming its output; stop the demo if it fails."""
    print(f"\n=== {step}: python {' '.join(args)}", flush=True)
    lines = []
    with subprocess.Popen([sys.executable] + args, cwd=ROOT, text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, bufsize=1) as proc:
        for line in proc.stdout:
            if "WARNING" in line and "mindspore" in line.lower():
                continue  # MindSpore's own deprecation chatter
            print(line, end="", flush=True)
            lines.append(line)
    if proc.returncode != 0:
        sys.exit(f"demo stopped: {step} failed with exit code {proc.returncode}")
    return "".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="demo_output", help="working folder (created; must not exist yet)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: configs/demo_digits.yaml)")
    parser.add_argument("--image_size", type=int, default=32, help="multiple of 32 (the scans are 8x8)")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    # input errors exit 2 like every entry script
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        print(f"error: --out {out} already exists: remove it or pass --out NEW_FOLDER", file=sys.stderr)
        return 2
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        print(f"error: cannot create --out {out}: {err.strerror}; pass --out with a writable path", file=sys.stderr)
        return 2
    start = time.time()
    data = out / "digits"
    sizes = build_digits_folder(data, args.image_size)
    print(f"dataset: {data} ({sizes['train']} train / {sizes['val']} val images, 10 classes, "
          f"{args.image_size}x{args.image_size})")
    common = ["--config_path", str(CONFIG), "--image_size", str(args.image_size)]
    train = ["train.py", *common, "--dataset_path", str(data), "--save_ckpt_path", str(out), "--run_name", "run"]
    if args.epochs:
        train += ["--epoch_size", str(args.epochs)]
    run("train", train)
    # the last epoch's weights, not the best on val: the reported accuracy is not selected on the same images
    final = sorted((out / "run" / "checkpoints").glob("proxylessnas_mobile-*_*.ckpt"),
                   key=lambda p: int(p.stem.rsplit("-", 1)[1].split("_")[0]))[-1]
    eval_out = run("evaluate", ["eval.py", *common, "--dataset_path", str(data), "--checkpoint_path", str(final),
                                "--eval_output", str(out / "eval.json")])
    result = json.loads((out / "eval.json").read_text())["results"][str(final)]
    run("export", ["export.py", *common, "--checkpoint", str(final), "--file_format", "MINDIR",
                   "--file_name", str(out / "demo_digits")])
    samples = sorted((data / "val").glob("*/*.png"))[::72][:5]
    run("predict", ["predict.py", "--model", str(out / "demo_digits.mindir"), "--image_size", str(args.image_size),
                    "--crop_pct", "1.0", "--class_names_from", str(data / "train"), *map(str, samples)])
    minutes = (time.time() - start) / 60
    summary = {"top1": result["top1"], "top5": result["top5"], "val_images": result["count"],
               "minutes": round(minutes, 2), "image_size": args.image_size}
    (out / "demo_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\ndemo done in {minutes:.1f} min: ProxylessNAS-Mobile top-1 {100 * result['top1']:.2f}% on "
          f"{result['count']} held-out digits; outputs in {out}")
    return 0 if eval_out else 1


if __name__ == "__main__":
    sys.exit(main())
