"""This project's depthwise-convolution kernel for MindSpore's CPU backend.

MindSpore 2.10 gives oneDNN plain NCHW tensors; for a depthwise convolution (one group per channel)
oneDNN then runs im2col + GEMM, which is where ProxylessNAS spends most of its CPU time (65% of a
training step, 60% of batch-1 inference, measured with MindSpore's profiler).
``src/kernels/depthwise.cc`` computes the same convolution directly (forward, both gradients, and
an inference form with the folded BatchNorm's bias and ReLU6 fused in) and is plugged in through
``ops.Custom(func_type="aot")``.  The same library computes the first layer (a dense convolution of
the few image channels, at most :data:`DENSE_MAX_IN`): oneDNN runs that one as a slow reference kernel
on AVX-512 CPUs, which is what kept MindSpore capped at AVX2 (see
:func:`apply_choice`, :func:`src.model_utils.device.lift_isa_cap`).

The kernel is compiled with the system C++ compiler (``$CXX`` or ``g++``) on first use into a cache
folder (``$PROXYLESSNAS_KERNEL_DIR``, else ``~/.cache/proxylessnas_mindspore``), checked against
numpy once per process, and only then used.  It is built for the best instruction set the CPU has
(``/proc/cpuinfo`` flags): AVX-512 (16 channels per vector), else AVX2 + FMA (8), else generic code;
a build that fails to compile or to pass the check falls back to the next one.
``PROXYLESSNAS_KERNEL_ISA`` (avx512, avx2 or generic) pins one build.  A cached library's
name records its size and hash, verified before it is loaded: a damaged file is rebuilt, never mapped.  The choice is the config key ``depthwise_kernel``:

- ``auto`` (default): the native kernel on CPU in float32 when it builds; otherwise MindSpore's
  Conv2D, with one warning saying why;
- ``native``: the native kernel or a clear error;
- ``builtin``: always MindSpore's Conv2D (Ascend and GPU always use it).

Exported MINDIR/ONNX/AIR files never contain the native kernel (see :func:`builtin_only`), and the
parameters are the same either way, so checkpoints do not depend on the choice.
"""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np

from src.errors import UserError

_LOG = logging.getLogger(__name__)

SOURCE = Path(__file__).resolve().parent / "kernels" / "depthwise.cc"
CHOICES = ("auto", "native", "builtin")
STRIDES = (1, 2)
DENSE_MAX_IN = 8  # the dense kernel's limit on input channels (kDenseMaxIn in the source)


class KernelUnavailable(RuntimeError):
    """The native kernel cannot be built or does not compute what it should here."""


# ---------------------------------------------------------------------------
# Building the library
# ---------------------------------------------------------------------------
def cache_dir() -> Path:
    """Where compiled kernels are kept: $PROXYLESSNAS_KERNEL_DIR, else ~/.cache/proxylessnas_mindspore."""
    configured = os.environ.get("PROXYLESSNAS_KERNEL_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "proxylessnas_mindspore"


def _cpu_flags() -> set:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


# Instruction sets the kernel is built for, best first: (name, CPU flags it needs, compiler flags, lanes).
# Only x86-64 gets the vector builds; "generic" is whatever the compiler makes of the vector types.
ISAS = (
    ("avx512", {"avx512f", "avx2", "fma"}, ["-mavx512f", "-mavx2", "-mfma", "-DDW_LANES=16"], 16),
    ("avx2", {"avx2", "fma"}, ["-mavx2", "-mfma", "-DDW_LANES=8"], 8),
    ("generic", set(), ["-DDW_LANES=8"], 8),
)
_ISA_FLAGS = {name: (needs, flags, lanes) for name, needs, flags, lanes in ISAS}


def cpu_isas() -> List[str]:
    """The kernel builds this CPU can run, best first (from /proc/cpuinfo's flags)."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return ["generic"]
    flags = _cpu_flags()
    return [name for name, needs, _, _ in ISAS if needs <= flags]


def compile_command(compiler: str, source: Path, output: Path, isa: Optional[str] = None) -> List[str]:
    """The compiler call for one instruction set (default: the best this CPU has), optimised and vectorised."""
    isa = isa or cpu_isas()[0]
    if isa not in _ISA_FLAGS:
        raise KernelUnavailable(f"unknown kernel instruction set {isa!r} (one of {', '.join(_ISA_FLAGS)})")
    command = [compiler, "-std=c++17", "-O3", "-fPIC", "-shared", "-fopenmp-simd", "-pthread"]
    return command + _ISA_FLAGS[isa][1] + ["-o", str(output), str(source)]


def _compiler() -> str:
    name = os.environ.get("CXX", "g++")
    path = shutil.which(name)
    if path is None:
        raise KernelUnavailable(f"no C++ compiler '{name}' on PATH (install g++, or set CXX)")
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _intact(library: Path) -> bool:
    """Whether a cached library still has the size and hash its name recorded when it was built.

    A cut-short shared library is not refused by the loader: it is mapped and the process dies with
    a bus error on first use, so a damaged cache file must never reach ``dlopen``.
    """
    try:
        size, digest = library.stem.rsplit("-", 2)[1:]
        return library.stat().st_size == int(size) and _digest(library) == digest
    except (OSError, ValueError):
        return False


def build_library(directory: Optional[Path] = None, isa: Optional[str] = None) -> Path:
    """The compiled kernel library for ``isa`` (default: the best this CPU has), built now unless an
    identical, intact build is already cached.

    The cache key covers the source, the compiler call and the compiler's version; the file name also
    records the library's size and hash, checked before every use (a damaged file is rebuilt).
    """
    compiler = _compiler()
    directory = directory or cache_dir()
    isa = isa or cpu_isas()[0]
    probe = compile_command(compiler, SOURCE, Path("out.so"), isa)
    try:
        version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as err:
        raise KernelUnavailable(f"cannot run {compiler}: {err}") from None
    key = hashlib.sha1(SOURCE.read_bytes() + " ".join(probe).encode() + version.encode()).hexdigest()[:16]
    prefix = f"depthwise-{isa}-{key}"
    for cached in sorted(directory.glob(f"{prefix}-*.so")) if directory.is_dir() else ():
        if _intact(cached):
            return cached
        _LOG.warning("the cached kernel library %s is damaged (size or hash differs from its build); "
                     "rebuilding it", cached)
        with contextlib.suppress(OSError):
            cached.unlink()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=".depthwise-", suffix=".so", dir=directory)
        os.close(handle)
    except OSError as err:
        raise KernelUnavailable(f"cannot write to the kernel folder {directory}: {err.strerror} "
                                "(set PROXYLESSNAS_KERNEL_DIR to a writable folder)") from None
    try:
        command = compile_command(compiler, SOURCE, Path(temporary), isa)
        _LOG.info("compiling the native depthwise kernel (%s): %s", isa, " ".join(command))
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            first = (result.stderr.strip().splitlines() or ["no output"])[0]
            raise KernelUnavailable(f"compiling {SOURCE.name} failed: {first}")
        built = Path(temporary)
        library = directory / f"{prefix}-{built.stat().st_size}-{_digest(built)}.so"
        os.replace(temporary, library)  # atomic: concurrent workers each build and one wins
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return library


# ---------------------------------------------------------------------------
# Checking the library against numpy (no MindSpore needed)
# ---------------------------------------------------------------------------
def _taps(x: np.ndarray, k: int, stride: int) -> Iterator[Tuple[int, int, np.ndarray]]:
    """(ky, kx, the float64 inputs tap (ky, kx) of a k x k kernel meets at every output position)."""
    pad = k // 2
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = (x.shape[2] + 2 * pad - k) // stride + 1, (x.shape[3] + 2 * pad - k) // stride + 1
    for ky in range(k):
        for kx in range(k):
            yield ky, kx, xp[:, :, ky:ky + stride * (oh - 1) + 1:stride, kx:kx + stride * (ow - 1) + 1:stride]


def reference_conv(x: np.ndarray, w: np.ndarray, stride: int) -> np.ndarray:
    """Depthwise convolution in float64 numpy: padding k // 2, the given stride."""
    return sum(patch * w[None, :, 0, ky, kx, None, None] for ky, kx, patch in _taps(x, w.shape[-1], stride))


def _call(function, arrays: List[np.ndarray]) -> int:
    count = len(arrays)
    arrays = [np.ascontiguousarray(a, dtype=np.float32) for a in arrays]
    params = (ctypes.c_void_p * count)(*[a.ctypes.data for a in arrays])
    ndims = (ctypes.c_int * count)(*[a.ndim for a in arrays])
    shapes_data = [(ctypes.c_int64 * a.ndim)(*a.shape) for a in arrays]
    shapes = (ctypes.POINTER(ctypes.c_int64) * count)(*[ctypes.cast(s, ctypes.POINTER(ctypes.c_int64))
                                                           for s in shapes_data])
    dtypes = (ctypes.c_char_p * count)(*[b"float32"] * count)
    status = function(count, params, ndims, shapes, dtypes, None, None)
    return int(status)


def self_check(library: Path) -> None:
    """Run every entry point of ``library`` on small inputs and compare with numpy; raise if any is off."""
    if not _intact(library):
        raise KernelUnavailable(f"{library} is damaged or not a build of this project (size or hash "
                                "differs from its name); delete it and run again to rebuild")
    try:
        lib = ctypes.CDLL(str(library))
    except OSError as err:
        raise KernelUnavailable(f"cannot load {library}: {err}") from None
    lanes = lib.DwLanes()
    if lanes not in (8, 16):
        raise KernelUnavailable(f"{library.name}: reports {lanes} lanes (expected 8 or 16)")
    rng = np.random.default_rng(0)
    for stride in STRIDES:
        for k in (3, 5, 7):
            # 19 channels: full blocks and a partial one, of 8 or 16 lanes; 21 columns: full
            # 8- or 16-wide transpose tiles and a tail
            x = rng.standard_normal((2, 19, 10, 21)).astype(np.float32)
            w = rng.standard_normal((19, 1, k, k)).astype(np.float32)
            b = rng.standard_normal(19).astype(np.float32)
            want = reference_conv(x, w, stride)
            # the input bias and ReLU6 of a 1x1 conv in front (inputs scaled so that both clips act)
            a = rng.standard_normal(19).astype(np.float32)
            x4 = 4 * x
            want_pre = reference_conv(np.clip(x4 + a[None, :, None, None], 0, 6), w, stride) + b[:, None, None]
            checks = []
            for name, inputs, expected in (
                    (f"DwForwardS{stride}", [x, w], want),
                    (f"DwForwardBiasS{stride}", [x, w, b], want + b[:, None, None]),
                    (f"DwForwardBiasRelu6S{stride}", [x, w, b], np.clip(want + b[:, None, None], 0, 6)),
                    (f"DwForwardInputBiasRelu6BiasS{stride}", [x4, w, b, a], want_pre),
                    (f"DwForwardInputBiasRelu6BiasRelu6S{stride}", [x4, w, b, a], np.clip(want_pre, 0, 6))):
                out = np.zeros(want.shape, np.float32)
                arrays = inputs + [out]
                status = _call(getattr(lib, name), arrays)
                checks.append((name, status, np.asarray(arrays[-1]), expected))
            # gradients of sum(y * g): dx by the adjoint identity, dw by numpy
            g = rng.standard_normal(want.shape).astype(np.float32)
            dx = np.zeros(x.shape, np.float32)
            status = _call(getattr(lib, f"DwBackwardInputS{stride}"), [g, w, x, dx])
            checks.append((f"DwBackwardInputS{stride}", status, float(np.sum(dx * x)), float(np.sum(want * g))))
            dw = np.zeros(w.shape, np.float32)
            status_w = _call(getattr(lib, f"DwBackwardFilterS{stride}"), [x, g, w, dw])
            want_dw = np.zeros(w.shape)
            for ky, kx, patch in _taps(x, k, stride):
                want_dw[:, 0, ky, kx] = np.sum(patch * g, axis=(0, 2, 3))
            checks.append((f"DwBackwardFilterS{stride}", status_w, dw, want_dw))
            _verify(library.name, checks, f"k={k}")
    for stride in STRIDES:
        for k in (1, 3, 5):
            # 3 image channels into 19 (a full block of 8 or 16 and a partial one); 1 and 8 inputs
            for cin, cout in ((3, 19), (1, 5), (DENSE_MAX_IN, 17)):
                _check_dense(lib, library.name, rng, stride, k, cin, cout)
    # shapes it does not compute are refused, not guessed
    bad = _call(lib.DwForwardS1, [np.zeros((1, 2, 5, 5)), np.zeros((2, 1, 3, 3)), np.zeros((1, 2, 4, 4))])
    if bad == 0:
        raise KernelUnavailable(f"{library.name}: a wrong output shape was accepted")
    too_wide = DENSE_MAX_IN + 1
    bad = _call(lib.DenseForwardS1, [np.zeros((1, too_wide, 5, 5)), np.zeros((2, too_wide, 3, 3)),
                                     np.zeros((1, 2, 5, 5))])
    if bad == 0:
        raise KernelUnavailable(f"{library.name}: a dense conv of {too_wide} input channels was accepted")


def reference_dense_conv(x: np.ndarray, w: np.ndarray, stride: int) -> np.ndarray:
    """Dense convolution in float64 numpy: weight (cout, cin, k, k), padding k // 2, the given stride."""
    return sum(np.einsum("ncij,oc->noij", patch, w[:, :, ky, kx].astype(np.float64))
               for ky, kx, patch in _taps(x, w.shape[-1], stride))


def _check_dense(lib, library: str, rng, stride: int, k: int, cin: int, cout: int) -> None:
    """The dense entry points of ``lib`` against numpy on one shape; raise if any is off."""
    x = rng.standard_normal((2, cin, 10, 21)).astype(np.float32)
    w = rng.standard_normal((cout, cin, k, k)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    want = reference_dense_conv(x, w, stride)
    g = rng.standard_normal(want.shape).astype(np.float32)
    results = []
    for name, inputs, expected in (
            (f"DenseForwardS{stride}", [x, w], want),
            (f"DenseForwardBiasS{stride}", [x, w, b], want + b[:, None, None]),
            (f"DenseForwardBiasRelu6S{stride}", [x, w, b], np.clip(want + b[:, None, None], 0, 6))):
        out = np.zeros(want.shape, np.float32)
        arrays = inputs + [out]
        results.append((name, _call(getattr(lib, name), arrays), arrays[-1], expected))
    # gradients of sum(y * g): dx by the adjoint of the numpy conv, dw by numpy
    dx = np.zeros(x.shape, np.float32)
    arrays = [g, w, x, dx]
    status = _call(getattr(lib, f"DenseBackwardInputS{stride}"), arrays)
    pad = k // 2
    oh, ow = want.shape[2:]
    padded = np.zeros((2, cin, x.shape[2] + 2 * pad, x.shape[3] + 2 * pad))
    for ky in range(k):
        for kx in range(k):
            padded[:, :, ky:ky + stride * (oh - 1) + 1:stride, kx:kx + stride * (ow - 1) + 1:stride] += \
                np.einsum("noij,oc->ncij", g.astype(np.float64), w[:, :, ky, kx].astype(np.float64))
    want_dx = padded[:, :, pad:pad + x.shape[2], pad:pad + x.shape[3]]
    results.append((f"DenseBackwardInputS{stride}", status, arrays[-1], want_dx))
    dw = np.zeros(w.shape, np.float32)
    arrays = [x, g, w, dw]
    status = _call(getattr(lib, f"DenseBackwardFilterS{stride}"), arrays)
    want_dw = np.zeros(w.shape)
    for ky, kx, patch in _taps(x, k, stride):
        want_dw[:, :, ky, kx] = np.einsum("ncij,noij->oc", patch, g.astype(np.float64))
    results.append((f"DenseBackwardFilterS{stride}", status, arrays[-1], want_dw))
    _verify(library, results, f"k={k}, {cin} input channels")


def _verify(library: str, checks, where: str) -> None:
    """Raise unless every (entry point, status, result, expected) of ``checks`` returned 0 and is within 1e-4
    of the largest expected value (at least 1)."""
    for name, status, got, expected in checks:
        if status != 0:
            raise KernelUnavailable(f"{library}: {name} returned status {status} ({where})")
        err = np.max(np.abs(np.asarray(got, np.float64) - expected))
        scale = max(1.0, float(np.max(np.abs(expected))))
        if not err <= 1e-4 * scale:
            raise KernelUnavailable(f"{library}: {name} is off by {err:.3g} ({where})")


def checked_library(isa: str, directory: Optional[Path] = None) -> Path:
    """The library built for ``isa``, after the numpy self-check; raises :class:`KernelUnavailable`."""
    if isa not in cpu_isas():
        raise KernelUnavailable(f"this CPU cannot run the {isa} build (its flags lack "
                                f"{', '.join(sorted(_ISA_FLAGS[isa][0] - _cpu_flags())) or 'x86-64'})")
    library = build_library(directory, isa)
    self_check(library)
    return library


@lru_cache(maxsize=None)
def _library_or_reason() -> Tuple[Optional[str], str]:
    # the best instruction set whose build passes the check; a failure falls back to the next one
    reasons = []
    forced = os.environ.get("PROXYLESSNAS_KERNEL_ISA", "")
    if forced and forced not in _ISA_FLAGS:
        return None, f"PROXYLESSNAS_KERNEL_ISA={forced} is not one of {', '.join(_ISA_FLAGS)}"
    for isa in [forced] if forced else cpu_isas():
        try:
            library = checked_library(isa)
            break
        except KernelUnavailable as err:
            reasons.append(str(err))
        except (OSError, subprocess.SubprocessError) as err:
            reasons.append(f"{type(err).__name__}: {err}")
        if reasons[-1].startswith(("no C++ compiler", "cannot run", "cannot write to the kernel folder")):
            return None, reasons[-1]  # no other instruction set would fare better
    else:
        return None, "; ".join(reasons)
    if reasons:
        _LOG.warning("native depthwise kernel: using the %s build because %s", isa, "; ".join(reasons))
    allowed = os.environ.get("MS_CUSTOM_AOT_WHITE_LIST")
    if allowed and not str(library.resolve()).startswith(str(Path(allowed).expanduser().resolve())):
        return None, (f"MS_CUSTOM_AOT_WHITE_LIST={allowed} does not include {library.parent} "
                      "(set PROXYLESSNAS_KERNEL_DIR to a folder inside it)")
    return str(library), ""


def active_isa() -> str:
    """The instruction set of the library in use ("avx512", "avx2", "generic"; "" when none is)."""
    path = _library_or_reason()[0]
    return Path(path).name.split("-")[1] if path else ""


def unavailable_reason() -> str:
    """Why the native kernel cannot be used here ("" when it can)."""
    return _library_or_reason()[1]


def library_path() -> str:
    """Path of the built and checked library; raises :class:`KernelUnavailable` with the reason."""
    path, reason = _library_or_reason()
    if path is None:
        raise KernelUnavailable(reason)
    return path


# ---------------------------------------------------------------------------
# MindSpore operators
# ---------------------------------------------------------------------------
def _out_shape(stride: int, kind: str):
    def infer(x, w, *bias):
        k = w[2]
        pad = k // 2
        channels = x[1] if kind == "depthwise" else w[0]
        return [x[0], channels, (x[2] + 2 * pad - k) // stride + 1, (x[3] + 2 * pad - k) // stride + 1]
    return infer


KINDS = {"depthwise": "Dw", "dense": "Dense"}  # kind of conv -> prefix of its entry points


@lru_cache(maxsize=None)
def operators(stride: int, kind: str = "depthwise") -> Dict[str, object]:
    """The Custom ops for one stride and kind (``depthwise`` or ``dense``, see :func:`conv_kind`):
    ``conv`` (trainable), ``bias`` and ``bias_relu6`` (inference)."""
    from mindspore import ops

    path = library_path()
    prefix = KINDS[kind]

    def custom(entry: str, out_shape, bprop=None):
        return ops.Custom(f"{path}:{prefix}{entry}S{stride}", out_shape=out_shape, out_dtype=lambda x, *rest: x,
                          func_type="aot", bprop=bprop)

    grad_input = custom("BackwardInput", lambda dy, w, x: x)
    grad_filter = custom("BackwardFilter", lambda x, dy, w: w)

    def bprop(x, w, out, dout):
        return grad_input(dout, w, x), grad_filter(x, dout, w)

    found = {"conv": custom("Forward", _out_shape(stride, kind), bprop),
             "bias": custom("ForwardBias", _out_shape(stride, kind)),
             "bias_relu6": custom("ForwardBiasRelu6", _out_shape(stride, kind))}
    if kind == "depthwise":  # (x, w, b, input bias): the 1x1 conv's bias and ReLU6 applied to x first
        found["input_bias_relu6_bias"] = custom("ForwardInputBiasRelu6Bias", _out_shape(stride, kind))
        found["input_bias_relu6_bias_relu6"] = custom("ForwardInputBiasRelu6BiasRelu6", _out_shape(stride, kind))
    return found


# ---------------------------------------------------------------------------
# Switching a network's depthwise convolutions
# ---------------------------------------------------------------------------
def conv_kind(conv) -> Optional[str]:
    """Which native kernel computes this ``nn.Conv2d`` (odd square kernel, 'same' padding, stride 1 or 2):
    ``depthwise`` (one group per channel), ``dense`` (one group, at most DENSE_MAX_IN input channels:
    a first layer; a 1x1 conv stays MindSpore's), or None."""
    k = conv.kernel_size
    padding = conv.padding if isinstance(conv.padding, int) else (
        conv.padding[0] if len(set(conv.padding)) == 1 else -1)
    if not (k[0] == k[1] and k[0] % 2 == 1 and conv.stride[0] == conv.stride[1] and conv.stride[0] in STRIDES
            and tuple(conv.dilation) == (1, 1) and conv.pad_mode == "pad" and padding == k[0] // 2
            and conv.data_format == "NCHW"):
        return None
    if conv.group == conv.in_channels == conv.out_channels:
        return "depthwise"
    if conv.group == 1 and conv.in_channels <= DENSE_MAX_IN and k[0] > 1:
        return "dense"
    return None


def supported(conv) -> bool:
    """Whether a native kernel computes this ``nn.Conv2d`` (see :func:`conv_kind`)."""
    return conv_kind(conv) is not None


def _native_cells(net) -> Iterator[object]:
    for _, cell in net.cells_and_names():
        if hasattr(cell, "native") and hasattr(cell, "conv") and supported(cell.conv):
            yield cell


def set_native(net, enabled: bool) -> int:
    """Point every supported conv of ``net`` (depthwise and first layer) at the native kernel (or back);
    returns how many.

    Call it before the network first runs: a compiled graph keeps the kernels it was compiled with.
    """
    count = 0
    for cell in _native_cells(net):
        if not enabled:
            cell.native = None
            continue
        ops = operators(cell.conv.stride[0], conv_kind(cell.conv))
        if cell.conv.has_bias:  # a folded conv (src/fuse.py): bias and ReLU6 go into the same call
            cell.native = ops["bias_relu6"] if cell.act is not None else ops["bias"]
        else:
            cell.native = ops["conv"]
        count += 1
    for _, cell in net.cells_and_names():
        if hasattr(cell, "deferred"):
            cell.deferred, cell.input_bias = False, None
    if enabled:
        _defer_expand_bias(net)
    return count


def _defer_expand_bias(net) -> None:
    """Folded inverted bottlenecks (src/fuse.py): the 1x1 expansion conv leaves its bias and ReLU6 to
    the native depthwise conv after it, which applies them to its input as it reads it (two passes
    over the widest activation fewer; the same numbers, tests/test_native_depthwise.py)."""
    from mindspore import Tensor

    for _, cell in net.cells_and_names():
        expand, depthwise = getattr(cell, "bc_conv", None), getattr(cell, "dw_conv", None)
        if (expand is None or depthwise is None or not hasattr(expand, "deferred")
                or not hasattr(depthwise, "input_bias") or expand.native is not None or expand.act is None
                or depthwise.native is None or conv_kind(depthwise.conv) != "depthwise"
                or not (expand.conv.has_bias and depthwise.conv.has_bias)):
            continue
        ops = operators(depthwise.conv.stride[0], "depthwise")
        depthwise.native = ops["input_bias_relu6_bias_relu6" if depthwise.act is not None
                               else "input_bias_relu6_bias"]
        depthwise.input_bias = Tensor(expand.conv.bias.asnumpy())  # a constant: folded networks are not trained
        expand.deferred = True


def _running_native(net) -> List[object]:
    return [cell for _, cell in net.cells_and_names() if getattr(cell, "native", None) is not None]


def native_count(net) -> int:
    """How many convs of ``net`` currently run the native kernel."""
    return len(_running_native(net))


@contextlib.contextmanager
def builtin_only(net):
    """Within the block ``net`` uses MindSpore's Conv2D everywhere (for export); restored afterwards."""
    names = ("native", "deferred", "input_bias")
    saved = [(cell, [getattr(cell, name, None) for name in names]) for _, cell in net.cells_and_names()
             if getattr(cell, "native", None) is not None or getattr(cell, "deferred", False)]
    for cell, _ in saved:
        cell.native = None
        if hasattr(cell, "deferred"):
            cell.deferred, cell.input_bias = False, None
    try:
        yield net
    finally:
        for cell, values in saved:
            for name, value in zip(names, values):
                if hasattr(cell, name):
                    setattr(cell, name, value)


def apply_choice(net, choice: str, device_target: str, amp_level: str = "O0") -> bool:
    """Apply the ``depthwise_kernel`` choice to ``net``; True when the native kernel is in use."""
    if choice not in CHOICES:
        raise UserError(f"depthwise_kernel {choice!r} is not one of {', '.join(CHOICES)}")
    if choice == "builtin":
        return False
    if device_target != "CPU" or amp_level != "O0":
        if choice == "native":
            why = (f"device_target is {device_target}" if device_target != "CPU"
                   else f"amp_level {amp_level} runs the convolutions in float16")
            raise UserError(f"depthwise_kernel native is a float32 CPU kernel but {why}: "
                            "pass --depthwise_kernel auto or builtin")
        return False
    path, reason = _library_or_reason()
    if path is None:
        if choice == "native":
            raise UserError(f"the native depthwise kernel is not available: {reason}; "
                            "pass --depthwise_kernel builtin to use MindSpore's Conv2D")
        _warn_once(reason)
        return False
    count = set_native(net, True)
    _LOG.debug("native depthwise kernel for %d convolutions (%s)", count, path)
    if count and "avx512f" in _cpu_flags() and _graph_mode() and not slow_on_avx512(net):
        from src.model_utils.device import lift_isa_cap

        lift_isa_cap("the native kernel computes every convolution oneDNN runs slowly on AVX-512 "
                     "(depthwise, first layer)")
    return count > 0


def _graph_mode() -> bool:
    # PyNative runs oneDNN operator by operator: uncapped, one batch-1 call took 32-67 ms against 24-30 ms
    # capped (alternating runs on the Xeon), so the cap is lifted for GRAPH mode only
    import mindspore as ms

    return ms.get_context("mode") == ms.GRAPH_MODE


def slow_on_avx512(net) -> List[str]:
    """Names of the convolutions of ``net`` that MindSpore's oneDNN would run as slow reference kernels
    without the AVX2 cap: every one that is neither a 1x1 single-group conv nor computed natively."""
    native = set()
    for _, cell in net.cells_and_names():
        if getattr(cell, "native", None) is not None and hasattr(cell, "conv"):
            native.add(id(cell.conv))
    from mindspore import nn

    return [name for name, cell in net.cells_and_names()
            if isinstance(cell, nn.Conv2d) and id(cell) not in native
            and not (tuple(cell.kernel_size) == (1, 1) and cell.group == 1)]


@lru_cache(maxsize=None)
def _warn_once(reason: str) -> None:
    _LOG.warning("using MindSpore's Conv2D for depthwise convolutions (slower on CPU): %s", reason)
