"""Plot a training run: python tools/plot_metrics.py RUN_FOLDER_OR_METRICS_JSONL [--out PNG]."""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.errors import UserError  # noqa: E402
from src.plotting import plot_metrics  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("metrics", help="run folder or its metrics.jsonl")
    parser.add_argument("--out", help="PNG to write (default: metrics.png beside the metrics)")
    args = parser.parse_args(argv)
    src = Path(args.metrics)
    out = Path(args.out) if args.out else (src if src.is_dir() else src.parent) / "metrics.png"
    try:
        from src.files import check_output_file

        check_output_file(out, "plot", "--out")
        plot_metrics(src, out)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
