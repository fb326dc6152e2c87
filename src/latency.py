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
"""
from __future__ import annotations

from typing import Union

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
