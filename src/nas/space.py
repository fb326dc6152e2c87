"""The official ProxylessNAS search space at one input size (mit-han-lab/proxylessnas, search/ defaults).

Stem 3->32 stride 2, a fixed first block (MBConv e1 k3 32->16), then 21 mixed cells in stages of widths
24, 40, 80, 96, 192, 320 (4, 4, 4, 4, 4, 1 cells; first strides 2, 2, 2, 1, 2, 1). Every cell chooses one of
3x3/5x5/7x7 x MBConv3/MBConv6, plus Zero (skip the block) where the cell has stride 1 and equal widths,
1x1 feature mix to 1280, classifier. ``width_mult`` scales the widths as the official supernet does.

The latency branch adds the same space to ``src/latency.py`` (``default_space``); this module keeps the
search working until that lands and then only forwards to it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from src.arch import BlockSpec, NetSpec, group_stages
from src.errors import UserError
from src.latency import out_size

WIDTHS = (24, 40, 80, 96, 192, 320)
CELLS = (4, 4, 4, 4, 4, 1)
STRIDES = (2, 2, 2, 1, 2, 1)
CANDIDATES: Tuple[Tuple[int, int], ...] = ((3, 3), (3, 6), (5, 3), (5, 6), (7, 3), (7, 6))
STEM, FIRST_BLOCK, HEAD = 32, 16, 1280


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a width to a multiple of ``divisor`` (one step up if rounding lost more than 10%), as the official code."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


@dataclass(frozen=True)
class CellSpace:
    """One mixed cell: input side and widths, stride, MBConv candidates (kernel, expand), Zero allowed."""

    in_size: int
    in_channels: int
    out_channels: int
    stride: int
    candidates: Tuple[Tuple[int, int], ...]
    zero: bool

    @property
    def shortcut(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels

    @property
    def op_names(self) -> List[str]:
        """Names of the choices in order, official style: ``3x3_MBConv3`` ... and ``Zero`` last."""
        return [f"{k}x{k}_MBConv{e}" for k, e in self.candidates] + (["Zero"] if self.zero else [])

    def block(self, choice: int) -> BlockSpec:
        """The block of one choice (an index into ``op_names``)."""
        if choice == len(self.candidates):
            return BlockSpec(self.in_channels, self.in_channels, zero=True)
        kernel, expand = self.candidates[choice]
        return BlockSpec(self.in_channels, self.out_channels, kernel, self.stride, expand)


@dataclass(frozen=True)
class SearchSpace:
    """Fixed stem and first block, the mixed cells, fixed feature mix and classifier."""

    image_size: int
    num_classes: int
    width_mult: float
    stem_channels: int
    first_block_channels: int
    cells: Tuple[CellSpace, ...]
    head_channels: int

    @property
    def stem_size(self) -> int:
        return out_size(self.image_size, 2)

    @property
    def first_block(self) -> BlockSpec:
        return BlockSpec(self.stem_channels, self.first_block_channels, 3, 1, 1)

    @property
    def last_channels(self) -> int:
        return self.cells[-1].out_channels

    @property
    def feature_size(self) -> int:
        return out_size(self.cells[-1].in_size, self.cells[-1].stride)

    def spec(self, choices: Sequence[int], name: str = "searched") -> NetSpec:
        """The network with one choice (index into the cell's ``op_names``) per cell."""
        if len(choices) != len(self.cells):
            raise UserError(f"{len(choices)} choices for {len(self.cells)} cells of the search space")
        blocks = [self.first_block] + [cell.block(int(c)) for cell, c in zip(self.cells, choices)]
        return NetSpec(stem_channels=self.stem_channels, head_channels=self.head_channels,
                       stages=group_stages(blocks), name=name)


def default_space(image_size: int = 224, width_mult: float = 1.0, num_classes: int = 1000,
                  candidates: Optional[Sequence[Tuple[int, int]]] = None) -> SearchSpace:
    """The official search space at this input size (``candidates`` narrows the MBConv choices, for tests)."""
    if not width_mult > 0:
        raise UserError(f"--width_mult must be > 0, got {width_mult!r}")
    candidates = tuple(tuple(c) for c in (candidates or CANDIDATES))
    stem = make_divisible(STEM * width_mult)
    first = make_divisible(FIRST_BLOCK * width_mult)
    head = make_divisible(HEAD * width_mult) if width_mult > 1.0 else HEAD
    size, channels = out_size(image_size, 2), first
    cells = []
    for width, count, stage_stride in zip(WIDTHS, CELLS, STRIDES):
        width = make_divisible(width * width_mult)
        for i in range(count):
            stride = stage_stride if i == 0 else 1
            cells.append(CellSpace(size, channels, width, stride, candidates, stride == 1 and channels == width))
            size, channels = out_size(size, stride), width
    return SearchSpace(int(image_size), int(num_classes), float(width_mult), stem, first, tuple(cells), head)
