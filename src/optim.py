"""Optimizer, weight-decay groups, mixed precision and loss scaling per device."""
from __future__ import annotations

import logging
from typing import List, Tuple

import numpy as np
import mindspore as ms
from mindspore import nn
from mindspore.amp import DynamicLossScaleManager, FixedLossScaleManager

_LOG = logging.getLogger(__name__)

AMP_AUTO = {"Ascend": "O3", "GPU": "O2", "CPU": "O0"}


def decay_groups(net: nn.Cell, weight_decay: float) -> List[dict]:
    """Parameter groups: conv/dense weights decay; BN gamma/beta and all biases do not.

    Each group carries its own ``weight_decay`` key: without it MindSpore applies the
    optimizer-wide value to the group (the seed's exclusion had no effect because of that).
    """
    decay, no_decay = [], []
    for p in net.trainable_params():
        (no_decay if p.name.endswith(("gamma", "beta", "bias")) else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
            {"order_params": net.trainable_params()}]


def resolve_amp_level(config) -> str:
    """The amp level to use: ``auto`` picks O3 on Ascend, O2 on GPU, O0 on CPU."""
    return AMP_AUTO[config.device_target] if config.amp_level == "auto" else config.amp_level


def loss_scaling(config, amp_level: str) -> Tuple[object, float]:
    """Loss-scale manager and the matching optimizer loss_scale for this device.

    Ascend/GPU: dynamic scaling (overflowed steps are skipped); the optimizer sees scale 1.
    CPU accepts only a fixed scale that never drops updates, and the optimizer must divide
    the gradients by the same value.
    """
    if amp_level == "O0":
        return None, 1.0
    if config.device_target == "CPU":
        return FixedLossScaleManager(config.loss_scale, drop_overflow_update=False), float(config.loss_scale)
    return DynamicLossScaleManager(init_loss_scale=config.loss_scale, scale_factor=2, scale_window=2000), 1.0


def create_optimizer(net: nn.Cell, config, lr: np.ndarray, loss_scale: float = 1.0) -> nn.Optimizer:
    """SGD with (Nesterov) momentum over a per-step learning-rate array."""
    return nn.Momentum(decay_groups(net, config.weight_decay), learning_rate=ms.Tensor(lr), momentum=config.momentum,
                       loss_scale=loss_scale, use_nesterov=config.nesterov)
