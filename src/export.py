"""Export a trained network to MINDIR, ONNX or AIR, then prove the file computes what the network does.

The file is written under a temporary name, loaded back and run on a random input next to the
network; only when the outputs agree is it moved to its final name, so a failed export never
replaces a good file.

By default the exported graph has every BatchNorm folded into the conv before it
(:func:`src.fuse.fold_batchnorm`): fewer operators, the same outputs.  The reload check still
compares the file against the original, unfolded network.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from src.errors import UserError
from src.native_depthwise import builtin_only

_LOG = logging.getLogger(__name__)

EXTENSIONS = {"MINDIR": ".mindir", "ONNX": ".onnx", "AIR": ".air"}
# Relative tolerance of the reload check: float32 graphs that differ only in kernel choice agree far closer.
RELATIVE_TOLERANCE = 1e-4


@dataclass
class ExportResult:
    """What was written and how closely the reloaded file matched the network."""

    path: Path
    file_format: str
    input_shape: tuple
    max_abs_diff: Optional[float]  # None when the format cannot be run here (no onnxruntime)
    tolerance: float
    replaced: bool
    folded_bn: bool = False
    quantized: Optional[object] = None  # src.quantize.QuantizeResult when --quantize int8


def output_path(file_name: str, file_format: str) -> Path:
    """The file an export writes: ``file_name`` plus the format's extension (kept if already there)."""
    if not file_name:
        raise UserError("no --file_name given: pass the output name, e.g. --file_name proxylessnas_mobile")
    ext = EXTENSIONS[file_format]
    path = Path(file_name).expanduser()
    return path if path.suffix.lower() == ext else path.with_name(path.name + ext)


def check_air_possible(device_target: str) -> None:
    """AIR is written by MindSpore's Ascend backend only: stop before any work on other hosts."""
    reason = None
    if device_target != "Ascend":
        reason = f"--device_target is {device_target}"
    else:
        import mindspore as ms

        if not ms.hal.is_available("Ascend"):
            reason = "no Ascend device/driver was found on this host"
    if reason:
        raise UserError(f"AIR export needs an Ascend host ({reason}); export MINDIR or ONNX here, "
                        "or run with --device_target Ascend on an Ascend machine")


def tolerance_for(reference: np.ndarray) -> float:
    """Largest accepted difference: RELATIVE_TOLERANCE times the largest output magnitude, at least RELATIVE_TOLERANCE."""
    return RELATIVE_TOLERANCE * max(1.0, float(np.max(np.abs(reference))) if reference.size else 1.0)


def run_mindir(path: Path, x: np.ndarray) -> np.ndarray:
    """Run a MINDIR file on ``x`` with MindSpore's graph loader."""
    import mindspore as ms
    from mindspore import nn

    graph = nn.GraphCell(ms.load(str(path)))
    return graph(ms.Tensor(x)).asnumpy()


def run_onnx(path: Path, x: np.ndarray) -> Optional[np.ndarray]:
    """Run an ONNX file on ``x`` with onnxruntime; None when onnxruntime is not installed."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def _written_file(stem: Path, ext: str) -> Path:
    # MindSpore appends the extension itself; accept either spelling
    for candidate in (stem.with_name(stem.name + ext), stem):
        if candidate.is_file():
            return candidate
    raise UserError(f"MindSpore reported no error but wrote no file at {stem}{ext}")


class ExportMismatch(UserError):
    """The reloaded file computes something else than the network."""


def export_network(net, file_name: str, file_format: str = "MINDIR", batch_size: int = 1, image_size: int = 224,
                   dynamic_batch: bool = False, seed: int = 0, fold_bn: bool = True) -> ExportResult:
    """Export ``net`` (in eval mode, BN folded unless ``fold_bn`` is False), reload, compare with ``net``, install.

    Should the folded graph miss the tolerance (possible with extreme BN statistics), the unfolded
    network is exported instead, with a warning: the check, not the speed-up, decides.
    """
    if fold_bn:
        try:
            return _export_checked(net, file_name, file_format, batch_size, image_size, dynamic_batch, seed, True)
        except ExportMismatch as err:
            _LOG.warning("with BatchNorm folded, %s; exporting the unfolded network instead", err)
    return _export_checked(net, file_name, file_format, batch_size, image_size, dynamic_batch, seed, False)


def _export_checked(net, file_name: str, file_format: str, batch_size: int, image_size: int, dynamic_batch: bool,
                    seed: int, fold_bn: bool) -> ExportResult:
    import mindspore as ms

    file_format = file_format.upper()
    if file_format not in EXTENSIONS:
        raise UserError(f"--file_format {file_format!r} is not one of {', '.join(EXTENSIONS)}")
    if dynamic_batch and file_format != "MINDIR":
        raise UserError(f"--dynamic_batch works with MINDIR only (MindSpore's {file_format} export needs a "
                        "fixed batch); pass --dynamic_batch false or --file_format MINDIR")
    final = output_path(file_name, file_format)
    if final.is_dir():
        raise UserError(f"--file_name {file_name} names a folder ({final}); give a file name")
    from src.files import check_output_file

    check_output_file(final, f"exported {file_format} file", "--file_name")  # a read-only folder: one line

    net.set_train(False)
    x = np.random.default_rng(seed).standard_normal((batch_size, 3, image_size, image_size)).astype(np.float32)
    reference = net(ms.Tensor(x)).asnumpy()
    example = ms.Tensor(shape=[None, 3, image_size, image_size], dtype=ms.float32) if dynamic_batch else ms.Tensor(x)
    if fold_bn:
        from src.fuse import fold_batchnorm

        exported = fold_batchnorm(net)  # new cells: MindSpore's own Conv2D throughout
    else:
        exported = net

    work = Path(tempfile.mkdtemp(prefix=".export-", dir=final.parent))
    try:
        stem = work / final.stem
        # the file must run anywhere MindSpore/ONNX runs: never the native CPU depthwise kernel
        with builtin_only(exported):
            ms.export(exported, example, file_name=str(stem), file_format=file_format)
        written = _written_file(stem, EXTENSIONS[file_format])
        tolerance = tolerance_for(reference)
        if file_format == "MINDIR":
            if dynamic_batch:
                # a dynamic graph must take a batch other than the traced one: run twice the batch
                reloaded = run_mindir(written, np.concatenate([x, x]))[:batch_size]
            else:
                reloaded = run_mindir(written, x)
        elif file_format == "ONNX":
            reloaded = run_onnx(written, x)
            if reloaded is None:
                _LOG.warning("onnxruntime is not installed: %s is not verified (pip install onnxruntime)", final)
        else:
            reloaded = None  # AIR runs only through the Ascend toolchain (ATC), not from Python
            _LOG.warning("AIR files cannot be run from Python: %s is not verified", final)
        max_diff = None
        if reloaded is not None:
            if reloaded.shape != reference.shape:
                raise UserError(f"the exported {file_format} returns shape {reloaded.shape}, the network "
                                f"{reference.shape}: {final} was not written")
            max_diff = float(np.max(np.abs(reloaded.astype(np.float64) - reference)))
            if not max_diff <= tolerance:
                raise ExportMismatch(f"the exported {file_format} differs from the network by {max_diff:.3g} "
                                f"(tolerance {tolerance:.3g}): {final} was not written")
        replaced = final.exists()
        if replaced:
            old = final.stat()
            _LOG.info("replacing existing %s (%d bytes, modified %s)", final, old.st_size,
                      time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(old.st_mtime)))
        os.replace(written, final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    shape = ("N" if dynamic_batch else batch_size, 3, image_size, image_size)
    return ExportResult(final, file_format, shape, max_diff, tolerance, replaced, fold_bn)


def export_from_config(config) -> ExportResult:
    """export.py: build ``config.arch``, load ``config.checkpoint`` strictly, export and verify (and quantize)."""
    quantize = config.get("quantize", "none")
    calibration = []
    if quantize == "int8":
        from src.quantize import calibration_files

        if config.file_format != "ONNX":
            raise UserError(f"--quantize int8 writes an ONNX Runtime model, not {config.file_format}: "
                            "pass --file_format ONNX (MINDIR/AIR are exported in float32)")
        calibration = calibration_files(config.calibration_path, config.calibration_images)
        if config.eval_dataset_path:
            from src.quantize import eval_folder

            eval_folder(config.eval_dataset_path, config.num_classes)  # a wrong folder stops before any work
    if config.file_format == "AIR":
        check_air_possible(config.device_target)
    if not config.checkpoint:
        raise UserError("no --checkpoint given: pass the .ckpt file to export")
    from src.description import DEFAULTED, forget_description, read_description, take_defaults, write_description
    from src.inference import load_network
    from src.model_utils.config import Config, given_keys
    from src.model_utils.device import init_context

    description = read_description(config.checkpoint)  # a missing file is reported before the network is built
    chosen = take_defaults({k: config[k] for k in DEFAULTED}, given_keys(config), description, config.checkpoint)
    config = Config(config)  # a copy: the caller's config is left as it was
    config.update(chosen)
    init_context(config)
    # unfolded and with MindSpore's own kernels: export_network folds, and checks the file against this network
    net, _ = load_network(config.checkpoint, config.arch, config.num_classes, False, "builtin", config.device_target)
    result = export_network(net, config.file_name, config.file_format, config.batch_size, config.image_size,
                            config.dynamic_batch, fold_bn=config.get("fold_bn", True))
    if description is None:
        forget_description(result.path)
    elif config.file_format != "AIR":
        # what the file is: the checkpoint's description at the size exported
        description = {**description, "image_size": config.image_size, "crop_pct": config.crop_pct}
        write_description(result.path, description)
    if quantize == "int8":
        from src.quantize import QuantizeResult, onnx_top1, quantize_onnx

        path = quantize_onnx(result.path, calibration, config.image_size, config.crop_pct, config.quantize_format)
        result.quantized = QuantizeResult(path, len(calibration), config.quantize_format)
        if description is not None:
            write_description(path, description)
        if config.eval_dataset_path:
            fp32 = onnx_top1(result.path, config.eval_dataset_path, config.image_size, config.crop_pct)
            int8 = onnx_top1(path, config.eval_dataset_path, config.image_size, config.crop_pct)
            result.quantized.top1_fp32, result.quantized.top1_int8 = fp32["top1"], int8["top1"]
            result.quantized.eval_images = int8["count"]
    return result


def describe(result: ExportResult) -> str:
    """The one result line export.py prints."""
    shape = "x".join(str(d) for d in result.input_shape)
    if result.max_abs_diff is None:
        check = "not verified (no runtime for this format here)"
    else:
        check = f"reloaded and compared: max |difference| {result.max_abs_diff:.3g} (tolerance {result.tolerance:.3g})"
    folded = "; BatchNorm folded into the convs" if result.folded_bn else ""
    line = f"exported {result.path} ({result.file_format}, input {shape}); {check}{folded}"
    q = result.quantized
    if q is not None:
        line += (f"; INT8 {q.path} ({q.quant_format}, per-channel weights, calibrated on "
                 f"{q.calibration_images} images)")
        if q.top1_int8 is not None:
            line += (f"; top-1 on {q.eval_images} labelled images: FP32 {100 * q.top1_fp32:.2f}%, "
                     f"INT8 {100 * q.top1_int8:.2f}%")
    return line
