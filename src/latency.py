"""Per-layer latency lookup tables in the official ProxylessNAS format.

A table maps one string key per distinct layer to its measured latency (milliseconds, batch 1)::

    Conv-input:224x224x3-output:112x112x32:                    stem conv
      count: 50
      mean: 0.61
      var: 0.0004
    expanded_conv-input:112x112x16-output:56x56x24-expand:3-kernel:3-stride:2-idskip:0:   an MBConv block
    Conv_1-input:7x7x320-output:7x7x1280:                      1x1 feature-mix conv
    Logits-input:7x7x1280-output:1000:                         global pooling + classifier

The key builders below are the one place these strings are written; the table builder
(``tools/latency.py``) and the architecture search read and write keys only through them.
Spatial sizes follow the input: a conv of stride s with padding k//2 maps a side of n to ceil(n / s).

Also here: the official search space as data (:func:`default_space`), the layers a table holds
(:func:`layers_to_build`, :func:`spec_layers`), the table itself (:class:`LatencyTable`, official YAML plus
an optional ``_meta`` record), measuring it on ONNX Runtime or MindSpore (:func:`build_table`), and using it
(:func:`predict_latency`, checked end to end by :func:`measure_network`).
"""
from __future__ import annotations

import datetime as _dt
import logging
import math
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from src.errors import UserError

Number = Union[int, float]


def out_size(size: int, stride: int) -> int:
    """Side of a feature map after a 'same'-padded conv of this stride (ceil(size / stride))."""
    return -(-int(size) // int(stride))


def _fmt(value: Number) -> str:
    """Expand ratios as the official table writes them: 3, 6, 1 (integers without a decimal point)."""
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def _hwc(size: int, channels: int) -> str:
    return f"{int(size)}x{int(size)}x{int(channels)}"


def conv_key(in_size: int, in_channels: int, out_channels: int, stride: int = 2) -> str:
    """The stem conv: ``Conv-input:224x224x3-output:112x112x32``."""
    return f"Conv-input:{_hwc(in_size, in_channels)}-output:{_hwc(out_size(in_size, stride), out_channels)}"


def mbconv_key(in_size: int, in_channels: int, out_channels: int, expand: Number, kernel: int, stride: int,
               idskip: bool) -> str:
    """An MBConv block: ``expanded_conv-input:...-output:...-expand:E-kernel:K-stride:S-idskip:0|1``.

    ``idskip`` is 1 when the block is measured with its identity shortcut (stride 1, equal widths).
    """
    return (f"expanded_conv-input:{_hwc(in_size, in_channels)}"
            f"-output:{_hwc(out_size(in_size, stride), out_channels)}"
            f"-expand:{_fmt(expand)}-kernel:{int(kernel)}-stride:{int(stride)}-idskip:{int(bool(idskip))}")


def feature_mix_key(size: int, in_channels: int, out_channels: int) -> str:
    """The 1x1 feature-mix conv: ``Conv_1-input:7x7x320-output:7x7x1280``."""
    return f"Conv_1-input:{_hwc(size, in_channels)}-output:{_hwc(size, out_channels)}"


def logits_key(size: int, in_channels: int, num_classes: int) -> str:
    """Global average pooling + classifier: ``Logits-input:7x7x1280-output:1000``."""
    return f"Logits-input:{_hwc(size, in_channels)}-output:{int(num_classes)}"


def boundary_key(size: int, channels: int) -> str:
    """A join between two layers at one tensor shape: ``Boundary-tensor:56x56x24`` (not in the official tables).

    Its mean is what timing two layers one by one costs more than timing them as one graph at this shape
    (the extra output and input copies, layout reorders and thread wake-ups of a separate call); a network
    run pays none of it, so :func:`predict_latency` takes it off once for every join between two layers.
    """
    return f"Boundary-tensor:{_hwc(size, channels)}"


_LOG = logging.getLogger(__name__)

RUNTIMES = ("onnxruntime", "mindspore")
SPACES = ("default", "released")
META_KEY = "_meta"
FIELDS = ("count", "mean", "var")

# The official search space (mit-han-lab/proxylessnas, search/imagenet_arch_search.py defaults).
DEFAULT_WIDTHS = (24, 40, 80, 96, 192, 320)
DEFAULT_CELLS = (4, 4, 4, 4, 4, 1)
DEFAULT_STRIDES = (2, 2, 2, 1, 2, 1)
DEFAULT_CANDIDATES: Tuple[Tuple[int, int], ...] = ((3, 3), (3, 6), (5, 3), (5, 6), (7, 3), (7, 6))
STEM_CHANNELS, FIRST_BLOCK_CHANNELS, HEAD_CHANNELS = 32, 16, 1280
# The official mobile table also lists the first block (MBConv1) with 5x5 and 7x7 kernels although the
# search fixes it at 3x3; a default-space build measures them too so that its keys equal the official ones.
FIRST_BLOCK_TABLE_KERNELS = (3, 5, 7)


_CANDIDATE_NAME = re.compile(r"^(\d+)x(\d+)_MBConv(\d+(?:\.\d+)?)$")


def candidate_names(candidates: Sequence[Tuple[int, float]] = DEFAULT_CANDIDATES) -> List[str]:
    """Official names of (kernel, expand) candidates: ``3x3_MBConv3`` ..."""
    return [f"{int(k)}x{int(k)}_MBConv{_fmt(e)}" for k, e in candidates]


def parse_candidates(names: Sequence[str], option: str = "--conv_candidates") -> Tuple[Tuple[int, float], ...]:
    """(kernel, expand) pairs from official candidate names (``3x3_MBConv6``), as the official
    ``--conv_candidates``; a malformed, even-kernel or repeated name is a UserError naming it."""
    if isinstance(names, str):
        names = names.split(",")
    out: List[Tuple[int, float]] = []
    for name in names:
        match = _CANDIDATE_NAME.match(str(name).strip())
        kernel = int(match.group(1)) if match else 0
        if not match or int(match.group(2)) != kernel or kernel % 2 == 0 or not float(match.group(3)) > 0:
            raise UserError(f"{option}: {name!r} is not a candidate name like 3x3_MBConv6 (odd square kernel, "
                            f"expand ratio > 0); the official ones are {', '.join(candidate_names())}")
        expand = float(match.group(3))
        pair = (kernel, int(expand) if expand.is_integer() else expand)
        if pair in out:
            raise UserError(f"{option}: {name!r} is given twice")
        out.append(pair)
    if not out:
        raise UserError(f"{option}: give at least one candidate, e.g. {','.join(candidate_names())}")
    return tuple(out)


def make_divisible(value: float, divisor: int = 8) -> int:
    """A channel count: ``value`` rounded to the nearest multiple of ``divisor`` (at least ``divisor``),
    one step up when rounding lost more than 10% (the rule of the official search code and TF-slim)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


# ---------------------------------------------------------------------------
# The search space as data
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class CellSpace:
    """One mixed cell (edge) of the search space: where it sits and what it may become."""

    in_size: int
    in_channels: int
    out_channels: int
    stride: int
    candidates: Tuple[Tuple[int, int], ...]  # (kernel, expand) of each MBConv candidate, official order
    zero: bool  # Zero is a candidate: stride 1 and equal widths, exactly when the cell has an identity shortcut

    @property
    def out_size(self) -> int:
        return out_size(self.in_size, self.stride)

    @property
    def boundary(self) -> str:
        """Key of the join after this cell (paid by a network unless the cell is Zero)."""
        return boundary_key(self.out_size, self.out_channels)

    @property
    def shortcut(self) -> bool:
        """Identity shortcut (official code: stride 1 and equal widths); its keys carry idskip 1."""
        return self.stride == 1 and self.in_channels == self.out_channels

    def key(self, kernel: int, expand: float) -> str:
        """Latency-table key of one MBConv candidate of this cell."""
        return mbconv_key(self.in_size, self.in_channels, self.out_channels, expand, kernel, self.stride,
                          self.shortcut)

    @property
    def op_names(self) -> List[str]:
        """Names of the choices in order, official style: ``3x3_MBConv3`` ... and ``Zero`` last where allowed."""
        return candidate_names(self.candidates) + (["Zero"] if self.zero else [])

    def block(self, choice: int):
        """The BlockSpec of one choice, an index into ``op_names`` (the index after the candidates is Zero)."""
        from src.arch import BlockSpec

        if not 0 <= int(choice) < len(self.op_names):
            raise UserError(f"choice {choice!r} is not one of the {len(self.op_names)} ops of this cell "
                            f"({', '.join(self.op_names)})")
        if choice == len(self.candidates):
            return BlockSpec(self.in_channels, self.in_channels, zero=True)
        kernel, expand = self.candidates[int(choice)]
        return BlockSpec(self.in_channels, self.out_channels, int(kernel), self.stride, expand)


@dataclass(frozen=True)
class SearchSpace:
    """The official ProxylessNAS search space at one input size: fixed stem, fixed first block, 21 mixed
    cells, fixed feature mix and classifier."""

    image_size: int
    num_classes: int
    width_mult: float
    stem_channels: int
    first_block_channels: int
    cells: Tuple[CellSpace, ...]
    head_channels: int
    in_channels: int = 3
    stem_kernel: int = 3
    stem_stride: int = 2
    first_block_kernel: int = 3

    @property
    def stem_size(self) -> int:
        """Side of the stem's output (the first block runs at this size)."""
        return out_size(self.image_size, self.stem_stride)

    @property
    def first_block(self):
        """The fixed first block: MBConv expand 1, stride 1, stem width -> first-block width."""
        from src.arch import BlockSpec

        return BlockSpec(self.stem_channels, self.first_block_channels, self.first_block_kernel, 1, 1)

    @property
    def last_channels(self) -> int:
        return self.cells[-1].out_channels if self.cells else self.first_block_channels

    @property
    def feature_size(self) -> int:
        """Side of the last feature map (feature mix and classifier)."""
        return self.cells[-1].out_size if self.cells else self.stem_size

    def fixed_keys(self) -> Dict[str, str]:
        """Keys of the layers every network of the space has: stem, first block, feature mix, classifier."""
        return {
            "stem": conv_key(self.image_size, self.in_channels, self.stem_channels, self.stem_stride),
            "first_block": mbconv_key(self.stem_size, self.stem_channels, self.first_block_channels, 1,
                                      self.first_block_kernel, 1, False),
            "feature_mix": feature_mix_key(self.feature_size, self.last_channels, self.head_channels),
            "logits": logits_key(self.feature_size, self.head_channels, self.num_classes),
        }

    def fixed_boundaries(self) -> Dict[str, str]:
        """Keys of the joins after the fixed layers, by the names of :meth:`fixed_keys` (none after the classifier)."""
        return {"stem": boundary_key(self.stem_size, self.stem_channels),
                "first_block": boundary_key(self.stem_size, self.first_block_channels),
                "feature_mix": boundary_key(self.feature_size, self.head_channels)}

    def spec(self, choices: Sequence[int], name: str = "searched"):
        """The NetSpec with one choice per cell, each an index into the cell's ``op_names``."""
        if len(choices) != len(self.cells):
            raise UserError(f"{len(choices)} choices for {len(self.cells)} cells of the search space")
        return self.net_spec([cell.block(int(c)) for cell, c in zip(self.cells, choices)], name)

    def net_spec(self, cell_blocks: Sequence[Any], name: str):
        """The NetSpec of this space's fixed layers around one BlockSpec per cell."""
        from src.arch import NetSpec, group_stages

        return NetSpec(stem_channels=self.stem_channels, head_channels=self.head_channels,
                       stages=group_stages([self.first_block, *cell_blocks]), in_channels=self.in_channels,
                       stem_kernel=self.stem_kernel, stem_stride=self.stem_stride, name=name)


def _check_positive(name: str, value: Any, minimum: float = 1) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < minimum:
        raise UserError(f"{name} must be a number >= {minimum}, got {value!r}")


def default_space(image_size: int = 224, width_mult: float = 1.0, num_classes: int = 1000,
                  candidates: Optional[Sequence[Tuple[int, float]]] = None) -> SearchSpace:
    """The official search space (stem, first block, 21 mixed cells, feature mix, classifier) at this input.

    ``candidates`` narrows the (kernel, expand) choices of every cell (small supernets for tests).

    Widths follow the official ``SuperProxylessNASNets`` (checked against mit-han-lab/proxylessnas,
    search/models/super_nets/super_proxyless.py): stem, first block and every stage width are
    ``make_divisible(width * width_mult, 8)``; the feature mix stays 1280 unless ``width_mult > 1``.
    """
    _check_positive("image_size", image_size, 8)
    _check_positive("num_classes", num_classes)
    if not width_mult > 0:
        raise UserError(f"width_mult must be > 0, got {width_mult!r}")
    candidates = tuple((int(k), e) for k, e in candidates) if candidates else DEFAULT_CANDIDATES
    stem = make_divisible(STEM_CHANNELS * width_mult)
    first = make_divisible(FIRST_BLOCK_CHANNELS * width_mult)
    head = make_divisible(HEAD_CHANNELS * width_mult) if width_mult > 1.0 else HEAD_CHANNELS
    size = out_size(image_size, 2)
    channels = first
    cells: List[CellSpace] = []
    for width, count, stage_stride in zip(DEFAULT_WIDTHS, DEFAULT_CELLS, DEFAULT_STRIDES):
        width = make_divisible(width * width_mult)
        for i in range(count):
            stride = stage_stride if i == 0 else 1
            cells.append(CellSpace(size, channels, width, stride, candidates,
                                   zero=stride == 1 and channels == width))
            size, channels = out_size(size, stride), width
    return SearchSpace(image_size=int(image_size), num_classes=int(num_classes), width_mult=float(width_mult),
                       stem_channels=stem, first_block_channels=first, cells=tuple(cells), head_channels=head)


def space_spec(space: SearchSpace, choices: Sequence[Optional[Tuple[int, float]]], name: str = "custom"):
    """The NetSpec of one network of ``space``: per cell a (kernel, expand) candidate, or None for Zero."""
    from src.arch import BlockSpec

    if len(choices) != len(space.cells):
        raise UserError(f"{len(choices)} choices for {len(space.cells)} cells of the search space")
    blocks = []
    for i, (cell, choice) in enumerate(zip(space.cells, choices)):
        if choice is None:
            if not cell.zero:
                raise UserError(f"cell {i} cannot be Zero (stride {cell.stride}, {cell.in_channels} -> "
                                f"{cell.out_channels} channels)")
            blocks.append(cell.block(len(cell.candidates)))
        else:
            kernel, expand = choice
            blocks.append(BlockSpec(cell.in_channels, cell.out_channels, int(kernel), cell.stride, expand))
    return space.net_spec(blocks, name)


# ---------------------------------------------------------------------------
# Layers: what one table entry measures
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Layer:
    """One distinct layer to measure or look up: its key and what builds it."""

    key: str
    kind: str  # "stem" | "block" | "feature_mix" | "logits"
    in_size: int
    in_channels: int
    out_channels: int
    stride: int = 1
    kernel: int = 1
    block: Any = None  # the BlockSpec of a "block" layer

    @property
    def input_shape(self) -> Tuple[int, int, int, int]:
        return (1, self.in_channels, self.in_size, self.in_size)

    @property
    def output(self) -> Optional[Tuple[int, int]]:
        """(side, channels) of the feature map this layer hands on; None for the classifier (the network's end)."""
        if self.kind == "logits":
            return None
        return (out_size(self.in_size, self.stride), self.out_channels)

    @property
    def boundary(self) -> Optional[str]:
        """The key of the join after this layer (None after the classifier)."""
        return boundary_key(*self.output) if self.output else None


def boundary_pairs(layers: Sequence[Layer]) -> Dict[str, Tuple[Layer, Layer]]:
    """For every tensor shape where one of ``layers`` hands on to another: the first such (producer, consumer)."""
    consumers: Dict[Tuple[int, int], Layer] = {}
    for layer in layers:
        consumers.setdefault((layer.in_size, layer.in_channels), layer)
    pairs: Dict[str, Tuple[Layer, Layer]] = {}
    for layer in layers:
        if layer.output in consumers and layer.boundary not in pairs:
            pairs[layer.boundary] = (layer, consumers[layer.output])
    return pairs


def _block_layer(block, size: int) -> Layer:
    key = mbconv_key(size, block.in_channels, block.out_channels, block.expand_ratio, block.kernel_size,
                     block.stride, block.shortcut)
    return Layer(key, "block", size, block.in_channels, block.out_channels, block.stride, block.kernel_size, block)


def spec_layers(spec, image_size: int, num_classes: int = 1000) -> List[Layer]:
    """The layers of one network in order, as the official ``mobile`` estimate sums them (Zero blocks left out)."""
    _check_positive("image_size", image_size, 8)
    size = image_size
    layers = [Layer(conv_key(size, spec.in_channels, spec.stem_channels, spec.stem_stride), "stem", size,
                    spec.in_channels, spec.stem_channels, spec.stem_stride, spec.stem_kernel)]
    size = out_size(size, spec.stem_stride)
    for block in spec.blocks:
        if not block.zero:
            layers.append(_block_layer(block, size))
        size = out_size(size, block.stride)
    layers.append(Layer(feature_mix_key(size, spec.last_channels, spec.head_channels), "feature_mix", size,
                        spec.last_channels, spec.head_channels))
    layers.append(Layer(logits_key(size, spec.head_channels, num_classes), "logits", size, spec.head_channels,
                        num_classes))
    return layers


def space_layers(space: SearchSpace) -> List[Layer]:
    """Every distinct layer of the search space (what ``build --space default`` measures), in network order."""
    from src.arch import BlockSpec

    stem = Layer(space.fixed_keys()["stem"], "stem", space.image_size, space.in_channels, space.stem_channels,
                 space.stem_stride, space.stem_kernel)
    blocks = [_block_layer(BlockSpec(space.stem_channels, space.first_block_channels, k, 1, 1), space.stem_size)
              for k in FIRST_BLOCK_TABLE_KERNELS]
    for cell in space.cells:
        for kernel, expand in cell.candidates:
            blocks.append(_block_layer(BlockSpec(cell.in_channels, cell.out_channels, kernel, cell.stride, expand),
                                       cell.in_size))
    size = space.feature_size
    feature_mix = Layer(space.fixed_keys()["feature_mix"], "feature_mix", size, space.last_channels,
                        space.head_channels)
    logits = Layer(space.fixed_keys()["logits"], "logits", size, space.head_channels, space.num_classes)
    return _distinct([stem, *blocks, feature_mix, logits])


def _distinct(layers: Iterable[Layer]) -> List[Layer]:
    seen: Dict[str, Layer] = {}
    for layer in layers:
        seen.setdefault(layer.key, layer)
    return list(seen.values())


def resolve_arch(arch: str):
    """The NetSpec and class count of ``arch`` (see :func:`src.arch.resolve_arch`; 1000 for a released name)."""
    from src.arch import resolve_arch as resolve

    spec, classes = resolve(arch)
    return spec, classes or 1000


def layers_to_build(image_size: int, space: str = "default", arch: Optional[str] = None, num_classes: int = 1000,
                    width_mult: float = 1.0) -> List[Layer]:
    """The distinct layers a ``build`` measures: the default search space, the four released networks, or one."""
    from src.arch import ARCHS, get_arch

    if arch is not None:
        spec, _ = resolve_arch(arch)
        return _distinct(spec_layers(spec, image_size, num_classes))
    if space == "default":
        return space_layers(default_space(image_size, width_mult, num_classes))
    if space == "released":
        return _distinct(layer for name in sorted(ARCHS) for layer in spec_layers(get_arch(name), image_size,
                                                                                   num_classes))
    raise UserError(f"unknown --space {space!r}: valid are {', '.join(SPACES)} (or give --arch)")


def context_chains(image_size: int, space: str = "default", arch: Optional[str] = None, num_classes: int = 1000,
                   width_mult: float = 1.0) -> List[Tuple[str, List[Layer]]]:
    """Whole networks (name, layers in order) that together contain every layer of :func:`layers_to_build`:
    what ``order="context"`` runs to time each layer inside a running network.

    ``--arch``: that network; ``--space released``: the four released networks; ``--space default``: one
    network per candidate with every cell taking that candidate (and the first block's 3x3/5x5/7x7 in turn,
    for the official table's extra first-block keys), so every (cell, candidate) runs once in a network."""
    from src.arch import ARCHS, BlockSpec, get_arch

    if arch is not None:
        spec, _ = resolve_arch(arch)
        return [(spec.name, spec_layers(spec, image_size, num_classes))]
    if space == "released":
        return [(name, spec_layers(get_arch(name), image_size, num_classes)) for name in sorted(ARCHS)]
    if space != "default":
        raise UserError(f"unknown --space {space!r}: valid are {', '.join(SPACES)} (or give --arch)")
    sp = default_space(image_size, width_mult, num_classes)
    names = candidate_names(DEFAULT_CANDIDATES)
    chains = []
    for j in range(max(len(DEFAULT_CANDIDATES), len(FIRST_BLOCK_TABLE_KERNELS))):
        choice = j % len(DEFAULT_CANDIDATES)
        kernel = FIRST_BLOCK_TABLE_KERNELS[j % len(FIRST_BLOCK_TABLE_KERNELS)]
        layers = spec_layers(sp.spec([choice] * len(sp.cells)), image_size, num_classes)
        layers[1] = _block_layer(BlockSpec(sp.stem_channels, sp.first_block_channels, kernel, 1, 1), sp.stem_size)
        chains.append((f"every cell {names[choice]}, first block {kernel}x{kernel}", layers))
    return chains


# ---------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------
_CONV_KEY = re.compile(r"^Conv-input:(\d+)x(\d+)x\d+-")


def build_command(image_size: Any = "SIZE", runtime: str = "onnxruntime", what: str = "--space default",
                  output: str = "my_table.yaml") -> str:
    """The ``tools/latency.py build`` command line that measures a table."""
    return f"python tools/latency.py build --runtime {runtime} --image_size {image_size} {what} --output {output}"


@dataclass
class LatencyTable:
    """Per-layer latencies (milliseconds, batch 1) keyed as the official ``mobile_trim.yaml``, plus ``meta``."""

    entries: Dict[str, Dict[str, float]]
    meta: Dict[str, Any] = field(default_factory=dict)
    source: str = "<memory>"

    @classmethod
    def load(cls, path) -> "LatencyTable":
        """Read a table in the official YAML format (a ``_meta`` record is optional)."""
        import yaml

        path = Path(path)
        if not path.is_file():
            raise UserError(f"latency table not found: {path} (make one with: {build_command(output=str(path))})")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise UserError(f"latency table {path} is not valid YAML: {str(err).splitlines()[0]}") from None
        if not isinstance(data, dict) or not data:
            raise UserError(f"latency table {path} holds no entries: expected 'KEY: {{count, mean, var}}' records")
        meta = data.pop(META_KEY, None) or {}
        entries: Dict[str, Dict[str, float]] = {}
        for key, record in data.items():
            if not isinstance(record, dict) or not isinstance(record.get("mean"), (int, float)):
                raise UserError(f"latency table {path}: entry {key!r} has no numeric 'mean' (got {record!r})")
            entries[str(key)] = {name: float(record[name]) for name in FIELDS if name in record}
        return cls(entries, dict(meta), str(path))

    def save(self, path, overwrite: bool = False) -> Path:
        """Write the table (entries sorted, ``_meta`` first) atomically; an existing file needs ``overwrite``."""
        import yaml

        path = Path(path)
        if path.is_dir():
            raise UserError(f"--output {path} is a folder: give a .yaml file name")
        if path.exists() and not overwrite:
            raise UserError(f"{path} exists: pass --overwrite to replace it, or choose another --output")
        path.parent.mkdir(parents=True, exist_ok=True)
        document: Dict[str, Any] = {}
        if self.meta:
            document[META_KEY] = self.meta
        for key in sorted(self.entries):
            document[key] = {name: self.entries[key][name] for name in FIELDS if name in self.entries[key]}
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as handle:
                yaml.safe_dump(document, handle, sort_keys=False, default_flow_style=False, width=1000)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.source = str(path)
        return path

    def __contains__(self, key: object) -> bool:
        return key in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def image_size(self) -> Optional[int]:
        """Input size the table was measured at: from ``_meta``, else from its stem-conv (``Conv``) key."""
        if self.meta.get("image_size"):
            return int(self.meta["image_size"])
        sizes = {int(m.group(1)) for m in map(_CONV_KEY.match, self.entries) if m}
        return sizes.pop() if len(sizes) == 1 else None

    @property
    def call_overhead_ms(self) -> float:
        """Fixed cost of one runtime call, measured at build time and already taken out of every entry."""
        return float(self.meta.get("call_overhead_ms", 0.0))

    @property
    def has_boundaries(self) -> bool:
        """True for tables that measured the joins between layers (built here; the official ones did not)."""
        return any(key.startswith("Boundary-") for key in self.entries)

    def layer_ms(self, key: str, boundary: Optional[str], arch: Optional[str] = None) -> float:
        """What one layer adds to a network run: its entry less the join after it (when the table has joins)."""
        ms = self.mean(key, arch)
        if boundary is not None and self.has_boundaries:
            ms -= self.mean(boundary, arch)
        return ms

    def mean(self, key: str, arch: Optional[str] = None) -> float:
        """Mean latency of one layer in ms; a missing key is a UserError naming the build command that adds it."""
        record = self.entries.get(key)
        if record is not None:
            return record["mean"]
        match = _CONV_KEY.match(key)
        size = self.image_size or (int(match.group(1)) if match else "SIZE")
        runtime = self.meta.get("runtime", "onnxruntime")
        what = f"--arch {arch}" if arch else "--space default (or --space released, or --arch NAME_OR_CONFIG)"
        raise UserError(f"latency table {self.source} has no entry {key!r}: measure it with "
                        f"`{build_command(size, runtime, what, 'NEW_TABLE.yaml')}`")


# ---------------------------------------------------------------------------
# Predicting a network's latency from a table
# ---------------------------------------------------------------------------
def check_image_size(table: LatencyTable, image_size: int) -> None:
    """A table answers only for the input size it was measured at."""
    measured = table.image_size
    if measured is not None and int(image_size) != measured:
        raise UserError(f"latency table {table.source} was measured at image size {measured}, not {image_size}: "
                        f"use --image_size {measured}, or build a table at {image_size} with "
                        f"`{build_command(image_size, table.meta.get('runtime', 'onnxruntime'))}`")


def predict_latency(table: LatencyTable, spec, image_size: int, num_classes: int) -> Tuple[float, List[Tuple[str, float]]]:
    """(total ms, per-layer breakdown) of a network: stem + every non-Zero block + feature mix + classifier,
    the sum of the official ``mobile`` estimate; less the joins between its layers and plus the one-call
    overhead once, where the table measured them (tables built by :func:`build_table`)."""
    check_image_size(table, image_size)
    arch = spec.name if spec.name != "custom" else "NAME_OR_CONFIG"
    layers = spec_layers(spec, image_size, num_classes)
    breakdown = [(layer.key, table.mean(layer.key, arch)) for layer in layers]
    if table.has_boundaries:
        joins = [layer.boundary for layer in layers[:-1]]
        breakdown.append((f"joins between layers ({len(joins)}, measured; not paid in one graph)",
                          -math.fsum(table.mean(key, arch) for key in joins)))
    if table.call_overhead_ms:
        breakdown.append(("call overhead (once per network run)", table.call_overhead_ms))
    return math.fsum(ms for _, ms in breakdown), breakdown


def network_summary(spec, image_size: int, num_classes: int) -> str:
    """'NAME: P parameters, M MACs at SxS' from src/flops.py."""
    from src.flops import net_macs_params

    macs, params = net_macs_params(spec, image_size, num_classes)
    return f"{spec.name}: {params:,} parameters, {macs / 1e6:.1f} M MACs at {image_size}x{image_size}"


# ---------------------------------------------------------------------------
# Measuring: each layer as a MindSpore cell of the project's own blocks, BatchNorm folded as exported
# ---------------------------------------------------------------------------
def _check_runtime(runtime: str, threads: Optional[int]) -> None:
    if runtime not in RUNTIMES:
        raise UserError(f"unknown runtime {runtime!r}: valid are {', '.join(RUNTIMES)}")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise UserError(f"--threads must be a positive integer (or left out for the runtime's default), got {threads!r}")


def _folded(cell):
    """``cell`` with every ConvBNAct replaced by its BN-folded ConvAct: the form ``export.py`` writes by default."""
    from src.fuse import fold_in_place

    return fold_in_place(cell)[0]


def _logits_cell(in_channels: int, num_classes: int):
    """Global pooling (a mean over H and W, as the network's) + classifier."""
    from mindspore import nn, ops

    class Logits(nn.Cell):
        def __init__(self):
            super().__init__()
            self.output = nn.Dense(in_channels, num_classes)

        def construct(self, x):
            return self.output(ops.mean(x, (2, 3)))

    return Logits()


def _overhead_cell():
    """The cheapest real layer: one ReLU on 8 values, to measure what a runtime call costs by itself."""
    from mindspore import nn

    class Tiny(nn.Cell):
        def __init__(self):
            super().__init__()
            self.relu = nn.ReLU()

        def construct(self, x):
            return self.relu(x)

    return Tiny()


def layer_cell(layer: Layer, bn_eps: float = 1e-3):
    """A MindSpore cell computing exactly this layer of the network (eval mode, BatchNorm folded)."""
    from src.proxylessnas_mobile import ConvBNAct, ProxylessUnit

    if layer.kind == "stem":
        cell = ConvBNAct(layer.in_channels, layer.out_channels, layer.kernel, layer.stride, bn_eps=bn_eps)
    elif layer.kind == "block":
        cell = ProxylessUnit(layer.block, bn_eps)
    elif layer.kind == "feature_mix":
        cell = ConvBNAct(layer.in_channels, layer.out_channels, 1, bn_eps=bn_eps)
    elif layer.kind == "logits":
        cell = _logits_cell(layer.in_channels, layer.out_channels)
    else:
        raise ValueError(f"unknown layer kind {layer.kind!r}")
    cell.set_train(False)
    cell = _folded(cell)
    cell.set_train(False)
    return cell


def pair_cell(producer: Layer, consumer: Layer):
    """Two layers as one cell (one graph, one runtime call): what a join between them costs is measured on it."""
    from mindspore import nn

    cell = nn.SequentialCell([layer_cell(producer), layer_cell(consumer)])
    cell.set_train(False)
    return cell


def network_cell(spec, num_classes: int):
    """A whole network as the layers are measured: eval mode, BatchNorm folded into the convs."""
    from src.proxylessnas_mobile import ProxylessNAS

    from src.fuse import fold_batchnorm

    net = ProxylessNAS(spec, num_classes=num_classes)
    net.set_train(False)
    return fold_batchnorm(net)


def _boundary_record(producer: Dict[str, float], consumer: Dict[str, float], pair: Dict[str, float],
                     overhead: float) -> Dict[str, float]:
    """count/mean/var of a join: both layers' raw means less the pair's, less the one call overhead they add."""
    mean = producer["mean"] + consumer["mean"] - pair["mean"] - overhead
    return {"count": pair["count"], "mean": mean, "var": producer["var"] + consumer["var"] + pair["var"]}


def _time_calls_raw(call, runs: int) -> List[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def _time_calls(call, warmup: int, runs: int) -> Dict[str, float]:
    """count/mean/var (ms) of ``runs`` timed calls after ``warmup`` untimed ones."""
    _time_calls_raw(call, warmup)
    return _stats(_time_calls_raw(call, runs))


class _Timer:
    """Times cells on one runtime with fixed threads; one instance per build or check."""

    def __init__(self, runtime: str, threads: Optional[int], warmup: int, runs: int):
        _check_runtime(runtime, threads)
        if warmup < 0 or runs < 1:
            raise UserError(f"need warmup >= 0 and runs >= 1, got warmup {warmup}, runs {runs}")
        self.runtime, self.threads, self.warmup, self.runs = runtime, threads, warmup, runs
        import mindspore as ms

        from src.model_utils.device import set_device

        set_device("CPU")
        # a caller in PyNative mode (the search) gets its mode back in close()
        self._mode = ms.get_context("mode")
        context: Dict[str, Any] = {"mode": ms.GRAPH_MODE}
        if runtime == "mindspore" and threads:
            context["runtime_num_threads"] = threads
        ms.set_context(**context)
        self._work = tempfile.TemporaryDirectory(prefix="latency-")
        self._count = 0

    def close(self) -> None:
        import mindspore as ms

        ms.set_context(mode=self._mode)
        self._work.cleanup()

    def version(self) -> str:
        if self.runtime == "onnxruntime":
            import onnxruntime

            return onnxruntime.__version__
        import mindspore

        return mindspore.__version__

    def session(self, model: Union[str, bytes], profile: bool = False):
        """An ONNX Runtime CPU session (of a path or a serialized model) with this timer's thread count
        (runtime default when None); ``profile`` records every node's time."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        if self.threads:
            options.intra_op_num_threads = self.threads
        if profile:
            options.enable_profiling = True
            options.profile_file_prefix = os.path.join(self._work.name, "profile")
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    def time_onnx(self, path: str, shape: Tuple[int, ...]) -> Dict[str, float]:
        return _time_calls(self.onnx_call(path, shape), self.warmup, self.runs)

    def prepare(self, cell, shape: Tuple[int, ...]) -> Callable[[], Any]:
        """A no-argument call that runs ``cell`` once on the runtime: an ONNX Runtime session of the cell
        exported to ONNX, or the cell itself in GRAPH mode (compiled here, by a first call)."""
        import mindspore as ms

        if self.runtime == "mindspore":
            x = ms.Tensor(_input(shape))

            def call():
                return cell(x).asnumpy()
            call()
            return call
        return self.onnx_call(self.export_onnx(cell, shape).SerializeToString(), shape)

    def export_onnx(self, cell, shape: Tuple[int, ...]):
        """``cell`` exported to ONNX (as ``export.py`` exports), returned as an ``onnx.ModelProto``."""
        import mindspore as ms
        import onnx

        self._count += 1
        stem = os.path.join(self._work.name, f"layer{self._count}")
        ms.export(cell, ms.Tensor(_input(shape)), file_name=stem, file_format="ONNX")
        model = onnx.load(stem + ".onnx")
        os.remove(stem + ".onnx")
        return model

    def onnx_call(self, model: Union[str, bytes], shape: Tuple[int, ...], profile: bool = False) -> Callable[[], Any]:
        """A no-argument call running an ONNX model (a path or serialized) once; with ``profile`` the session records
        every node's time (read back by :meth:`node_times`)."""
        session = self.session(model, profile)
        feed = {session.get_inputs()[0].name: _input(shape)}
        call = lambda: session.run(None, feed)  # noqa: E731
        call.session = session  # type: ignore[attr-defined]
        return call

    def node_times(self, call, layers: int, skip_runs: int) -> Tuple[List[List[float]], float]:
        """Per run after the first ``skip_runs``: the ms spent in the nodes of each layer of a profiled chain
        (nodes named ``L<i>/...`` by :func:`chain_model`); and the share of node time that could be given to
        a layer (nodes the runtime adds, e.g. layout reorders, are not named after one)."""
        import bisect
        import json

        path = call.session.end_profiling()
        try:
            events = json.loads(Path(path).read_text())
        finally:
            os.remove(path)
        runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events
                      if e.get("cat") == "Session" and e.get("name") == "model_run")
        starts = [start for start, _ in runs]
        per_run = [[0.0] * layers for _ in runs]
        named = other = 0.0
        for e in events:
            name = e.get("name", "")
            if e.get("cat") != "Node" or not name.endswith("_kernel_time"):
                continue
            i = bisect.bisect_right(starts, e["ts"]) - 1
            if i < skip_runs or e["ts"] > runs[i][1]:
                continue
            match = _CHAIN_NODE.match(name)
            if match and int(match.group(1)) < layers:
                per_run[i][int(match.group(1))] += e["dur"] / 1e3
                named += e["dur"]
            else:
                other += e["dur"]
        return per_run[skip_runs:], named / (named + other) if named + other else 0.0

    def time_cell(self, cell, shape: Tuple[int, ...]) -> Dict[str, float]:
        """count/mean/var (ms) of one cell run on its own, ``runs`` times in a row."""
        return _time_calls(self.prepare(cell, shape), self.warmup, self.runs)

    def empty_call(self) -> Callable[[], Any]:
        """The cheapest real layer (a ReLU on 8 values): what one call of the runtime costs by itself."""
        cell = _overhead_cell()
        cell.set_train(False)
        return self.prepare(cell, (1, 8))


_CHAIN_NODE = re.compile(r"^L(\d+)/")


def chain_model(models: Sequence[Any]):
    """One ONNX model running ``models`` (each one layer, one input and one output) one after another, the
    nodes of the i-th named ``L<i>/...`` so that a profile tells which layer each node's time belongs to."""
    import onnx.compose

    chain = None
    for i, model in enumerate(models):
        model = onnx.compose.add_prefix(model, f"L{i}/")
        chain = model if chain is None else onnx.compose.merge_models(
            chain, model, io_map=[(chain.graph.output[0].name, model.graph.input[0].name)])
    opsets = {(o.domain, o.version): o for o in chain.opset_import}  # merging repeats them
    del chain.opset_import[:]
    chain.opset_import.extend(opsets.values())
    return chain


def _input(shape: Tuple[int, ...]):
    import numpy as np

    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


def cpu_description() -> Dict[str, Any]:
    """CPU model and the vector-ISA flags that decide kernel speed, from /proc/cpuinfo (Linux)."""
    import platform

    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            name, _, value = line.partition(":")
            if name.strip() == "model name" and value.strip():
                model = value.strip()
            elif name.strip() == "flags":
                flags = set(value.split())
            if flags and model:
                break
    except OSError:
        pass
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")
    return {"cpu": model, "cpu_flags": " ".join(f for f in wanted if f in flags) or "none of " + "/".join(wanted),
            "cpu_count": os.cpu_count()}


ORDERS = ("auto", "context", "rotation", "sequential")


def _stats(times: Sequence[float]) -> Dict[str, float]:
    mean = math.fsum(times) / len(times)
    return {"count": len(times), "mean": mean, "var": math.fsum((t - mean) ** 2 for t in times) / len(times)}


def _time_rotation(calls: Sequence[Callable[[], Any]], empty: Callable[[], Any], warmup: int, runs: int,
                   progress: bool) -> Tuple[List[List[float]], List[float]]:
    """Times (ms) of every call and of the empty call before each, over rounds in which each layer runs once."""
    layer_times: List[List[float]] = [[] for _ in calls]
    empty_times: List[float] = []
    started, rounds = time.perf_counter(), warmup + runs
    for r in range(rounds):
        for i, call in enumerate(calls):
            t0 = time.perf_counter()
            empty()
            t1 = time.perf_counter()
            call()
            t2 = time.perf_counter()
            if r >= warmup:
                empty_times.append((t1 - t0) * 1e3)
                layer_times[i].append((t2 - t1) * 1e3)
        if progress and (r + 1) % max(1, rounds // 10) == 0:
            elapsed = time.perf_counter() - started
            _LOG.info("timing: round %d/%d (elapsed %.0f s, ETA %.0f s)", r + 1, rounds, elapsed,
                      elapsed / (r + 1) * (rounds - r - 1))
    return layer_times, empty_times


def build_table(runtime: str, image_size: int, *, space: str = "default", arch: Optional[str] = None,
                threads: Optional[int] = None, num_classes: int = 1000, width_mult: float = 1.0, warmup: int = 10,
                runs: int = 50, progress: bool = True, order: str = "auto",
                subtract_overhead: bool = True, joins: bool = True, networks: Sequence[Any] = ()) -> LatencyTable:
    """Measure every distinct layer of a space or network, batch 1, on ``runtime``; a table with ``_meta``.

    ``order="context"`` (what ``"auto"``, the default, means) times every layer inside whole networks made of
    the layers being measured (:func:`context_chains`), each network run as one call the way a user runs
    it: with ONNX Runtime the layers are exported one by one, chained into one model and the runtime's node
    profile gives each layer's share of a run; with MindSpore (no per-node profile) the shares are the
    layers' own times in rotation. Each network's measured time (less one empty call) is then split
    between its layers by those shares, so that the layers of a network sum to that network's time. A
    layer in several networks gets the mean of its values. Layers timed apart from a network miss what a
    network run does to them (the caches it leaves, the per-call and per-node overheads it pays once or
    pays differently): on the project's 2-core machine their sums were 0.7-1.8x the networks' times,
    while the in-network split predicts networks that were not among the chains within the machine's own
    noise (benchmarks/results/latency_check.md).

    The older ways, kept to compare with: ``"rotation"`` times the layers apart in rounds, each layer once
    per round (caches as other layers leave them); ``"sequential"`` times each layer ``runs`` times in a
    row (caches hot). There an empty call is timed right before every layer call and, with
    ``subtract_overhead``, its mean is taken out of every entry and recorded once as
    ``_meta.call_overhead_ms`` (a network run pays it once, not per layer); with ``joins`` every shape at
    which one layer hands on to another is timed as a pair and recorded as ``Boundary-tensor:HxWxC`` =
    producer + consumer - pair (see :func:`boundary_key`), which predict subtracts once per join.

    ``networks`` (NetSpecs) are timed whole too and recorded in ``_meta.networks_ms`` (in the rounds of a
    rotation; alone after the chains in context order).
    """
    _check_runtime(runtime, threads)
    _check_positive("image_size", image_size, 8)
    if order not in ORDERS:
        raise UserError(f"unknown order {order!r}: valid are {', '.join(ORDERS)}")
    if order == "auto":
        order = "context"
    layers = layers_to_build(image_size, space, arch, num_classes, width_mult)
    timer = _Timer(runtime, threads, warmup, runs)
    started = time.perf_counter()
    try:
        if order == "context":
            chains = context_chains(image_size, space, arch, num_classes, width_mult)
            entries, extra = _time_in_context(timer, layers, chains, progress, subtract_overhead)
            network_ms = {spec.name: _time_calls(timer.prepare(network_cell(spec, num_classes),
                                                               (1, spec.in_channels, image_size, image_size)),
                                                 warmup, runs)["mean"] for spec in networks}
        else:
            entries, extra, network_ms = _time_apart(timer, layers, order, progress, subtract_overhead, joins,
                                                     networks, num_classes, image_size, started)
        version = timer.version()
    finally:
        timer.close()
    meta = {"runtime": runtime, "runtime_version": version, "threads": threads if threads else "default",
            "batch": 1, "image_size": int(image_size), "num_classes": int(num_classes),
            "space": arch if arch is not None else space, "width_mult": float(width_mult),
            "order": order, "warmup": warmup, "runs": runs,
            "call_overhead_ms": round(extra.pop("call_overhead_ms"), 6), **extra,
            **({"networks_ms": {name: round(ms, 6) for name, ms in network_ms.items()}} if networks else {}),
            **cpu_description(),
            "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "unset") if runtime == "mindspore" else None,
            "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
            "bn": "folded into the convs (as export.py writes the network)",
            "build_seconds": round(time.perf_counter() - started, 1),
            "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    return LatencyTable(entries, {k: v for k, v in meta.items() if v is not None})


def _log_prepared(done: int, total: int, runtime: str, started: float) -> None:
    """Progress of exporting (ONNX Runtime) or compiling (MindSpore) the layers, every 10 and at the end."""
    if done % 10 == 0 or done == total:
        elapsed = time.perf_counter() - started
        _LOG.info("prepared %d/%d layers (%s; elapsed %.0f s, ETA %.0f s)", done, total,
                  "exported to ONNX" if runtime == "onnxruntime" else "compiled", elapsed,
                  elapsed / done * (total - done))


def _time_in_context(timer: "_Timer", layers: Sequence[Layer], chains: Sequence[Tuple[str, Sequence[Layer]]],
                     progress: bool, subtract_overhead: bool) -> Tuple[Dict[str, Dict[str, float]], Dict[str, Any]]:
    """Entries of ``order="context"`` (see :func:`build_table`) and what ``_meta`` records about them."""
    from mindspore import nn

    warmup, runs, started = timer.warmup, timer.runs, time.perf_counter()
    wanted = {layer.key for layer in layers}
    covered = {layer.key for _, chain in chains for layer in chain}
    if wanted - covered:  # a programming error: context_chains must run every layer of layers_to_build
        raise RuntimeError(f"layers in no network: {sorted(wanted - covered)}")
    empty = timer.empty_call()
    overhead = _time_calls(empty, warmup, max(runs, 100))["mean"] if subtract_overhead else 0.0
    models: Dict[str, Any] = {}  # ONNX Runtime: every layer exported once
    calls: Dict[str, Callable[[], Any]] = {}  # MindSpore: every layer compiled, to be timed apart in rotation
    for i, layer in enumerate(layers, start=1):
        if timer.runtime == "onnxruntime":
            models[layer.key] = timer.export_onnx(layer_cell(layer), layer.input_shape)
        else:
            calls[layer.key] = timer.prepare(layer_cell(layer), layer.input_shape)
        if progress:
            _log_prepared(i, len(layers), timer.runtime, started)
    shares: Dict[str, List[float]] = {}
    if calls:
        times, empty_times = _time_rotation(list(calls.values()), empty, warmup, runs, progress)
        # a layer's share: its call less the empty call of the same rounds (the median: preemption spikes
        # inflate a mean), never below 5% of its own call, so that noise cannot give a real layer no share
        base = sorted(empty_times)[len(empty_times) // 2]
        shares = {key: [max(t - base, 0.05 * t) for t in layer_times] for key, layer_times in zip(calls, times)}
    prepare_seconds = time.perf_counter() - started
    scaled: Dict[str, List[float]] = {}
    contexts: Dict[str, float] = {}
    attributed = 1.0
    for c, (name, chain) in enumerate(chains, start=1):
        shape = chain[0].input_shape
        if timer.runtime == "onnxruntime":
            data = chain_model([models[layer.key] for layer in chain]).SerializeToString()
            profiled = timer.onnx_call(data, shape, profile=True)
            _time_calls_raw(profiled, warmup + runs)
            per_run, share = timer.node_times(profiled, len(chain), warmup)
            attributed = min(attributed, share)
            del profiled
            whole = timer.onnx_call(data, shape)
        else:
            per_run = [list(values) for values in zip(*(shares[layer.key] for layer in chain))]
            cell = nn.SequentialCell([layer_cell(layer) for layer in chain])
            cell.set_train(False)
            whole = timer.prepare(cell, shape)
        measured = _time_calls(whole, warmup, runs)["mean"]
        del whole
        contexts[name] = measured
        total = math.fsum(math.fsum(run) for run in per_run) / len(per_run)
        scale = max(measured - overhead, 0.0) / total if total > 0 else 0.0
        for i, layer in enumerate(chain):
            scaled.setdefault(layer.key, []).extend(run[i] * scale for run in per_run)
        if progress:
            elapsed = time.perf_counter() - started - prepare_seconds
            _LOG.info("network %d/%d (%s): %.3f ms, split between its %d layers by their %s x %.2f "
                      "(elapsed %.0f s, ETA %.0f s)", c, len(chains), name, measured, len(chain),
                      "profiled times" if timer.runtime == "onnxruntime" else "times apart", scale, elapsed,
                      elapsed / c * (len(chains) - c))
    entries = {layer.key: _stats(scaled[layer.key]) for layer in layers}
    extra: Dict[str, Any] = {
        "call_overhead_ms": overhead,
        "call_overhead_note": "mean of an empty call; taken out of every network before it is split between its "
                              "layers, predict adds it once per network run",
        "contexts_ms": {name: round(ms, 6) for name, ms in contexts.items()},
        "context_note": "every layer timed inside whole networks of the measured layers (contexts_ms: each one's "
                        "time); a network's time less the call overhead is split between its layers by their "
                        + ("node-profile shares" if timer.runtime == "onnxruntime" else "own times in rotation")
                        + "; a layer in several networks has the mean",
        "prepare_seconds": round(prepare_seconds, 1)}
    if timer.runtime == "onnxruntime":
        extra["profile_named_share"] = round(attributed, 4)
    return entries, extra


def _time_apart(timer: "_Timer", layers: Sequence[Layer], order: str, progress: bool, subtract_overhead: bool,
                joins: bool, networks: Sequence[Any], num_classes: int, image_size: int,
                started: float) -> Tuple[Dict[str, Dict[str, float]], Dict[str, Any], Dict[str, float]]:
    """Entries of ``order="rotation"`` or ``"sequential"`` (see :func:`build_table`), ``_meta`` additions and
    the whole networks' times."""
    warmup, runs = timer.warmup, timer.runs
    empty = timer.empty_call()
    calls = []
    for i, layer in enumerate(layers, start=1):
        calls.append(timer.prepare(layer_cell(layer), layer.input_shape))
        if progress:
            _log_prepared(i, len(layers), timer.runtime, started)
    pairs = boundary_pairs(layers) if joins else {}
    for producer, consumer in pairs.values():
        calls.append(timer.prepare(pair_cell(producer, consumer), producer.input_shape))
    for spec in networks:
        calls.append(timer.prepare(network_cell(spec, num_classes), (1, spec.in_channels, image_size, image_size)))
    prepare_seconds = time.perf_counter() - started
    if order == "rotation":
        layer_times, empty_times = _time_rotation(calls, empty, warmup, runs, progress)
    else:
        layer_times, empty_times = [], []
        for i, call in enumerate(calls, start=1):
            times, empties = _time_rotation([call], empty, warmup, runs, False)
            layer_times.extend(times)
            empty_times.extend(empties)
            if progress and (i % 10 == 0 or i == len(calls)):
                elapsed = time.perf_counter() - started - prepare_seconds
                _LOG.info("timed %d/%d layers (elapsed %.0f s, ETA %.0f s)", i, len(calls), elapsed,
                          elapsed / i * (len(calls) - i))
    overhead = _stats(empty_times)["mean"] if subtract_overhead else 0.0
    raw = {layer.key: _stats(times) for layer, times in zip(layers, layer_times)}
    entries: Dict[str, Dict[str, float]] = {key: {**record, "mean": max(record["mean"] - overhead, 0.0)}
                                            for key, record in raw.items()}
    for (key, (producer, consumer)), times in zip(pairs.items(), layer_times[len(layers):]):
        entries[key] = _boundary_record(raw[producer.key], raw[consumer.key], _stats(times), overhead)
    network_times = layer_times[len(layers) + len(pairs):]
    extra = {"call_overhead_ms": overhead,
             "call_overhead_note": "mean of an empty call timed before each layer call; subtracted from every "
                                   "mean, predict adds it once per network run",
             "boundaries": len(pairs),
             "boundary_note": "Boundary-tensor:HxWxC = producer + consumer timed alone - the two timed as one "
                              "graph (same order and runs); predict subtracts one per join between two layers",
             "prepare_seconds": round(prepare_seconds, 1)}
    return entries, extra, {spec.name: _stats(times)["mean"] for spec, times in zip(networks, network_times)}


def measure_network(spec, image_size: int, num_classes: int, runtime: str, threads: Optional[int], *,
                    warmup: int = 10, runs: int = 50) -> float:
    """End-to-end latency (ms, batch 1) of the whole network on ``runtime``, BN folded as exported."""
    from src.proxylessnas_mobile import ProxylessNAS

    _check_runtime(runtime, threads)
    timer = _Timer(runtime, threads, warmup, runs)
    try:
        shape = (1, spec.in_channels, image_size, image_size)
        if runtime == "mindspore":
            return timer.time_cell(network_cell(spec, num_classes), shape)["mean"]
        net = ProxylessNAS(spec, num_classes=num_classes)
        net.set_train(False)
        from src.export import export_network

        # the project's own export path: folded BN, reloaded and compared before it is used
        result = export_network(net, os.path.join(timer._work.name, "network"), "ONNX", 1, image_size)
        return timer.time_onnx(str(result.path), shape)["mean"]
    finally:
        timer.close()
