"""ProxylessNAS networks in MindSpore, built from a :class:`~src.arch.NetSpec`.

Paper: Han Cai, Ligeng Zhu, Song Han. "ProxylessNAS: Direct Neural Architecture
Search on Target Task and Hardware", ICLR 2019, https://arxiv.org/abs/1812.00332

Parameter names follow the MindSpore ModelZoo checkpoints of this model
(``features.init_block.conv.weight``, ``features.stage2.unit1.body.bc_conv.bn.gamma``,
``features.final_block...``, ``output.weight``), so those checkpoints load as they are.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional, Union

import mindspore.nn as nn
from mindspore import ops
from mindspore.common.initializer import Normal, Uniform, Zero

from src.arch import NetSpec, BlockSpec, get_arch, resolve_arch, spec_to_config
from src.errors import UserError

BN_MOMENTUM = 0.9  # MindSpore convention: PyTorch's momentum 0.1


class ConvBNAct(nn.Cell):
    """Bias-free conv -> BatchNorm -> optional ReLU6."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 groups: int = 1, act: bool = True, bn_eps: float = 1e-3):
        super().__init__()
        # 'he_fout' of the official code: N(0, sqrt(2 / (k * k * out_channels)))
        std = math.sqrt(2.0 / (kernel_size * kernel_size * out_channels))
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, pad_mode="pad",
                              padding=kernel_size // 2, group=groups, has_bias=False, weight_init=Normal(std))
        self.bn = nn.BatchNorm2d(out_channels, eps=bn_eps, momentum=BN_MOMENTUM)
        self.act = nn.ReLU6() if act else None
        # the native CPU depthwise kernel (src/native_depthwise.py) when switched on; same weight, same result
        self.native = None

    def construct(self, x):
        if self.native is not None:
            x = self.bn(self.native(x, self.conv.weight))
        else:
            x = self.bn(self.conv(x))
        if self.act is not None:
            x = self.act(x)
        return x


class MBConv(nn.Cell):
    """Mobile inverted bottleneck: [1x1 expand] -> kxk depthwise -> 1x1 linear projection."""

    def __init__(self, block: BlockSpec, bn_eps: float = 1e-3):
        super().__init__()
        mid = block.mid_channels
        self.bc_conv = ConvBNAct(block.in_channels, mid, 1, bn_eps=bn_eps) if block.expand_ratio != 1 else None
        self.dw_conv = ConvBNAct(mid, mid, block.kernel_size, block.stride, groups=mid, bn_eps=bn_eps)
        self.pw_conv = ConvBNAct(mid, block.out_channels, 1, act=False, bn_eps=bn_eps)

    def construct(self, x):
        if self.bc_conv is not None:
            x = self.bc_conv(x)
        return self.pw_conv(self.dw_conv(x))


class ProxylessUnit(nn.Cell):
    """One searched block: MBConv with identity shortcut when shapes allow."""

    def __init__(self, block: BlockSpec, bn_eps: float = 1e-3):
        super().__init__()
        self.body = MBConv(block, bn_eps)
        self.shortcut = block.shortcut

    def construct(self, x):
        if self.shortcut:
            return x + self.body(x)
        return self.body(x)


class ZeroUnit(nn.Cell):
    """A "Zero" block with identity shortcut: the block is skipped."""

    def construct(self, x):
        return x


class ProxylessNAS(nn.Cell):
    """A ProxylessNAS network for any input size that is a multiple of 32."""

    def __init__(self, spec: NetSpec, num_classes: int = 1000, dropout_rate: float = 0.0):
        super().__init__()
        if num_classes < 1:
            raise UserError(f"num_classes must be >= 1, got {num_classes}")
        if not 0.0 <= dropout_rate < 1.0:
            raise UserError(f"dropout_rate must be in [0, 1), got {dropout_rate}")
        self.spec = spec
        self.num_classes = num_classes
        self.dropout_rate = dropout_rate
        eps = spec.bn_eps
        features: "OrderedDict[str, nn.Cell]" = OrderedDict()
        features["init_block"] = ConvBNAct(spec.in_channels, spec.stem_channels, spec.stem_kernel,
                                           spec.stem_stride, bn_eps=eps)
        for s, stage in enumerate(spec.stages, start=1):
            units = OrderedDict((f"unit{u}", ZeroUnit() if b.zero else ProxylessUnit(b, eps))
                                for u, b in enumerate(stage, start=1))
            features[f"stage{s}"] = nn.SequentialCell(units)
        features["final_block"] = ConvBNAct(spec.last_channels, spec.head_channels, 1, bn_eps=eps)
        self.features = nn.SequentialCell(features)
        self.dropout = nn.Dropout(p=dropout_rate) if dropout_rate > 0 else None
        bound = 1.0 / math.sqrt(spec.head_channels)
        self.output = nn.Dense(spec.head_channels, num_classes, weight_init=Uniform(bound), bias_init=Zero())

    def forward_features(self, x):
        """Pooled features before the classifier, shape (N, head_channels)."""
        # A mean over H and W works for any input size and exports to ONNX (ReduceMean).
        return ops.mean(self.features(x), (2, 3))

    def construct(self, x):
        x = self.forward_features(x)
        if self.dropout is not None:
            x = self.dropout(x)
        return self.output(x)

    def to_config(self) -> Dict[str, Any]:
        """This network in the official ProxylessNASNets JSON format."""
        return spec_to_config(self.spec, self.num_classes, self.dropout_rate)


# ---------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------
_MODELS: Dict[str, Callable[..., ProxylessNAS]] = {}


def _register(name: str) -> Callable[..., ProxylessNAS]:
    def factory(num_classes: int = 1000, dropout_rate: float = 0.0) -> ProxylessNAS:
        return ProxylessNAS(get_arch(name), num_classes=num_classes, dropout_rate=dropout_rate)

    factory.__name__ = name
    factory.__doc__ = f"{name}: ProxylessNAS (Cai et al., ICLR 2019) built from its table in src/arch.py."
    _MODELS[name] = factory
    return factory


proxylessnas_mobile = _register("proxylessnas_mobile")
proxylessnas_mobile_14 = _register("proxylessnas_mobile_14")
proxylessnas_cpu = _register("proxylessnas_cpu")
proxylessnas_gpu = _register("proxylessnas_gpu")


def list_models() -> List[str]:
    """Names accepted by :func:`create_model`."""
    return sorted(_MODELS)


def create_model(name: Union[str, Dict[str, Any]] = "proxylessnas_mobile", num_classes: Optional[int] = None,
                 dropout_rate: float = 0.0, **options: Any) -> ProxylessNAS:
    """Build a registered variant, or a network from an official ``ProxylessNASNets`` JSON file or document.

    ``name`` is a registered name (see :func:`list_models`), a path ending in ``.config``/``.json``, or such
    a document as a dict (a checkpoint's description holds one, see :mod:`src.description`).
    ``num_classes`` defaults to the classifier size written in such a file, else 1000 (ImageNet).
    """
    if options:
        raise UserError(f"create_model got unknown options {sorted(options)}: valid are num_classes, dropout_rate")
    if isinstance(name, str) and name in _MODELS:
        return _MODELS[name](num_classes=1000 if num_classes is None else num_classes, dropout_rate=dropout_rate)
    spec, written = resolve_arch(name)  # an official config file, or the error naming the valid names
    classes = num_classes if num_classes is not None else (written or 1000)
    return ProxylessNAS(spec, num_classes=classes, dropout_rate=dropout_rate)

