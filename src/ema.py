"""Exponential moving average of a network's weights: the update, its own checkpoint, its evaluation copy."""
from __future__ import annotations

from typing import Any, Dict, List

import mindspore as ms
from mindspore import nn, ops

PREFIX = "ema."


def ema_decay_at(decay: float, step: int) -> float:
    """The decay used at global step ``step``: lower at the start, so the average forgets the random init fast."""
    return min(decay, (1 + step) / (10 + step))


class EMA(nn.Cell):
    """Exponential moving average of all parameters (BN statistics included), stored as ``ema.<name>``."""

    def __init__(self, net: nn.Cell):
        super().__init__()
        self.params = ms.ParameterTuple(net.get_parameters())
        self.shadow = self.params.clone(prefix="ema", init="same")
        for p in self.shadow:
            p.requires_grad = False

    def construct(self, decay):
        for s, p in zip(self.shadow, self.params):
            ops.assign(s, s * decay + ops.cast(p, s.dtype) * (1 - decay))
        return decay

    def update(self, decay: float, step: int) -> None:
        """One averaging step after training step ``step`` (see :func:`ema_decay_at`)."""
        self(ms.Tensor(ema_decay_at(decay, step), ms.float32))

    def weights(self) -> List[Dict[str, Any]]:
        """The averaged weights under the network's own names: a plain checkpoint eval.py and export.py read."""
        return [{"name": p.name[len(PREFIX):], "data": p} for p in self.shadow]

    def copy_to(self, net: nn.Cell) -> nn.Cell:
        """Load the averaged weights into ``net`` (a network of the same architecture) to evaluate them."""
        own = {p.name: p for p in net.get_parameters()}
        for p in self.shadow:
            own[p.name[len(PREFIX):]].set_data(p.value())
        return net
