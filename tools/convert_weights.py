"""Convert released ProxylessNAS weights (official, pytorchcv, MindSpore ModelZoo) to a MindSpore .ckpt.

    python tools/convert_weights.py --source official --arch proxylessnas_mobile \
        --input proxyless_mobile.pth --output proxylessnas_mobile.ckpt

The result loads with ``train.py --pretrained``, ``eval.py``, ``export.py`` and ``predict.py``.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

# Runnable as a script from any directory: make the project's ``src`` importable.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from src.errors import UserError  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    """The command line of this tool."""
    from src.arch import ARCHS
    from src.convert import SOURCES

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", required=True, choices=SOURCES,
                        help="official: mit-han-lab .pth; pytorchcv: osmr/imgclsmob .pth; modelzoo: MindSpore .ckpt")
    parser.add_argument("--arch", required=True, metavar="ARCH",
                        help=f"one of {', '.join(sorted(ARCHS))}, or an official ProxylessNASNets .config file")
    parser.add_argument("--input", required=True, help="the source checkpoint file")
    parser.add_argument("--output", required=True, help="the MindSpore checkpoint to write (.ckpt)")
    parser.add_argument("--num_classes", type=int, default=None,
                        help="classifier size; default: taken from the input file (it must agree when given)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the conversion; a user mistake prints one line and returns 2."""
    args = build_parser().parse_args(argv)
    from src.model_utils.cli import setup_logging
    from src.model_utils.device import configure_environment

    setup_logging()
    configure_environment("CPU")  # before MindSpore loads; conversion runs on the host
    try:
        from src.convert import convert_file

        summary = convert_file(args.source, args.arch, args.input, args.output,
                               num_classes=args.num_classes, overwrite=args.overwrite)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {summary['output']}: {summary['tensors']} tensors ({summary['values']:,} values, "
          f"{summary['num_classes']} classes) from {args.source} {os.path.basename(args.input)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
