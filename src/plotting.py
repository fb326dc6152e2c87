"""Training curves from metrics.jsonl: loss, learning rate and top-1/top-5 against epochs."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Dict, List

from src.errors import UserError


def read_metrics(path: Path) -> List[Dict]:
    """Records of a metrics.jsonl file (a run folder is accepted too)."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    if not path.is_file():
        raise UserError(f"metrics file not found: {path} (train.py writes <run folder>/metrics.jsonl)")
    records = []
    lines = path.read_text(errors="replace").splitlines()
    for n, line in enumerate(lines, 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                if n == len(lines):  # a crash in the middle of writing the last record
                    logging.getLogger(__name__).warning("%s: dropped the partial last line %d (left by a crash)",
                                                        path, n)
                    break
                raise UserError(f"{path} line {n} is not JSON") from None
    return records


def plot_metrics(metrics_path: Path, out_path: Path) -> Path:
    """Write a PNG with three panels: training loss, learning rate, validation top-1/top-5."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_path)
    steps = [r for r in records if r.get("type") == "step"]
    evals = [r for r in records if r.get("type") == "eval"]
    if not steps:
        raise UserError(f"{metrics_path} has no training steps to plot")
    per_epoch = max(r["step"] for r in steps) if steps else 1
    x = [r["epoch"] - 1 + r["step"] / per_epoch for r in steps]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    axes[0].plot(x, [r["loss"] for r in steps], lw=1)
    axes[0].set(title="training loss", xlabel="epoch", ylabel="loss")
    axes[1].plot(x, [r["lr"] for r in steps], lw=1, color="tab:orange")
    axes[1].set(title="learning rate", xlabel="epoch", ylabel="lr")
    if evals:
        ex = [r["epoch"] for r in evals]
        axes[2].plot(ex, [100 * r["top1"] for r in evals], "o-", label="top-1")
        axes[2].plot(ex, [100 * r["top5"] for r in evals], "s-", label="top-5")
        if "ema_top1" in evals[0]:
            axes[2].plot(ex, [100 * r["ema_top1"] for r in evals], "^--", label="top-1 (EMA)")
        axes[2].legend()
    else:
        axes[2].text(0.5, 0.5, "no evaluation", ha="center", va="center", transform=axes[2].transAxes)
    axes[2].set(title="validation accuracy", xlabel="epoch", ylabel="%")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out_path = Path(out_path)
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path
