"""Python stand-in for the Ascend 310 app (``ascend310_infer/``) on hosts without Ascend.

Same flags and same files as the C++ app, so ``scripts/run_infer_310.sh`` runs the whole
pipeline with either: it reads the preprocessed ``<name>.bin`` inputs, runs the MINDIR with
MindSpore's graph loader (CPU) -- or an ``.onnx`` file, e.g. the INT8 model of ``export.py --quantize
int8``, with ONNX Runtime -- and writes ``<result_path>/<name>_0.bin`` (float32 logits) and the
latency summary ``<time_path>/test_perform_static.txt``.

    python -m src.infer_runner --mindir_path M.mindir --input_path preprocess_Result/img_data \
        --result_path result_Files --time_path time_Result
"""
from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from src.errors import UserError
from src.inference import open_exported

_LOG = logging.getLogger(__name__)

TIME_FILE = "test_perform_static.txt"


def latency_line(latencies_ms: Sequence[float]) -> str:
    """The latency summary the C++ app writes as well."""
    average = sum(latencies_ms) / len(latencies_ms) if latencies_ms else 0.0
    return f"NN inference cost average time: {average:.3f} ms of infer_count {len(latencies_ms)}"


def list_inputs(input_path: str) -> List[Path]:
    """The preprocessed ``.bin`` inputs of a folder, sorted by name."""
    folder = Path(input_path)
    if not folder.is_dir():
        raise UserError(f"input folder not found: {folder} (run the preprocessing: NEED_PREPROCESS=y)")
    files = sorted(f for f in folder.iterdir() if f.suffix == ".bin")
    if not files:
        raise UserError(f"no .bin inputs in {folder} (run the preprocessing: NEED_PREPROCESS=y)")
    return files


def run_mindir_on_binaries(mindir_path: str, input_path: str, result_path: str, time_path: str) -> List[float]:
    """Run every input through the MINDIR (or ONNX) model one by one; write the logits and the latency summary."""
    mindir = Path(mindir_path)
    if mindir.is_dir():
        raise UserError(f"--mindir_path {mindir} is a folder, not a file: pass the .mindir or .onnx file inside it")
    if not mindir.is_file():
        raise UserError(f"MINDIR not found: {mindir} (export one with: python export.py --file_format MINDIR ...)")
    files = list_inputs(input_path)
    model = open_exported(mindir)  # the loading predict.py uses; a graph with global pooling runs any size
    graph, exported = model.run, model.image_size
    results, times = Path(result_path), Path(time_path)
    results.mkdir(parents=True, exist_ok=True)
    times.mkdir(parents=True, exist_ok=True)
    latencies = []
    for path in files:
        data = np.fromfile(path, dtype=np.float32)
        side = int(round(math.sqrt(data.size / 3)))
        if side * side * 3 != data.size:
            raise UserError(f"{path} holds {data.size} floats, not one 3xHxW image")
        if exported is not None and side != exported:
            raise UserError(f"input {path} is 3x{side}x{side} but {mindir} was exported for {exported}x{exported} "
                            f"inputs: preprocess again with IMAGE_SIZE={exported} NEED_PREPROCESS=y")
        x = data.reshape(1, 3, side, side)
        start = time.perf_counter()
        try:
            logits = graph(x)
        except Exception as err:
            raise UserError(f"{mindir} cannot run input {path.name} of shape 1x3x{side}x{side} (exported for "
                            f"another --image_size or batch size?): {str(err).strip().splitlines()[0]}") from None
        latencies.append((time.perf_counter() - start) * 1000.0)
        logits.astype(np.float32).tofile(results / f"{path.stem}_0.bin")
    summary = latency_line(latencies)
    (times / TIME_FILE).write_text(summary + "\n")
    _LOG.info("%s", summary)
    return latencies


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line with the C++ app's flags; a user mistake is one line and exit 2."""
    from src.model_utils.cli import setup_logging
    from src.model_utils.device import configure_environment

    parser = argparse.ArgumentParser(description="Run a MINDIR on preprocessed .bin inputs (CPU stand-in for "
                                                 "the Ascend 310 app).")
    parser.add_argument("--mindir_path", required=True, help=".mindir (MindSpore) or .onnx file (ONNX Runtime, "
                                                             "e.g. the INT8 model of export.py --quantize int8)")
    parser.add_argument("--input_path", required=True, help="folder of <name>.bin inputs (preprocess.py)")
    parser.add_argument("--result_path", default="./result_Files")
    parser.add_argument("--time_path", default="./time_Result")
    parser.add_argument("--device_id", type=int, default=0, help="accepted for parity with the C++ app; unused")
    args = parser.parse_args(argv)
    setup_logging()
    configure_environment("CPU")
    try:
        run_mindir_on_binaries(args.mindir_path, args.input_path, args.result_path, args.time_path)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
