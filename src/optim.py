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


_nesterov_update = ms.ops.MultitypeFuncGraph("nesterov_update")


@_nesterov_update.register("Tensor", "Tensor", "Tensor", "Tensor", "Tensor")
def _nesterov_tensor(momentum, learning_rate, gradient, weight, moment):
    """v <- m v + g;  w <- w - lr (g + m v): both from the old values, then assigned."""
    velocity = momentum * moment + gradient
    update = learning_rate * (gradient + momentum * velocity)
    return ms.ops.depend(ms.ops.assign(weight, weight - update), ms.ops.assign(moment, velocity))


class NesterovMomentum(nn.Momentum):
    """``nn.Momentum`` with Nesterov momentum computed by elementwise ops.

    MindSpore 2.10's CPU ApplyMomentum kernel ignores ``use_nesterov`` (tests/test_optim.py shows it): on CPU
    this class gives the Nesterov update instead, with the same slots (``moments``), groups and loss scale.
    """

    def construct(self, gradients):
        gradients = self.decay_weight(gradients)
        gradients = self.gradients_centralization(gradients)
        gradients = self.scale_grad(gradients)
        lr = self.get_lr()
        self.assignadd(self.global_step, self.global_step_increase_tensor)
        if self.is_group_lr:
            return self.hyper_map_reverse(ms.ops.partial(_nesterov_update, self.momentum), lr, gradients,
                                          self.params, self.moments)
        return self.hyper_map_reverse(ms.ops.partial(_nesterov_update, self.momentum, lr), gradients, self.params,
                                      self.moments)


def create_optimizer(net: nn.Cell, config, lr: np.ndarray, loss_scale: float = 1.0) -> nn.Optimizer:
    """SGD with (Nesterov) momentum over a per-step learning-rate array."""
    kind = NesterovMomentum if config.nesterov and config.device_target == "CPU" else nn.Momentum
    return kind(decay_groups(net, config.weight_decay), learning_rate=ms.Tensor(lr), momentum=config.momentum,
                loss_scale=loss_scale, use_nesterov=config.nesterov)
