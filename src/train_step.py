"""The training step of train.py from a config: amp level, depthwise kernel, loss, optimizer and train cell.

The benchmark (benchmarks/run.py, training rows) builds its step with the same function.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

import mindspore as ms
from mindspore import nn

from src.loss import CrossEntropySmooth
from src.native_depthwise import apply_choice
from src.optim import create_optimizer, loss_scaling, resolve_amp_level


@dataclass
class TrainStep:
    """``train_net(images, labels)`` runs one step: a loss, or (loss, overflow[, scale]) with loss scaling."""

    net: nn.Cell
    optimizer: nn.Optimizer
    train_net: nn.Cell
    amp_level: str
    native_depthwise: bool


def build_train_step(config, lr: np.ndarray, net: Optional[nn.Cell] = None) -> TrainStep:
    """Network (``net``, else a new one of ``config.arch``), label-smoothed loss, SGD over the per-step ``lr``,
    mixed precision and loss scaling for the device, wrapped into a train cell in training mode."""
    if net is None:
        from src.proxylessnas_mobile import create_model

        net = create_model(config.arch, config.num_classes, dropout_rate=config.dropout_rate)
    amp_level = resolve_amp_level(config)
    # before the first step compiles the graph: the native CPU depthwise kernel, if chosen and available
    native = apply_choice(net, config.depthwise_kernel, config.device_target, amp_level)
    manager, optimizer_scale = loss_scaling(config, amp_level)
    optimizer = create_optimizer(net, config, lr, optimizer_scale)
    loss_fn = CrossEntropySmooth(config.num_classes, config.label_smoothing)
    kwargs = {"loss_scale_manager": manager} if manager is not None else {}
    train_net = ms.amp.build_train_network(net, optimizer, loss_fn, level=amp_level, **kwargs)
    train_net.set_train(True)
    return TrainStep(net, optimizer, train_net, amp_level, bool(native))
