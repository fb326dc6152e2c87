"""Convert released ProxylessNAS weights to this project's MindSpore checkpoints.

Three sources are understood, each described by how its names derive from a
:class:`~src.arch.NetSpec` (so any variant, including a searched network given
as an official ``.config`` file, converts without a per-variant key list):

``official``
    mit-han-lab/proxylessnas ``.pth``: ``first_conv``, ``blocks.N.mobile_inverted_conv.*``
    with ``N`` counting every block including Zero blocks, ``feature_mix_layer``,
    ``classifier.linear``; PyTorch BatchNorm names.
``pytorchcv``
    osmr/imgclsmob ``.pth``: the same names as this project
    (``features.stageS.unitU.body.*``), with PyTorch BatchNorm names.
``modelzoo``
    the MindSpore ModelZoo ``.ckpt`` of the seed: this project's names; what a training
    cell saves besides the weights (``momentum``, ``learning_rate``, ``global_step``,
    ``moments.*``, ``accum.*``, ``stat.*``, loss scale) is recognised and dropped
    (:func:`src.checkpoint.is_training_state`); any other extra entry is refused.

Conversion is strict: every source tensor is used exactly once (only
``num_batches_tracked`` is ignored), every target tensor is filled and every
shape is checked, so a checkpoint for another variant never half-loads.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

import numpy as np

from src.arch import ARCHS, NetSpec, get_arch, resolve_arch
from src.errors import UserError

_LOG = logging.getLogger(__name__)

SOURCES = ("official", "pytorchcv", "modelzoo")
TORCH_REQUIREMENT = "torch==2.13.0"

# target (MindSpore) BatchNorm name -> PyTorch BatchNorm name, in MindSpore's parameter order
_BN_NAMES = (("moving_mean", "running_mean"), ("moving_variance", "running_var"), ("gamma", "weight"),
             ("beta", "bias"))
_IGNORED_SUFFIX = "num_batches_tracked"


@dataclass(frozen=True)
class _ConvBN:
    """One conv + BN layer: its name here, its name in the official layout, and its conv shape."""

    ours: str
    official: str
    shape: Tuple[int, int, int, int]


def resolve_spec(arch: str) -> NetSpec:
    """The NetSpec of a registered variant name or of an official ``.config``/``.json`` file."""
    return resolve_arch(arch)[0]


def _conv_bn_layers(spec: NetSpec) -> List[_ConvBN]:
    layers = [_ConvBN("features.init_block", "first_conv",
                      (spec.stem_channels, spec.in_channels, spec.stem_kernel, spec.stem_kernel))]
    flat_index = 0  # the official code numbers blocks over the whole net, Zero blocks included
    for s, stage in enumerate(spec.stages, start=1):
        for u, block in enumerate(stage, start=1):
            ours, official = f"features.stage{s}.unit{u}.body", f"blocks.{flat_index}.mobile_inverted_conv"
            flat_index += 1
            if block.zero:
                continue
            mid, k = block.mid_channels, block.kernel_size
            if block.expand_ratio != 1:
                layers.append(_ConvBN(f"{ours}.bc_conv", f"{official}.inverted_bottleneck",
                                      (mid, block.in_channels, 1, 1)))
            layers.append(_ConvBN(f"{ours}.dw_conv", f"{official}.depth_conv", (mid, 1, k, k)))
            layers.append(_ConvBN(f"{ours}.pw_conv", f"{official}.point_linear", (block.out_channels, mid, 1, 1)))
    layers.append(_ConvBN("features.final_block", "feature_mix_layer",
                          (spec.head_channels, spec.last_channels, 1, 1)))
    return layers


def key_map(spec: NetSpec, source: str, num_classes: int = 1000) -> Dict[str, Tuple[str, Tuple[int, ...]]]:
    """For every target tensor, in network order: its source key and its shape."""
    if source not in SOURCES:
        raise UserError(f"unknown source {source!r}: valid are {', '.join(SOURCES)}")
    mapping: Dict[str, Tuple[str, Tuple[int, ...]]] = {}
    for layer in _conv_bn_layers(spec):
        prefix = layer.official if source == "official" else layer.ours
        mapping[f"{layer.ours}.conv.weight"] = (f"{prefix}.conv.weight", layer.shape)
        for ms_name, torch_name in _BN_NAMES:
            mapping[f"{layer.ours}.bn.{ms_name}"] = (
                f"{prefix}.bn.{ms_name if source == 'modelzoo' else torch_name}", (layer.shape[0],))
    head = "classifier.linear" if source == "official" else "output"
    mapping["output.weight"] = (f"{head}.weight", (num_classes, spec.head_channels))
    mapping["output.bias"] = (f"{head}.bias", (num_classes,))
    return mapping


def _sample(names: Iterable[str], n: int = 4) -> str:
    names = sorted(names)
    more = f" and {len(names) - n} more" if len(names) > n else ""
    return ", ".join(names[:n]) + more


def guess_source(keys: Iterable[str]) -> Optional[str]:
    """Which source layout a set of keys looks like (None when it looks like none of them)."""
    keys = set(keys)
    if any(k.startswith("first_conv.") or k.startswith("blocks.") for k in keys):
        return "official"
    if any(k.startswith("features.") and k.endswith(".running_mean") for k in keys):
        return "pytorchcv"
    if any(k.startswith("features.") and k.endswith(".moving_mean") for k in keys):
        return "modelzoo"
    return None


def source_num_classes(tensors: Dict[str, np.ndarray], source: str) -> Optional[int]:
    """The classifier size stored in the source tensors, or None when its bias is absent."""
    bias = tensors.get("classifier.linear.bias" if source == "official" else "output.bias")
    return None if bias is None else int(np.shape(bias)[0])


def fitting_archs(tensors: Dict[str, np.ndarray], source: str) -> List[str]:
    """Registered variants whose names and shapes match the source tensors exactly."""
    fits = []
    for name in sorted(ARCHS):
        try:
            convert(tensors, get_arch(name), source)
        except UserError:
            continue
        fits.append(name)
    return fits


def convert(tensors: Dict[str, Any], spec: NetSpec, source: str,
            num_classes: Optional[int] = None) -> Dict[str, np.ndarray]:
    """Map source tensors (name -> array) onto this project's names, strictly; returns float32 arrays.

    ``num_classes`` defaults to the classifier size found in the source.
    """
    tensors = {k: v for k, v in tensors.items() if not k.endswith(_IGNORED_SUFFIX)}
    found_classes = source_num_classes(tensors, source)
    if num_classes is None:
        num_classes = found_classes if found_classes is not None else 1000
    elif found_classes is not None and found_classes != num_classes:
        raise UserError(f"the source classifier has {found_classes} classes but {num_classes} were asked for: "
                        f"pass --num_classes {found_classes} (or leave it out to take it from the file)")
    mapping = key_map(spec, source, num_classes)
    wanted = {src for src, _ in mapping.values()}
    missing = sorted(wanted - set(tensors))
    unexpected = sorted(set(tensors) - wanted)
    if missing or unexpected:
        guessed = guess_source(tensors)
        hint = (f"the keys look like --source {guessed}" if guessed not in (None, source)
                else "was it saved for another --arch?")
        raise UserError(f"{source} weights do not fit {spec.name}, {hint} ({len(missing)} keys missing"
                        f"{': ' + _sample(missing) if missing else ''}; {len(unexpected)} unexpected"
                        f"{': ' + _sample(unexpected) if unexpected else ''})")
    bad_shapes = [f"{src} {tuple(np.shape(tensors[src]))} vs {shape}" for src, shape in mapping.values()
                  if tuple(np.shape(tensors[src])) != shape]
    if bad_shapes:
        raise UserError(f"{source} weights have other shapes than {spec.name} "
                        f"({len(bad_shapes)} tensors: {_sample(bad_shapes, 3)}): was it saved for another --arch?")
    out = {}
    for target, (src, _) in mapping.items():
        value = np.asarray(tensors[src])
        if value.dtype != np.float32:
            # e.g. float16 from the seed's AMP O3 training; the network keeps float32 parameters
            _LOG.debug("%s: %s converted to float32", src, value.dtype)
        out[target] = np.ascontiguousarray(value, dtype=np.float32)
    return out


# ---------------------------------------------------------------------------
# Reading the source files
# ---------------------------------------------------------------------------
def _import_torch():
    try:
        import torch
    except ImportError:
        raise UserError(f"reading PyTorch .pth files needs PyTorch, which is not installed: "
                        f"pip install {TORCH_REQUIREMENT} (the CPU build is enough)") from None
    return torch


def _state_dict_of(loaded: Any, path: Path) -> Dict[str, Any]:
    torch = _import_torch()
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]  # the official release wraps the weights
    if not isinstance(loaded, dict) or not any(isinstance(v, torch.Tensor) for v in loaded.values()):
        top = _sample(map(str, loaded)) if isinstance(loaded, dict) else type(loaded).__name__
        raise UserError(f"{path} holds no state_dict (found {top}): expected a state_dict or a dict with "
                        "'state_dict', as the official and pytorchcv releases are")
    tensors = {k: v for k, v in loaded.items() if isinstance(v, torch.Tensor)}
    # weights saved from nn.DataParallel carry this prefix on every key
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return {k: v.detach().cpu().to(torch.float32).numpy() if v.is_floating_point() else v.detach().cpu().numpy()
            for k, v in tensors.items()}


def read_torch_weights(path: str) -> Dict[str, np.ndarray]:
    """Tensors of a PyTorch ``.pth`` (a state_dict, or a dict holding one under ``state_dict``)."""
    from src.files import describe_content, input_file

    p = input_file(path, "input file", "--input")
    torch = _import_torch()
    try:
        # weights_only: a downloaded file must not be able to run code when unpickled
        loaded = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises RuntimeError, UnpicklingError, EOFError, ... with long texts
        content = describe_content(p)
        if content.startswith("text"):
            raise UserError(f"{p} is not a PyTorch weights file: it holds {content}; pass the .pth file "
                            "of the official or pytorchcv release") from None
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{p} cannot be read as a PyTorch weights file ({first}); a MindSpore .ckpt "
                        "converts with --source modelzoo") from None
    return _state_dict_of(loaded, p)


def read_mindspore_weights(path: str) -> Dict[str, np.ndarray]:
    """Network tensors of a MindSpore ``.ckpt``, optimizer and training state dropped."""
    from src.checkpoint import read_checkpoint, weights_of

    if Path(path).suffix in (".pth", ".pt", ".tar"):
        raise UserError(f"{path} looks like a PyTorch file: use --source official or --source pytorchcv")
    return {k: v.asnumpy() for k, v in weights_of(read_checkpoint(path)).items()}


def read_source(path: str, source: str) -> Dict[str, np.ndarray]:
    """The tensors of a source file, read the way its source is published."""
    if source not in SOURCES:
        raise UserError(f"unknown source {source!r}: valid are {', '.join(SOURCES)}")
    return read_mindspore_weights(path) if source == "modelzoo" else read_torch_weights(path)


def convert_file(source: str, arch: str, input_path: str, output_path: str,
                 num_classes: Optional[int] = None, overwrite: bool = False) -> Dict[str, Any]:
    """Read, convert and atomically write one checkpoint; returns a summary (tensors, values, classes)."""
    out = Path(output_path)
    if out.exists() and not overwrite:
        raise UserError(f"output {out} exists: pass --overwrite to replace it, or choose another --output")
    if out.suffix != ".ckpt":
        raise UserError(f"output {out} must end in .ckpt (MindSpore appends it otherwise)")
    from src.files import check_output_file

    check_output_file(out, "converted checkpoint", "--output")  # before the work: a read-only folder is one line
    spec = resolve_spec(arch)
    tensors = read_source(input_path, source)
    _LOG.info("read %d tensors from %s", len(tensors), input_path)
    try:
        weights = convert(tensors, spec, source, num_classes)
    except UserError:
        fits = [a for a in fitting_archs(tensors, source) if a != arch]
        if fits:
            raise UserError(f"these {source} weights fit --arch {' or '.join(fits)}, not {arch}: "
                            f"pass --arch {fits[0]}") from None
        raise
    import mindspore as ms
    from src.checkpoint import save_checkpoint_atomic

    save_checkpoint_atomic([{"name": k, "data": ms.Tensor(v)} for k, v in weights.items()], str(out))
    summary = {"tensors": len(weights), "values": int(sum(v.size for v in weights.values())),
               "num_classes": int(weights["output.bias"].shape[0]), "output": str(out)}
    _LOG.info("converted %d tensors (%d values, %d classes) from %s weights for %s",
              summary["tensors"], summary["values"], summary["num_classes"], source, spec.name)
    return summary
