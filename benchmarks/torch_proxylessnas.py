"""ProxylessNAS in PyTorch, built from this project's NetSpec, for side-by-side benchmarks.

Module names follow pytorchcv (``features.stageS.unitU.body.{bc_conv,dw_conv,pw_conv}``,
``output``), so its ``state_dict`` converts to this project's checkpoints with
``src.convert.convert(tensors, spec, "pytorchcv")``: both frameworks then run the same weights.
The tests keep their own independent reference (``tests/torch_reference.py``, built from the
official JSON); this one only has to compute the same thing fast, the way a PyTorch user would.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Dict

import numpy as np
import torch
from torch import nn

from src.arch import BlockSpec, NetSpec


class ConvBNAct(nn.Module):
    """conv (no bias) -> BN -> optional ReLU6."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True,
                 eps: float = 1e-3):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=eps)
        self.act = nn.ReLU6(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class MBConv(nn.Module):
    """[1x1 expand] -> kxk depthwise -> 1x1 linear projection."""

    def __init__(self, b: BlockSpec, eps: float):
        super().__init__()
        mid = b.mid_channels
        self.bc_conv = ConvBNAct(b.in_channels, mid, 1, eps=eps) if b.expand_ratio != 1 else None
        self.dw_conv = ConvBNAct(mid, mid, b.kernel_size, b.stride, groups=mid, eps=eps)
        self.pw_conv = ConvBNAct(mid, b.out_channels, 1, act=False, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bc_conv is not None:
            x = self.bc_conv(x)
        return self.pw_conv(self.dw_conv(x))


class Unit(nn.Module):
    """MBConv with an identity shortcut where shapes allow; a Zero block passes its input through."""

    def __init__(self, b: BlockSpec, eps: float):
        super().__init__()
        self.body = None if b.zero else MBConv(b, eps)
        self.shortcut = b.shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.body is None:
            return x
        return x + self.body(x) if self.shortcut else self.body(x)


class TorchProxylessNAS(nn.Module):
    """The network of a NetSpec, named like pytorchcv."""

    def __init__(self, spec: NetSpec, num_classes: int = 1000):
        super().__init__()
        eps = spec.bn_eps
        features: "OrderedDict[str, nn.Module]" = OrderedDict()
        features["init_block"] = ConvBNAct(spec.in_channels, spec.stem_channels, spec.stem_kernel,
                                           spec.stem_stride, eps=eps)
        for s, stage in enumerate(spec.stages, start=1):
            features[f"stage{s}"] = nn.Sequential(OrderedDict(
                (f"unit{u}", Unit(b, eps)) for u, b in enumerate(stage, start=1)))
        features["final_block"] = ConvBNAct(spec.last_channels, spec.head_channels, 1, eps=eps)
        self.features = nn.Sequential(features)
        self.output = nn.Linear(spec.head_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.features(x).mean(dim=(2, 3)))


def randomize(model: TorchProxylessNAS, image_size: int, seed: int = 0) -> TorchProxylessNAS:
    """Random weights and BN statistics calibrated on a random batch, so activations stay O(1) end to end.

    Fresh initialisation shrinks activations towards zero layer after layer (logits ~1e-10); timing
    such a network could hit denormal arithmetic, which trained weights never do.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * math.sqrt(2.0 / fan_in))
            elif isinstance(module, nn.BatchNorm2d):
                module.weight.copy_(0.5 + torch.rand(module.num_features, generator=gen))
                module.bias.copy_(0.1 * torch.randn(module.num_features, generator=gen))
            elif isinstance(module, nn.Linear):
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen) / math.sqrt(module.in_features))
                module.bias.zero_()

    def calibrate(bn: nn.BatchNorm2d, inputs: tuple) -> None:
        x = inputs[0]
        bn.running_mean.copy_(x.mean(dim=(0, 2, 3)))
        bn.running_var.copy_(x.var(dim=(0, 2, 3)) + 1e-3)

    model.eval()
    hooks = [m.register_forward_pre_hook(calibrate) for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    try:
        with torch.no_grad():
            model(torch.randn((4, 3, image_size, image_size), generator=gen))
    finally:
        for hook in hooks:
            hook.remove()
    return model


def numpy_state_dict(model: nn.Module) -> Dict[str, np.ndarray]:
    """The state_dict as numpy arrays (pytorchcv names)."""
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
