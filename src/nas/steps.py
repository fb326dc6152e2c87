"""One step of each kind: path sampling, the weight step, the architecture steps (``two``, ``full_v2``, RL).

A ``reduce`` callable (identity on one device, the mean over ranks in a data-parallel run) is applied to
every gradient before it is used, so all ranks take the same step.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import mindspore as ms
from mindspore import ops

from src.latency import out_size
from src.loss import CrossEntropySmooth
from src.nas.cost import CostModel, regularized_loss, softmax_np
from src.nas.optim import ArchAdam, PathSGD, rescale_pair
from src.nas.supernet import SuperNet

Reduce = Callable[[ms.Tensor], ms.Tensor]
BINARY_MODES = ("two", "full_v2")


def _identity(t):
    return t


# ---------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------
def sample_paths(rng: np.random.Generator, alphas: Sequence[np.ndarray]) -> List[int]:
    """One op per edge, drawn from softmax(alpha)."""
    return [int(rng.choice(len(a), p=softmax_np(a))) for a in alphas]


def sample_pairs(rng: np.random.Generator, alphas: Sequence[np.ndarray]) -> List[Tuple[int, int]]:
    """Per edge two distinct ops drawn by softmax(alpha), then the active one within the pair: (active, inactive).
    An edge with a single op (``--conv_candidates`` with one name, no Zero there) gets (0, 0): nothing to learn."""
    pairs = []
    for a in alphas:
        if len(a) == 1:
            pairs.append((0, 0))
            continue
        two = rng.choice(len(a), size=2, replace=False, p=softmax_np(a))
        first = int(rng.choice(2, p=softmax_np(np.asarray(a)[two])))
        pairs.append((int(two[first]), int(two[1 - first])))
    return pairs


# ---------------------------------------------------------------------------
# Weight step
# ---------------------------------------------------------------------------
def weight_step(net: SuperNet, optimizer: PathSGD, loss_fn, images, labels, choices: Sequence[int], lr: float,
                reduce: Reduce = _identity) -> float:
    """Forward the sampled network, update its weights only; returns the loss."""
    net.set_single(choices)
    net.set_train(True)
    params = net.path_weights(choices)

    def forward(x, y):
        return loss_fn(net(x), y)

    loss, grads = ms.value_and_grad(forward, None, ms.ParameterTuple(params))(images, labels)
    optimizer.step(params, [reduce(g) for g in grads], lr)
    return float(loss.asnumpy())


# ---------------------------------------------------------------------------
# Architecture steps (gradient)
# ---------------------------------------------------------------------------
def gate_chain(gate_grads: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """dL/dalpha_i = sum_j dL/dg_j * p_j * (delta_ij - p_i), over the ops the probabilities cover."""
    weighted = gate_grads * probs
    return weighted - probs * weighted.sum()


class ArchObjective:
    """The architecture loss: plain cross-entropy (on validation images) with the cost regulariser."""

    def __init__(self, num_classes: int, cost: Optional[CostModel], target: float, kind: str):
        self.ce = CrossEntropySmooth(num_classes, 0.0)
        self.cost, self.target, self.kind = cost, target, kind

    def __call__(self, logits, labels, alphas, pairs=None):
        ce = self.ce(logits, labels)
        if self.cost is None:
            expected = ms.Tensor(0.0, ms.float32)
        else:
            expected = self.cost.expected(alphas, pairs)
        loss = ce if self.kind == "none" else regularized_loss(ce, expected, self.target, self.kind)
        return loss, ce, expected


def arch_step_two(net: SuperNet, optimizer: ArchAdam, objective: ArchObjective, images, labels,
                  pairs: Sequence[Tuple[int, int]], reduce: Reduce = _identity) -> Dict[str, float]:
    """Binary gates over sampled pairs, Adam on alpha, pair rescale (see supernet and optim docstrings)."""
    grads = arch_grads_two(net, objective, images, labels, pairs, reduce)
    old = net.alpha_arrays()
    new = optimizer.step(old, grads["alpha"])
    net.set_alphas([rescale_pair(o, n, pair) for o, n, pair in zip(old, new, pairs)])
    return grads["values"]


def arch_grads_two(net: SuperNet, objective: ArchObjective, images, labels, pairs: Sequence[Tuple[int, int]],
                   reduce: Reduce = _identity) -> Dict:
    """Alpha gradients of the ``two`` mode (None for an edge whose active op is Zero), and the loss values."""
    net.set_two(pairs)
    net.set_train(True)
    for gate in net.gates():
        gate.set_data(ms.Tensor(np.array([1.0, 0.0], np.float32)))
    alphas, gates = net.alphas(), net.gates()

    def forward(x, y):
        return objective(net(x), y, alphas, pairs)

    fn = ms.value_and_grad(forward, None, ms.ParameterTuple(gates + alphas), has_aux=True)
    (loss, ce, expected), grads = fn(images, labels)
    n = len(gates)
    alpha_grads: List[Optional[np.ndarray]] = []
    gate_grads: List[Dict[int, float]] = []
    for e, (edge, pair, alpha) in enumerate(zip(net.edges, pairs, net.alpha_arrays())):
        if pair[0] == edge.zero_index or pair[0] == pair[1]:  # Zero active, or a single-op edge
            alpha_grads.append(None)
            gate_grads.append({})
            continue
        gate_g = reduce(grads[e]).asnumpy().astype(np.float64)
        grad = reduce(grads[n + e]).asnumpy().astype(np.float64)
        grad[list(pair)] += gate_chain(gate_g, softmax_np(alpha[list(pair)]))
        alpha_grads.append(grad)
        gate_grads.append(dict(zip(pair, gate_g)))
    return {"alpha": alpha_grads, "gates": gate_grads, "values": {"arch_loss": float(loss.asnumpy()), "arch_ce": float(ce.asnumpy()),
                                            "expected_cost": float(expected.asnumpy())}}


def arch_grads_full_v2(net: SuperNet, objective: ArchObjective, images, labels, choices: Sequence[int],
                       reduce: Reduce = _identity) -> Dict:
    """``full_v2``: only the active ops run forward; every op's gate gradient sum(o_k(x) * dL/dy) is then
    recomputed from the edge's input and dL/dy, taken from a zero probe added to the edge's output."""
    net.set_single(choices)
    net.set_train(True)
    alphas = net.alphas()
    probes = []
    size = out_size(images.shape[-1], 2)
    for edge in net.edges:
        size = out_size(size, edge.cell.stride)
        probes.append(ms.Tensor(np.zeros((images.shape[0], edge.cell.out_channels, size, size), np.float32)))

    n = len(probes)

    def forward(*args):
        for edge, probe in zip(net.edges, args[:n]):
            edge.probe = probe
        return objective(net(args[n]), args[n + 1], alphas)

    fn = ms.value_and_grad(forward, tuple(range(n)), ms.ParameterTuple(alphas), has_aux=True)
    try:
        (loss, ce, expected), (probe_grads, direct) = fn(*probes, images, labels)
    finally:
        for edge in net.edges:
            edge.probe = None
    alpha_grads: List[Optional[np.ndarray]] = []
    gate_grads: List[Dict[int, float]] = []
    for e, (edge, active, alpha) in enumerate(zip(net.edges, choices, net.alpha_arrays())):
        if active == edge.zero_index:
            alpha_grads.append(None)
            gate_grads.append({})
            continue
        dy = probe_grads[e]
        gate_g = np.zeros(edge.num_ops)
        for k in range(edge.num_ops):
            out = edge.run_op(k, edge.last_input)
            if out is not None:
                gate_g[k] = float(ops.stop_gradient(out * dy).sum().asnumpy())
        gate_g = reduce(ms.Tensor(gate_g.astype(np.float32))).asnumpy().astype(np.float64)
        grad = reduce(direct[e]).asnumpy().astype(np.float64) + gate_chain(gate_g, softmax_np(alpha))
        alpha_grads.append(grad)
        gate_grads.append(dict(enumerate(gate_g)))
    for edge in net.edges:
        edge.last_input = None
    return {"alpha": alpha_grads, "gates": gate_grads, "values": {"arch_loss": float(loss.asnumpy()), "arch_ce": float(ce.asnumpy()),
                                            "expected_cost": float(expected.asnumpy())}}


def arch_step_full_v2(net: SuperNet, optimizer: ArchAdam, objective: ArchObjective, images, labels,
                      choices: Sequence[int], reduce: Reduce = _identity) -> Dict[str, float]:
    """One ``full_v2`` architecture step (no pair rescale: the gradient covers every op)."""
    grads = arch_grads_full_v2(net, objective, images, labels, choices, reduce)
    net.set_alphas(optimizer.step(net.alpha_arrays(), grads["alpha"]))
    return grads["values"]


# ---------------------------------------------------------------------------
# Architecture step (REINFORCE)
# ---------------------------------------------------------------------------
class Reinforce:
    """REINFORCE as the official code: sampled networks, reward acc * (target / cost) ** 0.1, moving baseline."""

    def __init__(self, samples: int = 10, baseline_decay: float = 0.99, exponent: float = 0.1):
        self.samples, self.baseline_decay, self.exponent = samples, baseline_decay, exponent
        self.baseline: Optional[float] = None

    def reward(self, accuracy: float, cost: Optional[float], target: float) -> float:
        return accuracy if cost is None else accuracy * (target / cost) ** self.exponent

    def grads(self, alphas: Sequence[np.ndarray], choices: Sequence[Sequence[int]],
              rewards: Sequence[float]) -> List[np.ndarray]:
        """Gradient of -mean((R - b) * log p(choices)) over alpha (closed form); updates the baseline first."""
        average = float(np.mean(rewards))
        self.baseline = average if self.baseline is None else \
            self.baseline + self.baseline_decay * (average - self.baseline)
        out = [np.zeros(len(a)) for a in alphas]
        for chosen, reward in zip(choices, rewards):
            for e, (a, c) in enumerate(zip(alphas, chosen)):
                one_hot = np.zeros(len(a))
                one_hot[c] = 1.0
                out[e] -= (reward - self.baseline) * (one_hot - softmax_np(a)) / len(rewards)
        return out

    def step(self, net: SuperNet, optimizer: ArchAdam, rng: np.random.Generator, images, labels,
             cost: Optional[CostModel], target: float, reduce: Reduce = _identity) -> Dict[str, float]:
        """Sample networks, score them on one validation batch, one Adam step on alpha."""
        alphas = net.alpha_arrays()
        net.set_train(True)
        choices, rewards = [], []
        for _ in range(self.samples):
            chosen = sample_paths(rng, alphas)
            net.set_single(chosen)
            logits = net(images)
            # the mean over ranks: every rank scores its own validation batch, all must take the same step
            accuracy = float(reduce((logits.argmax(1) == labels).astype(ms.float32).mean()).asnumpy())
            choices.append(chosen)
            rewards.append(self.reward(accuracy, cost.of_choices(chosen) if cost else None, target))
        net.set_alphas(optimizer.step(alphas, self.grads(alphas, choices, rewards)))
        return {"reward": float(np.mean(rewards)), "baseline": float(self.baseline)}
