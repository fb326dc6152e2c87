"""ProxylessNAS architectures as data.

Each variant is a small table in this project's compact notation, decoded by
:func:`parse_arch` into a :class:`NetSpec` that the one builder in
``src/proxylessnas_mobile.py`` turns into a network.  The official
``ProxylessNASNets`` JSON format (mit-han-lab/proxylessnas) can be read with
:func:`spec_from_config` and written with :func:`spec_to_config`, so a network
found by the architecture search trains here directly.

Notation, one token per block, one line per stage (a stage starts at every
block with stride 2; the first stage is the block right after the stem)::

    k5_e3_c32_s2   MBConv: kernel 5, expand ratio 3, 32 output channels, stride 2
    k3_e3_c32      stride 1 is the default
    zero           "Zero" block of the search space: the block is skipped

The identity shortcut is never written: like the official code it is present
exactly when the block has stride 1 and equal input and output channels.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from src.errors import UserError

BN_EPS = 1e-3
BN_MOMENTUM_TORCH = 0.1  # as written in the official configs (PyTorch convention)

# ---------------------------------------------------------------------------
# The four released networks (ProxylessNAS, Cai et al., ICLR 2019).
# ---------------------------------------------------------------------------
ARCHS: Dict[str, Dict[str, Any]] = {
    "proxylessnas_mobile": dict(stem=32, head=1280, blocks="""
        k3_e1_c16
        k5_e3_c32_s2  k3_e3_c32  zero  zero
        k7_e3_c40_s2  k3_e3_c40  k5_e3_c40  k5_e3_c40
        k7_e6_c80_s2  k5_e3_c80  k5_e3_c80  k5_e3_c80  k5_e6_c96  k5_e3_c96  k5_e3_c96  k5_e3_c96
        k7_e6_c192_s2 k7_e6_c192 k7_e3_c192 k7_e3_c192 k7_e6_c320
    """),
    "proxylessnas_mobile_14": dict(stem=48, head=1792, blocks="""
        k3_e1_c24
        k5_e3_c40_s2  k3_e3_c40  zero  zero
        k7_e3_c56_s2  k3_e3_c56  k5_e3_c56  k5_e3_c56
        k7_e6_c112_s2 k5_e3_c112 k5_e3_c112 k5_e3_c112 k5_e6_c136 k5_e3_c136 k5_e3_c136 k5_e3_c136
        k7_e6_c256_s2 k7_e6_c256 k7_e3_c256 k7_e3_c256 k7_e6_c448
    """),
    "proxylessnas_cpu": dict(stem=40, head=1432, blocks="""
        k3_e1_c24
        k3_e6_c32_s2  k3_e3_c32  k3_e3_c32  k3_e3_c32
        k3_e6_c48_s2  k3_e3_c48  k3_e3_c48  k5_e3_c48
        k3_e6_c88_s2  zero  zero  k3_e3_c88  k5_e6_c104 k3_e3_c104 k3_e3_c104 k3_e3_c104
        k5_e6_c216_s2 k5_e3_c216 k5_e3_c216 k3_e3_c216 k5_e6_c360
    """),
    "proxylessnas_gpu": dict(stem=40, head=1728, blocks="""
        k3_e1_c24
        k5_e3_c32_s2  zero  zero  zero
        k7_e3_c56_s2  zero  zero  k3_e3_c56
        k7_e6_c112_s2 zero  zero  k5_e3_c112 k5_e6_c128 zero  k3_e3_c128 k5_e3_c128
        k7_e6_c256_s2 k7_e6_c256 k7_e6_c256 k5_e6_c256 k7_e6_c432
    """),
}


@dataclass(frozen=True)
class BlockSpec:
    """One block: an MBConv (inverted bottleneck) or a skipped "Zero" block."""

    in_channels: int
    out_channels: int
    kernel_size: int = 3
    stride: int = 1
    expand_ratio: float = 1
    zero: bool = False

    @property
    def shortcut(self) -> bool:
        """Identity shortcut: stride 1 and equal channels (always true for a Zero block)."""
        return self.stride == 1 and self.in_channels == self.out_channels

    @property
    def mid_channels(self) -> int:
        return int(round(self.in_channels * self.expand_ratio))


@dataclass(frozen=True)
class NetSpec:
    """A whole network: stem conv, blocks grouped in stages, 1x1 feature-mix conv, classifier."""

    stem_channels: int
    head_channels: int
    stages: Tuple[Tuple[BlockSpec, ...], ...]
    in_channels: int = 3
    stem_kernel: int = 3
    stem_stride: int = 2
    bn_eps: float = BN_EPS
    name: str = "custom"

    @property
    def blocks(self) -> List[BlockSpec]:
        return [b for stage in self.stages for b in stage]

    @property
    def last_channels(self) -> int:
        return self.stages[-1][-1].out_channels if self.stages else self.stem_channels


_TOKEN = re.compile(r"^k(?P<k>\d+)_e(?P<e>\d+(?:\.\d+)?)_c(?P<c>\d+)(?:_s(?P<s>\d+))?$")


def _parse_block(token: str, in_channels: int) -> BlockSpec:
    if token == "zero":
        return BlockSpec(in_channels, in_channels, zero=True)
    match = _TOKEN.match(token)
    if not match:
        raise UserError(f"bad block token {token!r}: expected 'zero' or 'k<kernel>_e<expand>_c<channels>[_s<stride>]'")
    expand = float(match["e"])
    return BlockSpec(in_channels, int(match["c"]), kernel_size=int(match["k"]), stride=int(match["s"] or 1),
                     expand_ratio=int(expand) if expand.is_integer() else expand)


def parse_arch(stem: int, head: int, blocks: str, name: str = "custom") -> NetSpec:
    """Decode a compact table (see module docstring) into a NetSpec."""
    stages = []
    channels = stem
    for line in blocks.strip().splitlines():
        stage = []
        for token in line.split():
            block = _parse_block(token, channels)
            stage.append(block)
            channels = block.out_channels
        stages.append(tuple(stage))
    return NetSpec(stem_channels=stem, head_channels=head, stages=tuple(stages), name=name)


def get_arch(name: str) -> NetSpec:
    """The NetSpec of a released variant, by name."""
    if name not in ARCHS:
        raise UserError(f"unknown arch {name!r}: valid are {', '.join(sorted(ARCHS))} "
                        "(or a path to an official ProxylessNASNets .config/.json file)")
    return parse_arch(name=name, **ARCHS[name])


def resolve_arch(arch: Union[str, Dict[str, Any]]) -> Tuple[NetSpec, Optional[int]]:
    """The one resolver of an ``--arch`` value: a released name, a path to an official .config/.json file,
    or such a document already read (a dict, as a checkpoint's description holds it).

    Returns the NetSpec and the classifier size the file writes (None for a released name: its weights
    define no class count of their own).
    """
    if isinstance(arch, dict):
        spec, classifier = spec_from_config(arch)
        return spec, int(classifier["num_classes"])
    if arch in ARCHS:
        return get_arch(arch), None
    if str(arch).endswith((".config", ".json")) or Path(arch).is_file():
        spec, classifier = spec_from_config(arch)
        return spec, int(classifier["num_classes"])
    return get_arch(arch), None  # raises the error that lists the valid names


def group_stages(blocks: List[BlockSpec]) -> Tuple[Tuple[BlockSpec, ...], ...]:
    """Split a flat block list into stages: a new stage starts at every strided block."""
    stages: List[List[BlockSpec]] = []
    for block in blocks:
        if not stages or block.stride != 1:
            stages.append([])
        stages[-1].append(block)
    return tuple(tuple(s) for s in stages)


# ---------------------------------------------------------------------------
# The official ProxylessNASNets JSON format.
# ---------------------------------------------------------------------------
def _conv_layer(in_c: int, out_c: int, kernel: int, stride: int) -> Dict[str, Any]:
    return {"name": "ConvLayer", "kernel_size": kernel, "stride": stride, "dilation": 1, "groups": 1,
            "bias": False, "has_shuffle": False, "in_channels": in_c, "out_channels": out_c,
            "use_bn": True, "act_func": "relu6", "dropout_rate": 0, "ops_order": "weight_bn_act"}


def _identity(channels: int) -> Dict[str, Any]:
    return {"name": "IdentityLayer", "in_channels": channels, "out_channels": channels, "use_bn": False,
            "act_func": None, "dropout_rate": 0, "ops_order": "weight_bn_act"}


def spec_to_config(spec: NetSpec, num_classes: int = 1000, dropout_rate: float = 0.0) -> Dict[str, Any]:
    """The network as an official ``ProxylessNASNets`` JSON document (a dict)."""
    blocks = []
    for b in spec.blocks:
        if b.zero:
            conv = {"name": "ZeroLayer", "stride": b.stride}
        else:
            conv = {"name": "MBInvertedConvLayer", "in_channels": b.in_channels, "out_channels": b.out_channels,
                    "kernel_size": b.kernel_size, "stride": b.stride, "expand_ratio": b.expand_ratio}
        blocks.append({"name": "MobileInvertedResidualBlock", "mobile_inverted_conv": conv,
                       "shortcut": _identity(b.in_channels) if b.shortcut else None})
    return {
        "name": "ProxylessNASNets",
        "bn": {"momentum": BN_MOMENTUM_TORCH, "eps": spec.bn_eps},
        "first_conv": _conv_layer(spec.in_channels, spec.stem_channels, spec.stem_kernel, spec.stem_stride),
        "feature_mix_layer": _conv_layer(spec.last_channels, spec.head_channels, 1, 1),
        "classifier": {"name": "LinearLayer", "in_features": spec.head_channels, "out_features": num_classes,
                       "bias": True, "use_bn": False, "act_func": None, "dropout_rate": dropout_rate,
                       "ops_order": "weight_bn_act"},
        "blocks": blocks,
    }


class _ConfigReader:
    """Checked access to the fields of one network config: a missing key or a value of the wrong kind is a
    UserError naming the key, where it is and the file."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, what: str) -> UserError:
        return UserError(f"unsupported ProxylessNASNets config {self.source} at {where}: {what}")

    def require(self, cond: bool, where: str, what: str) -> None:
        if not cond:
            raise self.fail(where, what)

    def field(self, layer: Any, key: str, where: str, kind: Any = int) -> Any:
        """``layer[key]``, which must exist and be of ``kind`` (int: a whole number, float: any number)."""
        if not isinstance(layer, dict):
            raise self.fail(where, f"expected a JSON object, got {type(layer).__name__} {layer!r}")
        if key not in layer:
            raise self.fail(where, f"the key {key!r} is missing (an official config has it)")
        value = layer[key]
        ok = {int: lambda v: isinstance(v, int) and not isinstance(v, bool),
              float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
              dict: lambda v: isinstance(v, dict), list: lambda v: isinstance(v, list),
              str: lambda v: isinstance(v, str)}[kind](value)
        if not ok:
            expected = {int: "a whole number", float: "a number", dict: "a JSON object", list: "a JSON list",
                        str: "a string"}[kind]
            raise self.fail(f"{where}.{key}", f"expected {expected}, got {value!r}")
        return value


def spec_from_config(config: Union[Dict[str, Any], str, Path]) -> Tuple[NetSpec, Dict[str, Any]]:
    """Read an official ``ProxylessNASNets`` document (dict or file path).

    Returns the NetSpec and the classifier settings found in it
    (``num_classes``, ``dropout_rate``).
    """
    source = "(given as a dict)"
    if not isinstance(config, dict):
        path = Path(config)
        if path.is_dir():
            raise UserError(f"network config {path} is a folder: pass the .config/.json file of a network")
        if not path.is_file():
            raise UserError(f"network config file not found: {path}")
        source = str(path)
        try:
            config = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise UserError(f"network config {path} is not valid JSON: {err}") from None
        except OSError as err:
            raise UserError(f"network config {path} cannot be read: {err.strerror}") from None
    read = _ConfigReader(source)
    read.require(isinstance(config, dict), "top level", f"expected a JSON object, got {type(config).__name__}")
    read.require(config.get("name") == "ProxylessNASNets", "name",
                 f"expected 'ProxylessNASNets', got {config.get('name')!r}")
    first = read.field(config, "first_conv", "top level", dict)
    mix = read.field(config, "feature_mix_layer", "top level", dict)
    classifier = read.field(config, "classifier", "top level", dict)
    for where, layer in (("first_conv", first), ("feature_mix_layer", mix)):
        read.require(layer.get("act_func") == "relu6" and layer.get("use_bn", True) and not layer.get("bias", False)
                     and layer.get("groups", 1) == 1 and layer.get("dilation", 1) == 1
                     and layer.get("ops_order", "weight_bn_act") == "weight_bn_act",
                     where, "only bias-free conv + BN + ReLU6 layers are supported")
    read.require(read.field(mix, "kernel_size", "feature_mix_layer") == 1
                 and read.field(mix, "stride", "feature_mix_layer") == 1,
                 "feature_mix_layer", "must be a 1x1 conv with stride 1")
    blocks: List[BlockSpec] = []
    stem = channels = read.field(first, "out_channels", "first_conv")
    for i, block in enumerate(read.field(config, "blocks", "top level", list)):
        where = f"blocks[{i}]"
        conv = read.field(block, "mobile_inverted_conv", where, dict)
        shortcut = block.get("shortcut")
        name = read.field(conv, "name", f"{where}.mobile_inverted_conv", str)
        if name == "ZeroLayer":
            read.require(shortcut is not None and conv.get("stride", 1) == 1, where,
                         "a ZeroLayer needs stride 1 and an identity shortcut")
            spec = BlockSpec(channels, channels, zero=True)
        else:
            read.require(name == "MBInvertedConvLayer", where, f"layer {name!r}")
            at = f"{where}.mobile_inverted_conv"
            in_channels = read.field(conv, "in_channels", at)
            read.require(in_channels == channels, where,
                         f"in_channels {in_channels} but the previous layer gives {channels}")
            spec = BlockSpec(in_channels, read.field(conv, "out_channels", at), read.field(conv, "kernel_size", at),
                             read.field(conv, "stride", at), read.field(conv, "expand_ratio", at, float))
            read.require(spec.kernel_size % 2 == 1, where, "kernel size must be odd")
            read.require((shortcut is not None) == spec.shortcut, where,
                         "shortcut must be present exactly when stride is 1 and in == out channels")
        blocks.append(spec)
        channels = spec.out_channels
    mix_in = read.field(mix, "in_channels", "feature_mix_layer")
    read.require(mix_in == channels, "feature_mix_layer", f"in_channels {mix_in} != {channels}")
    head = read.field(mix, "out_channels", "feature_mix_layer")
    read.require(read.field(classifier, "in_features", "classifier") == head, "classifier",
                 "in_features != feature_mix out_channels")
    bn = config.get("bn", {})
    read.require(isinstance(bn, dict), "bn", f"expected a JSON object, got {bn!r}")
    spec = NetSpec(stem_channels=stem, head_channels=head,
                   stages=group_stages(blocks), in_channels=read.field(first, "in_channels", "first_conv"),
                   stem_kernel=read.field(first, "kernel_size", "first_conv"),
                   stem_stride=read.field(first, "stride", "first_conv"),
                   bn_eps=read.field(bn, "eps", "bn", float) if "eps" in bn else BN_EPS)
    return spec, {"num_classes": read.field(classifier, "out_features", "classifier"),
                  "dropout_rate": classifier.get("dropout_rate", 0)}


def archs_fitting(shapes: Dict[str, Tuple[int, ...]]) -> List[str]:
    """The registered variants whose parameters have exactly these names and shapes (a checkpoint's weights)."""
    from src.convert import key_map

    head = shapes.get("output.bias")
    if not head:
        return []
    fits = []
    for name in sorted(ARCHS):
        expected = {k: tuple(shape) for k, (_, shape) in key_map(get_arch(name), "modelzoo", head[0]).items()}
        if expected == {k: tuple(v) for k, v in shapes.items()}:
            fits.append(name)
    return fits
