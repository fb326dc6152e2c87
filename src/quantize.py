"""INT8 ONNX models for CPU deployment: ONNX Runtime static quantization calibrated on the user's images.

    python export.py --checkpoint C.ckpt --file_format ONNX --quantize int8 --calibration_path DIR \
        [--calibration_images 200] [--eval_dataset_path LABELLED_DIR]

The float32 ONNX file is exported and verified first (:mod:`src.export`); its activations are then
calibrated (min/max) on images of ``--calibration_path`` passed through the project's evaluation
transform (:func:`src.dataset.preprocess_image`), and weights are quantized per output channel
(int8, symmetric), activations per tensor (uint8).  The INT8 file runs wherever ONNX Runtime does,
including ``predict.py`` and the CPU 310 runner; MindSpore itself does not run it.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import numpy as np

from src.errors import UserError

_LOG = logging.getLogger(__name__)

CHOICES = ("", "int8")
# QDQ keeps Quantize/DequantizeLinear pairs that ONNX Runtime fuses into integer kernels; QOperator writes
# QLinearConv etc. directly.  Both are offered; the default is the faster here (benchmarks/run.py, int8 rows).
FORMATS = ("QDQ", "QOperator")


@dataclass
class QuantizeResult:
    """The INT8 file, what it was calibrated on and, given a labelled folder, both models' top-1."""

    path: Path
    calibration_images: int
    quant_format: str
    top1_fp32: Optional[float] = None
    top1_int8: Optional[float] = None
    eval_images: int = 0


def int8_path(fp32_path: Path) -> Path:
    """Where the INT8 model of ``name.onnx`` goes: ``name.int8.onnx`` next to it."""
    return fp32_path.with_name(fp32_path.stem + ".int8.onnx")


def calibration_files(folder: str, count: int) -> List[Path]:
    """Up to ``count`` images of ``folder`` (recursive), spread evenly over its sorted list (all classes)."""
    from src.predict import list_images

    if not folder:
        raise UserError("--quantize int8 needs calibration images: pass --calibration_path DIR "
                        "(a folder of images like the ones the model will see, e.g. the training set)")
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise UserError(f"--calibration_path {root} is not a folder of images")
    if count < 1:
        raise UserError(f"--calibration_images must be >= 1, got {count}")
    try:
        files = list_images([str(root)])
    except UserError:
        raise UserError(f"--calibration_path {root} holds no image files "
                        "(pass a folder with .jpg/.png images, searched recursively)") from None
    if len(files) <= count:
        return files
    picks = np.linspace(0, len(files) - 1, count).round().astype(int)
    return [files[i] for i in picks]


class _ImageReader:
    """ONNX Runtime calibration reader: one preprocessed image per call, then None."""

    def __init__(self, input_name: str, files: List[Path], image_size: int, crop_pct: float, batch: int):
        self.input_name, self.files = input_name, files
        self.image_size, self.crop_pct, self.batch = image_size, crop_pct, batch
        self._batches = self._iterate()

    def _iterate(self) -> Iterator[Dict[str, np.ndarray]]:
        from src.dataset import preprocess_image

        for start in range(0, len(self.files) - self.batch + 1, self.batch):
            chunk = self.files[start:start + self.batch]
            yield {self.input_name: np.stack([preprocess_image(str(f), self.image_size, self.crop_pct)
                                              for f in chunk]).astype(np.float32)}

    def get_next(self) -> Optional[Dict[str, np.ndarray]]:
        return next(self._batches, None)

    def rewind(self) -> None:
        self._batches = self._iterate()


def quantize_onnx(fp32_path: Path, files: List[Path], image_size: int, crop_pct: float,
                  quant_format: str = "QDQ", output: Optional[Path] = None) -> Path:
    """Write the INT8 model of ``fp32_path`` (static, per-channel int8 weights) calibrated on ``files``."""
    try:
        import onnx  # noqa: F401  (the opset conversion)
        import onnxruntime as ort
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    except ImportError:
        raise UserError("--quantize int8 needs onnx and onnxruntime: pip install onnx onnxruntime") from None
    if quant_format not in FORMATS:
        raise UserError(f"--quantize_format {quant_format!r} is not one of {', '.join(FORMATS)}")
    session = ort.InferenceSession(str(fp32_path), providers=["CPUExecutionProvider"])
    spec = session.get_inputs()[0]
    batch = spec.shape[0] if isinstance(spec.shape[0], int) else 1
    if len(files) < batch:
        raise UserError(f"{len(files)} calibration images but the model takes batches of {batch}: "
                        "give more images or export with --batch_size 1")
    output = output or int8_path(fp32_path)
    work = Path(tempfile.mkdtemp(prefix=".quantize-", dir=output.parent))
    try:
        written = work / output.name
        source = _at_least_opset13(fp32_path, work)
        _LOG.info("calibrating INT8 activations on %d images (%s, per-channel weights)", len(files), quant_format)
        quantize_static(str(source), str(written), _ImageReader(spec.name, files, image_size, crop_pct, batch),
                        quant_format=getattr(QuantFormat, quant_format), per_channel=True,
                        weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                        calibrate_method=CalibrationMethod.MinMax)
        try:  # it loads, or nothing is installed
            ort.InferenceSession(str(written), providers=["CPUExecutionProvider"])
        except Exception as err:
            raise UserError(f"the INT8 model of {fp32_path} does not load in ONNX Runtime "
                            f"({str(err).strip().splitlines()[0][:300]}): nothing written") from None
        if output.exists():
            _LOG.info("replacing existing %s", output)
        os.replace(written, output)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return output


def _at_least_opset13(path: Path, work: Path) -> Path:
    """``path``, or a copy converted to opset 13: per-channel DequantizeLinear (its ``axis``) needs 13."""
    import onnx
    from onnx import version_converter

    model = onnx.load(str(path))
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset >= 13:
        return path
    converted = work / f"{path.stem}.opset13.onnx"
    onnx.save(version_converter.convert_version(model, 13), str(converted))
    return converted


def eval_folder(folder: str, num_classes: int) -> Path:
    """The labelled folder of ``--eval_dataset_path`` (a root with val/ uses val/), checked before any work."""
    from src.dataset import find_classes

    root = Path(folder).expanduser()
    if (root / "val").is_dir():
        root = root / "val"
    if not root.is_dir():
        raise UserError(f"--eval_dataset_path {root} is not a folder of class sub-folders")
    classes = find_classes(root)
    if len(classes) != num_classes:
        raise UserError(f"--eval_dataset_path {root} has {len(classes)} class folders but the model has "
                        f"{num_classes} classes: pass the validation folder of the dataset it was trained on")
    return root


def onnx_top1(path: Path, folder: str, image_size: int, crop_pct: float) -> Dict[str, float]:
    """Top-1 of an ONNX model over a labelled ImageFolder (class sub-folders; a root with val/ uses val/)."""
    import onnxruntime as ort

    from src.dataset import find_classes, preprocess_image
    from src.predict import list_images

    root = Path(folder).expanduser()
    if (root / "val").is_dir():
        root = root / "val"
    classes = find_classes(root)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    spec = session.get_inputs()[0]
    batch = spec.shape[0] if isinstance(spec.shape[0], int) else 1
    samples = [(f, label) for label, name in enumerate(classes) for f in list_images([str(root / name)])]
    correct = seen = 0
    for start in range(0, len(samples) - batch + 1, batch):
        chunk = samples[start:start + batch]
        x = np.stack([preprocess_image(str(f), image_size, crop_pct) for f, _ in chunk]).astype(np.float32)
        logits = session.run(None, {spec.name: x})[0]
        correct += int((logits.argmax(axis=1) == np.array([label for _, label in chunk])).sum())
        seen += len(chunk)
    return {"top1": correct / max(seen, 1), "count": seen}
