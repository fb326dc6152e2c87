"""Multiply-adds and parameter counts of a network, from its NetSpec alone (no framework needed).

MACs count the multiply-adds of convolutions and the classifier (as the paper and the official code
report them: 320 M for ProxylessNAS-Mobile at 224); BatchNorm, activations, shortcuts and pooling are
not counted. Parameters are the trainable ones: conv weights, BatchNorm gamma/beta, classifier weight
and bias (4,080,512 for ProxylessNAS-Mobile with 1000 classes).
"""
from __future__ import annotations

from typing import Tuple

from src.arch import BlockSpec, NetSpec
from src.latency import out_size


def conv_macs(in_size: int, in_channels: int, out_channels: int, kernel: int, stride: int = 1,
              groups: int = 1) -> int:
    """Multiply-adds of one 'same'-padded conv at batch 1."""
    side = out_size(in_size, stride)
    return side * side * kernel * kernel * (in_channels // groups) * out_channels


def block_macs(block: BlockSpec, in_size: int) -> int:
    """Multiply-adds of one MBConv block at batch 1 (0 for a Zero block)."""
    if block.zero:
        return 0
    mid = block.mid_channels
    macs = 0
    if block.expand_ratio != 1:
        macs += conv_macs(in_size, block.in_channels, mid, 1)
    macs += conv_macs(in_size, mid, mid, block.kernel_size, block.stride, groups=mid)
    macs += conv_macs(out_size(in_size, block.stride), mid, block.out_channels, 1)
    return macs


def block_params(block: BlockSpec) -> int:
    """Trainable parameters of one MBConv block (conv weights + BatchNorm gamma/beta)."""
    if block.zero:
        return 0
    mid = block.mid_channels
    params = 0
    if block.expand_ratio != 1:
        params += block.in_channels * mid + 2 * mid
    params += block.kernel_size * block.kernel_size * mid + 2 * mid
    params += mid * block.out_channels + 2 * block.out_channels
    return params


def net_macs_params(spec: NetSpec, image_size: int = 224, num_classes: int = 1000) -> Tuple[int, int]:
    """(multiply-adds, trainable parameters) of a whole network at batch 1."""
    size = image_size
    macs = conv_macs(size, spec.in_channels, spec.stem_channels, spec.stem_kernel, spec.stem_stride)
    params = spec.stem_kernel * spec.stem_kernel * spec.in_channels * spec.stem_channels + 2 * spec.stem_channels
    size = out_size(size, spec.stem_stride)
    for block in spec.blocks:
        macs += block_macs(block, size)
        params += block_params(block)
        size = out_size(size, block.stride)
    macs += conv_macs(size, spec.last_channels, spec.head_channels, 1)
    params += spec.last_channels * spec.head_channels + 2 * spec.head_channels
    macs += spec.head_channels * num_classes
    params += spec.head_channels * num_classes + num_classes
    return macs, params
