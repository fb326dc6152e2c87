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


def _load_mindir(path: Path):
    """A MINDIR as a numpy -> numpy function, and the image size it was exported for (None: any)."""
    import mindspore as ms
    from mindspore import nn

    from src.files import image_size_of, mindir_input_shape
    from src.model_utils.device import set_device
    set_device("CPU")
    try:
        graph = nn.GraphCell(ms.load(str(path)))
    except Exception as err:  # MindSpore raises RuntimeError/ValueError with multi-line texts
        raise UserError(f"cannot load {path} as MINDIR: {str(err).strip().splitlines()[0]}") from None
    # a graph with global pooling runs any size: the size it was exported for is checked separately
    return (lambda x: graph(ms.Tensor(x)).asnumpy()), image_size_of(mindir_input_shape(path))


def _load_onnx(path: Path):
    """An ONNX file (FP32 or INT8) in ONNX Runtime as a numpy -> numpy function, and its input image size."""
    from src.files import image_size_of

    try:
        import onnxruntime as ort
    except ImportError:
        raise UserError("ONNX models need onnxruntime: pip install onnxruntime") from None
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as err:
        raise UserError(f"cannot load {path} as ONNX: {str(err).strip().splitlines()[0]}") from None
    first = session.get_inputs()[0]
    return (lambda x: session.run(None, {first.name: x})[0]), image_size_of(first.shape)


def run_mindir_on_binaries(mindir_path: str, input_path: str, result_path: str, time_path: str) -> List[float]:
    """Run every input through the MINDIR (or ONNX) model one by one; write the logits and the latency summary."""
    mindir = Path(mindir_path)
    if mindir.is_dir():
        raise UserError(f"--mindir_path {mindir} is a folder, not a file: pass the .mindir or .onnx file inside it")
    if not mindir.is_file():
        raise UserError(f"MINDIR not found: {mindir} (export one with: python export.py --file_format MINDIR ...)")
    files = list_inputs(input_path)
    graph, exported = _load_onnx(mindir) if mindir.suffix.lower() == ".onnx" else _load_mindir(mindir)
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
