"""search.png: final probabilities per edge (heatmap), expected/predicted cost and accuracy over epochs."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from src.plotting import read_metrics


def plot_search(run_dir: Path) -> Path:
    """Write RUN/search.png from RUN/metrics.jsonl and RUN/arch.jsonl."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    epochs = [r for r in read_metrics(run_dir / "metrics.jsonl") if r.get("type") == "epoch"]
    arch = [json.loads(line) for line in (run_dir / "arch.jsonl").read_text().splitlines() if line.strip()]
    last = arch[-1]
    width = max(len(p) for p in last["probs"])
    grid = np.full((len(last["probs"]), width), np.nan)
    for i, p in enumerate(last["probs"]):
        grid[i, :len(p)] = p
    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    image = axes[0].imshow(grid, aspect="auto", cmap="viridis", vmin=0)
    names = max(last["op_names"], key=len)
    axes[0].set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
    axes[0].set(title=f"probabilities after epoch {last['epoch']}", ylabel="mixed edge")
    fig.colorbar(image, ax=axes[0])
    x = [r["epoch"] for r in epochs]
    if epochs and epochs[-1].get("cost_unit"):
        unit = epochs[-1]["cost_unit"]
        axes[1].plot(x, [r["expected_cost"] for r in epochs], "o-", label="expected (softmax alpha)")
        axes[1].plot(x, [r["predicted_cost"] for r in epochs], "s--", label="argmax network")
        axes[1].legend()
        axes[1].set(ylabel=unit)
    axes[1].set(title="cost", xlabel="epoch")
    axes[2].plot(x, [100 * r["valid_top1"] for r in epochs], "o-", label="argmax net, validation split")
    axes[2].set(title="accuracy", xlabel="epoch", ylabel="top-1 %")
    axes[2].legend()
    for ax in axes[1:]:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out = run_dir / "search.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
