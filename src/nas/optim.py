"""The two optimisers of the search.

Weights: SGD with (Nesterov) momentum and weight decay, applied only to the parameters of the sampled
paths. The official code sets every candidate's gradient to None before a weight step, so an unsampled op
keeps its momentum buffer and gets no weight decay; ``nn.Momentum`` would move every parameter it holds
(momentum and decay act on a zero gradient too), hence a per-step list here.

Alphas: Adam (lr 1e-3, betas (0, 0.999), eps 1e-8, no weight decay) with PyTorch's per-parameter state: an
edge whose gradient is None in a step (its active op was Zero) keeps its step count and second moment
untouched. 141 numbers: the update runs in numpy (float64), the gradients come from MindSpore. In ``two``
mode the pair is rescaled after the step so that the ops outside the pair keep their probability.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import mindspore as ms
from mindspore import ops


class PathSGD:
    """SGD with momentum over a fixed set of parameters, stepping only the ones passed to :meth:`step`."""

    def __init__(self, params: Sequence[ms.Parameter], momentum: float = 0.9, weight_decay: float = 4e-5,
                 nesterov: bool = True):
        self.momentum = float(momentum)
        self.weight_decay = float(weight_decay)
        self.moments: Dict[str, ms.Parameter] = {
            p.name: ms.Parameter(ms.Tensor(np.zeros(p.shape, np.float32)), name=f"moments.{p.name}",
                                 requires_grad=False) for p in params}
        self._sgd = ops.SGD(dampening=0.0, weight_decay=self.weight_decay, nesterov=bool(nesterov))
        self._stat: Dict[Tuple[int, ...], ms.Parameter] = {}  # the op's first-step flag, kept at 0: buf starts at 0

    def step(self, params: Sequence[ms.Parameter], grads: Sequence, lr: float) -> None:
        """One update of ``params`` with their ``grads``: buf = m * buf + g + wd * w; w -= lr * (g + wd * w + m * buf)."""
        # ops.SGD (fused, in place), not ApplyMomentum: MindSpore 2.10's CPU ApplyMomentum ignores use_nesterov
        lr_t = ms.Tensor(np.float32(lr))
        momentum = ms.Tensor(np.float32(self.momentum))
        for p, g in zip(params, grads):
            shape = tuple(p.shape)
            if shape not in self._stat:
                self._stat[shape] = ms.Parameter(ms.Tensor(np.zeros(shape, np.float32)), name=f"stat{len(self._stat)}",
                                                 requires_grad=False)
            self._sgd(p, g, lr_t, self.moments[p.name], momentum, self._stat[shape])

    def state(self) -> List[ms.Parameter]:
        return list(self.moments.values())


class ArchAdam:
    """Adam over the alphas of every edge, each edge with its own state (see module docstring)."""

    def __init__(self, sizes: Sequence[int], lr: float = 1e-3, betas: Tuple[float, float] = (0.0, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        self.lr, self.betas, self.eps, self.weight_decay = float(lr), tuple(betas), float(eps), float(weight_decay)
        self.steps = np.zeros(len(sizes), np.int64)
        self.m = [np.zeros(n) for n in sizes]
        self.v = [np.zeros(n) for n in sizes]

    def step(self, alphas: Sequence[np.ndarray], grads: Sequence[Optional[np.ndarray]]) -> List[np.ndarray]:
        """New alphas; an edge with grad None is left as it is, state included."""
        b1, b2 = self.betas
        out = []
        for e, (a, g) in enumerate(zip(alphas, grads)):
            a = np.asarray(a, np.float64)
            if g is None:
                out.append(a.copy())
                continue
            g = np.asarray(g, np.float64) + self.weight_decay * a
            self.steps[e] += 1
            t = self.steps[e]
            self.m[e] = b1 * self.m[e] + (1 - b1) * g
            self.v[e] = b2 * self.v[e] + (1 - b2) * g * g
            denom = np.sqrt(self.v[e]) / np.sqrt(1 - b2 ** t) + self.eps
            out.append(a - self.lr / (1 - b1 ** t) * self.m[e] / denom)
        return out

    def state_arrays(self) -> Dict[str, np.ndarray]:
        """The whole state as named arrays (for the checkpoint)."""
        state = {"arch_adam.steps": self.steps.astype(np.float64)}
        for e in range(len(self.m)):
            state[f"arch_adam.m.{e}"] = self.m[e]
            state[f"arch_adam.v.{e}"] = self.v[e]
        return state

    def load_state_arrays(self, state: Dict[str, np.ndarray]) -> None:
        self.steps = np.asarray(state["arch_adam.steps"]).astype(np.int64)
        self.m = [np.asarray(state[f"arch_adam.m.{e}"], np.float64) for e in range(len(self.m))]
        self.v = [np.asarray(state[f"arch_adam.v.{e}"], np.float64) for e in range(len(self.v))]


def rescale_pair(old: np.ndarray, new: np.ndarray, pair: Sequence[int]) -> np.ndarray:
    """Shift the pair's new alphas so that sum(exp) over the pair is what it was before the step."""
    pair = list(pair)
    out = np.asarray(new, np.float64).copy()
    offset = np.logaddexp.reduce(out[pair]) - np.logaddexp.reduce(np.asarray(old, np.float64)[pair])
    out[pair] -= offset
    return out
