"""From a file to something that classifies: a checkpoint to an inference network, an exported model to a runner.

:func:`load_network` is the one way from a ``.ckpt`` to a network in eval mode (weights read strictly,
BatchNorm folded, depthwise kernel chosen), used by eval.py, predict.py, export.py and the benchmark;
:func:`inference_form` is its last step, also used for the trainer's EMA copy.  :func:`open_exported`
loads a MINDIR or ONNX file, for predict.py and the Ascend 310 stand-in (src/infer_runner.py).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Union

import numpy as np

from src.errors import UserError

_LOG = logging.getLogger(__name__)

DEFAULT_ARCH = "proxylessnas_mobile"


def inference_form(net, fold_bn: bool = True, depthwise_kernel: str = "auto", device_target: str = "CPU",
                   amp_level: str = "O0"):
    """``net`` ready to classify: eval mode, BatchNorm folded into the convs (a new network, same logits,
    tests/test_fuse.py) unless ``fold_bn`` is False, depthwise kernel chosen (src/native_depthwise.py)."""
    from src.native_depthwise import apply_choice

    net.set_train(False)
    if fold_bn:
        from src.fuse import fold_batchnorm

        net = fold_batchnorm(net)
    apply_choice(net, depthwise_kernel, device_target, amp_level)  # folded: depthwise conv + bias + ReLU6 in one
    return net


def graph_runner(net) -> Callable[[Any], Any]:
    """A call equal to ``net(x)`` (a MindSpore Tensor in and out) for a network run again and again in GRAPH
    mode, without MindSpore's per-call Python bookkeeping: every ``Cell.__call__`` looks its compiled graph up
    again and walks all sub-cells to set their compile phase (213 cells in ProxylessNAS-Mobile), about 2-3 ms of
    a 22 ms batch-1 call on a 2-core CPU (benchmarks/results/profile_batch1.md).

    The first call with each input shape and dtype goes through ``net(x)`` (which compiles it); the compiled
    graph is then run directly through MindSpore's graph executor on two inputs and must give ``net``'s own
    outputs for both (so a direct call that ignored its input, or any other difference, is caught); only
    then do later calls of that shape skip ``net.__call__``. In PyNative mode, with a MindSpore whose
    executor lacks that entry, or after a failed check, every call is ``net(x)``. ``net``'s train/eval mode
    must not change while the runner is in use (the compiled graph depends on it).
    """
    import mindspore as ms

    try:
        from mindspore.graph.api import _cell_graph_executor as executor  # MindSpore 2.10
        direct_entry = executor._exec_pip
    except (ImportError, AttributeError):
        direct_entry = None
    phases: Dict[Any, Optional[str]] = {}

    def direct(x, phase):
        return direct_entry(net, x, phase=phase)

    def verified_phase(x, out) -> Optional[str]:
        phase = net.compile_phase
        other = ms.Tensor(np.flip(x.asnumpy(), axis=0).copy() * 0.5 + 0.25)
        try:
            other_direct = direct(other, phase).asnumpy()
            other_out = net(other).asnumpy()  # same shape: the same compiled graph
            again = direct(x, phase).asnumpy()
        except Exception as err:  # noqa: BLE001 - any failure means: do not use the direct path
            _LOG.debug("direct graph call not used: %s", err)
            return None
        out = out.asnumpy()
        scale = max(float(np.abs(out).max()), float(np.abs(other_out).max()))

        def gap(a, b):
            return float(np.abs(a - b).max()) / scale if scale > 0 else 0.0

        if gap(again, out) > 1e-5 or gap(other_direct, other_out) > 1e-5:
            _LOG.warning("direct graph calls disagree with the network's own outputs (input shape %s); running it "
                         "the usual way", tuple(x.shape))
            return None
        if gap(other_out, out) <= 1e-3:  # two inputs, the same outputs: cannot tell that each call read its input
            _LOG.debug("direct graph call not confirmed for input shape %s: two inputs gave the same outputs",
                       tuple(x.shape))
            return None
        return phase

    def run(x):
        if direct_entry is None or ms.get_context("mode") != ms.GRAPH_MODE:
            return net(x)
        key = (tuple(x.shape), str(x.dtype))
        phase = phases.get(key, False)
        if phase:
            return direct(x, phase)
        out = net(x)
        if phase is False:
            phases[key] = verified_phase(x, out)
        return out

    run.direct_shapes = phases  # type: ignore[attr-defined]  # for tests: which shapes run directly
    return run


def classifier_size(entries: Dict[str, Any], path: str) -> int:
    """The number of classes the classifier among a checkpoint's entries (of the file ``path``) has."""
    from src.checkpoint import weights_of

    weights = weights_of(entries)
    if "output.weight" not in weights:
        raise UserError(f"checkpoint {path} has no classifier (output.weight): is it a ProxylessNAS checkpoint?")
    return int(weights["output.weight"].shape[0])


def load_network(path: str, arch: Union[str, Dict[str, Any], None] = None, num_classes: Optional[int] = None,
                 fold_bn: bool = True, depthwise_kernel: str = "auto", device_target: str = "CPU"):
    """A checkpoint as an inference network; returns ``(net, description)`` (None: the file has none).

    ``arch`` and ``num_classes`` None: the checkpoint's description, else proxylessnas_mobile and the size of
    the checkpoint's classifier.  Given ones are used; when they do not fit the weights the error names both.
    """
    from src import create_model
    from src.checkpoint import load_weights, read_checkpoint
    from src.description import checkpoint_description, same_value, shown

    entries = read_checkpoint(path)  # read once: description, classifier size and weights
    description = checkpoint_description(entries, path)
    if description is not None and description.get("kind") != "network":
        raise UserError(f"checkpoint {path} holds a {description.get('kind')}'s weights (a search's resume state), "
                        "not a network's: use the search run's init.ckpt")
    described = description or {}
    if arch is None:
        arch = described.get("arch", DEFAULT_ARCH)
    num_classes = num_classes or described.get("num_classes") or classifier_size(entries, path)
    net = create_model(arch, num_classes=num_classes)
    try:
        load_weights(net, path, entries=entries)
    except UserError as err:
        if "arch" in described and not same_value("arch", arch, described["arch"]):
            raise UserError(f"--arch {shown(arch)} does not fit checkpoint {path}, whose description says arch "
                            f"{shown(described['arch'])}: drop --arch to use it") from None
        raise err from None
    return inference_form(net, fold_bn, depthwise_kernel, device_target), description


@dataclass
class Exported:
    """A loaded MINDIR or ONNX model: float32 NCHW batch -> logits."""

    run: Callable[[np.ndarray], np.ndarray]
    image_size: Optional[int]  # the input side it was exported for; None: not recorded (any)
    num_classes: Optional[int]  # None: not recorded


def open_exported(path: Union[str, Path]) -> Exported:
    """Load ``path`` by its extension: ``.onnx`` with ONNX Runtime, else a MINDIR with MindSpore (CPU)."""
    path = Path(path)
    return _open_onnx(path) if path.suffix.lower() == ".onnx" else _open_mindir(path)


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _open_onnx(path: Path) -> Exported:
    from src.files import image_size_of

    try:
        import onnxruntime as ort
    except ImportError:
        raise UserError("ONNX models need onnxruntime: pip install onnxruntime") from None
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as err:
        raise UserError(f"cannot load {path} as ONNX: {_first_line(err)}") from None
    first = session.get_inputs()[0]
    outputs = session.get_outputs()[0].shape
    return Exported(lambda x: session.run(None, {first.name: x})[0], image_size_of(first.shape),
                    outputs[-1] if isinstance(outputs[-1], int) else None)


def _open_mindir(path: Path) -> Exported:
    import mindspore as ms
    from mindspore import nn

    from src.files import image_size_of, mindir_input_shape
    from src.model_utils.device import set_device

    set_device("CPU")
    try:
        graph = nn.GraphCell(ms.load(str(path)))
    except Exception as err:  # MindSpore raises RuntimeError/ValueError with multi-line texts
        raise UserError(f"cannot load {path} as MINDIR: {_first_line(err)}") from None
    # a graph with global pooling runs any size: the size it was exported for is checked by the callers
    return Exported(lambda x: graph(ms.Tensor(x)).asnumpy(), image_size_of(mindir_input_shape(path)), None)
