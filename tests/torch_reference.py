"""An independent PyTorch ProxylessNAS, built from an official ProxylessNASNets JSON config.

It serves as ground truth for weight conversion: its own module names give the
official (mit-han-lab) state_dict layout, and :func:`pytorchcv_state_dict`
renames that to the pytorchcv (osmr/imgclsmob) layout.  It reads the JSON
directly and shares no code with ``src/``, so a mapping mistake there is not
repeated here.
"""
from __future__ import annotations

import json
import math
from collections import OrderedDict
from pathlib import Path
from typing import Dict, List, Tuple

import torch
from torch import nn


class ConvBN(nn.Module):
    """conv (no bias) -> BN -> optional ReLU6, named like the official ``ConvLayer``."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, groups: int, act: bool, eps: float):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=eps)
        self.act = nn.ReLU6() if act else nn.Identity()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class MBConvLayer(nn.Module):
    """The official ``MBInvertedConvLayer`` (module names included)."""

    def __init__(self, conf: dict, eps: float):
        super().__init__()
        cin, cout, k = conf["in_channels"], conf["out_channels"], conf["kernel_size"]
        mid = round(cin * conf["expand_ratio"])
        self.inverted_bottleneck = ConvBN(cin, mid, 1, 1, 1, True, eps) if conf["expand_ratio"] != 1 else None
        self.depth_conv = ConvBN(mid, mid, k, conf["stride"], mid, True, eps)
        self.point_linear = ConvBN(mid, cout, 1, 1, 1, False, eps)

    def forward(self, x):
        if self.inverted_bottleneck is not None:
            x = self.inverted_bottleneck(x)
        return self.point_linear(self.depth_conv(x))


class Block(nn.Module):
    """``MobileInvertedResidualBlock``: a Zero layer with a shortcut passes its input through."""

    def __init__(self, conf: dict, eps: float):
        super().__init__()
        layer = conf["mobile_inverted_conv"]
        self.is_zero = layer["name"] == "ZeroLayer"
        self.mobile_inverted_conv = None if self.is_zero else MBConvLayer(layer, eps)
        self.has_shortcut = conf["shortcut"] is not None

    def forward(self, x):
        if self.is_zero:
            return x
        y = self.mobile_inverted_conv(x)
        return x + y if self.has_shortcut else y


class Classifier(nn.Module):
    def __init__(self, conf: dict):
        super().__init__()
        self.linear = nn.Linear(conf["in_features"], conf["out_features"], bias=True)

    def forward(self, x):
        return self.linear(x)


class TorchProxylessNAS(nn.Module):
    """ProxylessNAS from its JSON config; ``state_dict()`` is in the official layout."""

    def __init__(self, config: dict):
        super().__init__()
        self.config = config
        eps = config["bn"]["eps"]
        first, mix = config["first_conv"], config["feature_mix_layer"]
        self.first_conv = ConvBN(first["in_channels"], first["out_channels"], first["kernel_size"],
                                 first["stride"], 1, True, eps)
        self.blocks = nn.ModuleList(Block(b, eps) for b in config["blocks"])
        self.feature_mix_layer = ConvBN(mix["in_channels"], mix["out_channels"], 1, 1, 1, True, eps)
        self.classifier = Classifier(config["classifier"])

    def forward(self, x):
        x = self.first_conv(x)
        for block in self.blocks:
            x = block(x)
        x = self.feature_mix_layer(x)
        return self.classifier(x.mean(dim=(2, 3)))


def load_config(path: Path) -> dict:
    """The JSON document of an official ``.config`` file."""
    return json.loads(Path(path).read_text())


def randomize(model: TorchProxylessNAS, seed: int = 0, size: int = 64) -> TorchProxylessNAS:
    """Random weights AND random BN statistics, so that a swapped or missed tensor changes the logits.

    Statistics drawn blindly make a deep net saturate (every ReLU6 at 0 or 6, logits
    independent of the input, and a comparison of them meaningless).  So each BN's
    statistics are set, in eval mode and layer after layer, to randomly perturbed
    moments of what that BN actually receives on a random calibration batch.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                k = module.kernel_size[0]
                std = math.sqrt(2.0 / (k * k * module.out_channels))  # the official 'he_fout'
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * std)
            elif isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(0.5 + torch.rand(n, generator=gen))
                module.bias.copy_(0.2 * torch.randn(n, generator=gen))
                module.num_batches_tracked.fill_(1234)
            elif isinstance(module, nn.Linear):
                bound = 1.0 / math.sqrt(module.in_features)
                module.weight.copy_((torch.rand(module.weight.shape, generator=gen) * 2 - 1) * 4 * bound)
                module.bias.copy_(torch.randn(module.bias.shape, generator=gen))

    def set_statistics(bn: nn.BatchNorm2d, inputs: tuple) -> None:
        x = inputs[0]
        mean, var = x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3))
        n = bn.num_features
        bn.running_mean.copy_(mean + 0.2 * var.sqrt() * torch.randn(n, generator=gen))
        bn.running_var.copy_(var * (0.6 + 0.8 * torch.rand(n, generator=gen)) + 1e-2)

    model.eval()
    hooks = [m.register_forward_pre_hook(set_statistics) for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    try:
        with torch.no_grad():
            channels = model.first_conv.conv.in_channels
            model(torch.randn((4, channels, size, size), generator=gen))
    finally:
        for hook in hooks:
            hook.remove()
    return model


def build(config_path: Path, seed: int = 0) -> TorchProxylessNAS:
    """A randomized reference network in eval mode."""
    return randomize(TorchProxylessNAS(load_config(config_path)), seed)


def pytorchcv_names(config: dict) -> List[Tuple[str, str]]:
    """(official prefix, pytorchcv prefix) of every conv+BN layer and of the classifier."""
    pairs = [("first_conv", "features.init_block")]
    stage, unit = 0, 0
    for i, block in enumerate(config["blocks"]):
        layer = block["mobile_inverted_conv"]
        # pytorchcv: the first block is stage 1 by itself; every stride-2 block opens a new stage
        if i == 0 or layer.get("stride", 1) == 2:
            stage, unit = stage + 1, 0
        unit += 1
        if layer["name"] == "ZeroLayer":
            continue
        for official, cv in (("inverted_bottleneck", "bc_conv"), ("depth_conv", "dw_conv"),
                             ("point_linear", "pw_conv")):
            pairs.append((f"blocks.{i}.mobile_inverted_conv.{official}",
                          f"features.stage{stage}.unit{unit}.body.{cv}"))
    pairs += [("feature_mix_layer", "features.final_block"), ("classifier.linear", "output")]
    return pairs


def pytorchcv_state_dict(model: TorchProxylessNAS) -> "OrderedDict[str, torch.Tensor]":
    """The model's weights under pytorchcv's names (PyTorch BN names kept)."""
    renames = pytorchcv_names(model.config)
    out = OrderedDict()
    for key, value in model.state_dict().items():
        prefix = next(p for p, _ in renames if key.startswith(p + "."))
        out[dict(renames)[prefix] + key[len(prefix):]] = value
    return out


def modelzoo_weights(model: TorchProxylessNAS) -> Dict[str, torch.Tensor]:
    """The model's weights under MindSpore ModelZoo names: pytorchcv names with MindSpore BN names."""
    bn = {"bn.weight": "bn.gamma", "bn.bias": "bn.beta", "bn.running_mean": "bn.moving_mean",
          "bn.running_var": "bn.moving_variance"}
    out = {}
    for key, value in pytorchcv_state_dict(model).items():
        if key.endswith("num_batches_tracked"):
            continue
        for old, new in bn.items():
            if key.endswith("." + old):
                key = key[: -len(old)] + new
        out[key] = value
    return out
