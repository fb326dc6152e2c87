"""Inference-only rewrites of a trained network that keep its outputs.

:func:`fold_batchnorm` folds every BatchNorm (eval mode: fixed statistics) into the convolution in
front of it.  ``conv -> BN -> ReLU6`` becomes ``conv with bias -> ReLU6``: about a third fewer
operators and one pass less over every activation, which is what dominates CPU inference at small
batches.  The result is for inference and export only: folded statistics cannot be trained.
"""
from __future__ import annotations

import logging
from typing import Tuple

import numpy as np
import mindspore as ms
from mindspore import nn

from src.proxylessnas_mobile import ConvBNAct, ProxylessNAS

_LOG = logging.getLogger(__name__)


class ConvAct(nn.Cell):
    """Conv with bias -> optional ReLU6: a :class:`ConvBNAct` with its BatchNorm folded in."""

    def __init__(self, conv: nn.Conv2d, weight: np.ndarray, bias: np.ndarray, act: bool):
        super().__init__()
        self.conv = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                              pad_mode=conv.pad_mode, padding=conv.padding, dilation=conv.dilation,
                              group=conv.group, has_bias=True, weight_init=ms.Tensor(weight),
                              bias_init=ms.Tensor(bias))
        self.act = nn.ReLU6() if act else None
        # src/native_depthwise.py: conv + bias (+ ReLU6) in one native call for depthwise convs and the
        # first layer; a 1x1 conv in front of a native depthwise one can leave its bias and ReLU6 to it
        # (``deferred``; the depthwise conv then has them as ``input_bias``)
        self.native = None
        self.deferred = False
        self.input_bias = None

    def construct(self, x):
        if self.native is not None:
            if self.input_bias is not None:
                return self.native(x, self.conv.weight, self.conv.bias, self.input_bias)
            return self.native(x, self.conv.weight, self.conv.bias)
        if self.deferred:
            return self.conv.conv2d(x, self.conv.weight)
        x = self.conv(x)
        if self.act is not None:
            x = self.act(x)
        return x


def folded_weights(block: ConvBNAct) -> Tuple[np.ndarray, np.ndarray]:
    """Weight and bias of the conv that computes ``bn(conv(x))`` of ``block`` in eval mode."""
    bn = block.bn
    weight = block.conv.weight.asnumpy().astype(np.float64)
    gamma, beta = bn.gamma.asnumpy().astype(np.float64), bn.beta.asnumpy().astype(np.float64)
    mean, var = bn.moving_mean.asnumpy().astype(np.float64), bn.moving_variance.asnumpy().astype(np.float64)
    scale = gamma / np.sqrt(var + bn.eps)
    # output channels are axis 0 for plain and depthwise convs alike (OIHW, depthwise: mid x 1 x k x k)
    return ((weight * scale[:, None, None, None]).astype(np.float32),
            (beta - mean * scale).astype(np.float32))


def _fold(block: ConvBNAct) -> ConvAct:
    weight, bias = folded_weights(block)
    return ConvAct(block.conv, weight, bias, act=block.act is not None)


def fold_in_place(cell: nn.Cell) -> Tuple[nn.Cell, int]:
    """``cell`` with every ConvBNAct inside it (or ``cell`` itself, if one) replaced by its BN-folded ConvAct,
    and how many were replaced; ``cell`` itself is changed (see :func:`fold_batchnorm` for a copy)."""
    if isinstance(cell, ConvBNAct):
        return _fold(cell), 1
    count = 0
    for _, parent in list(cell.cells_and_names()):
        for name, child in list(parent.name_cells().items()):
            if not isinstance(child, ConvBNAct):
                continue
            replacement = _fold(child)
            if isinstance(parent, nn.SequentialCell):
                parent[list(parent.name_cells()).index(name)] = replacement
            else:
                setattr(parent, name, replacement)
            count += 1
    return cell, count


def fold_batchnorm(net: ProxylessNAS) -> ProxylessNAS:
    """A new network, in eval mode, whose convs carry the BatchNorms of ``net`` folded in; ``net`` is unchanged."""
    folded = ProxylessNAS(net.spec, num_classes=net.num_classes, dropout_rate=net.dropout_rate)
    ms.load_param_into_net(folded, {p.name: ms.Parameter(p.data.copy(), name=p.name) for p in net.get_parameters()},
                           strict_load=True)
    folded, count = fold_in_place(folded)
    # a cell swapped in after construction only knows its local prefix: give every parameter its full path
    for path, param in folded.parameters_and_names():
        param.name = path
    folded.set_train(False)
    _LOG.debug("folded %d BatchNorms into their convolutions", count)
    return folded
