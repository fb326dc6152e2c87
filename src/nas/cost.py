"""What the search pays for an architecture: expected latency from a table (or multiply-adds), and the losses.

Expected cost of the supernet, as the official code: fixed layers (stem, first block, feature mix,
classifier) plus, per mixed edge, the sum over its ops of probability x cost (Zero costs 0). In ``two``
mode the probabilities are the ones renormalised over the sampled pair, so the other ops of the edge add
nothing to that step's cost or its gradient. The cost is computed with MindSpore ops from the alpha
Parameters, so its gradient reaches alpha (NNI's port lost it by building the sum with a fresh tensor).

``mul#log`` here: ``0.2 * CE * (E / T) ** (0.3 / ln 80)``. The official ``0.2 * CE * (ln E / ln T) ** 0.3``
depends on the unit: with milliseconds it is undefined for a target of 1 ms and NaN once E < 1 ms, which a
small input on a fast runtime reaches. Writing ln E / ln T = 1 + ln(E/T) / ln T, the official factor at its
own target (80 ms) is (E/T) ** (0.3 / ln 80) to first order and exactly at E = T. That form is used for any
target: defined for every positive E and T, the same in any unit, and as steep as the published setting.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from src.errors import UserError
from src.flops import block_macs, conv_macs
from src.latency import LatencyTable, SearchSpace, check_image_size

LATENCY_LOSSES = ("mul#log", "add#linear", "none")
MUL_LOG_ALPHA, MUL_LOG_BETA, MUL_LOG_REF = 0.2, 0.3, 80.0
ADD_LINEAR_LAMBDA = 0.1


@dataclass
class CostModel:
    """Cost of the fixed layers plus one cost per op of each edge (Zero = 0), in ``unit``."""

    fixed: float
    per_edge: List[np.ndarray]
    unit: str  # "ms" or "MMACs"

    def of_choices(self, choices: Sequence[int]) -> float:
        """Cost of one network of the space (one op per edge)."""
        return float(self.fixed + sum(costs[c] for costs, c in zip(self.per_edge, choices)))

    def expected_np(self, alphas: Sequence[np.ndarray]) -> float:
        """Expected cost under softmax(alpha) over all ops of every edge (for logs)."""
        return float(self.fixed + sum(softmax_np(a) @ costs for a, costs in zip(alphas, self.per_edge)))

    def expected(self, alphas: Sequence, pairs: Optional[Sequence[Tuple[int, int]]] = None):
        """Expected cost as a MindSpore scalar that depends on the alpha Parameters.

        With ``pairs`` (``two`` mode) each edge contributes softmax over its pair times the pair's costs.
        """
        import mindspore as ms
        from mindspore import ops

        total = ms.Tensor(self.fixed, ms.float32)
        for e, (alpha, costs) in enumerate(zip(alphas, self.per_edge)):
            if pairs is None:
                total = total + (ops.softmax(alpha, axis=0) * ms.Tensor(costs, ms.float32)).sum()
            else:
                index = ms.Tensor(np.array(pairs[e], np.int32))
                probs = ops.softmax(ops.gather(alpha, index, 0), axis=0)
                total = total + (probs * ms.Tensor(costs[list(pairs[e])], ms.float32)).sum()
        return total


def softmax_np(x: np.ndarray) -> np.ndarray:
    """Numerically stable softmax of a 1-d array (float64)."""
    z = np.exp(np.asarray(x, np.float64) - np.max(x))
    return z / z.sum()


def latency_model(space: SearchSpace, table: Union[str, LatencyTable]) -> CostModel:
    """Cost model in milliseconds from a latency table (a path or a loaded table) measured at the space's input size.

    A table of another input size, or one without a key the space needs, is a UserError naming the size or
    the key and the ``tools/latency.py build`` command that measures it.
    """
    table = table if isinstance(table, LatencyTable) else LatencyTable.load(table)
    check_image_size(table, space.image_size)
    joins = space.fixed_boundaries()
    fixed = math.fsum(table.layer_ms(key, joins.get(name)) for name, key in space.fixed_keys().items())
    fixed += table.call_overhead_ms
    # a Zero cell costs nothing, not even the join after it (its input goes straight on)
    per_edge = [np.array([table.layer_ms(cell.key(k, e), cell.boundary) for k, e in cell.candidates]
                         + [0.0] * cell.zero, np.float64) for cell in space.cells]
    return CostModel(fixed, per_edge, "ms")


def flops_model(space: SearchSpace) -> CostModel:
    """Cost model in millions of multiply-adds (batch 1), from src/flops.py."""
    fixed = (conv_macs(space.image_size, 3, space.stem_channels, 3, 2) + block_macs(space.first_block, space.stem_size)
             + conv_macs(space.feature_size, space.last_channels, space.head_channels, 1)
             + space.head_channels * space.num_classes)
    per_edge = [np.array([block_macs(cell.block(i), cell.in_size) for i in range(len(cell.op_names))],
                         np.float64) / 1e6 for cell in space.cells]
    return CostModel(fixed / 1e6, per_edge, "MMACs")


def check_target(name: str, value: float) -> float:
    """A target must be a positive number."""
    if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
        raise UserError(f"--{name} must be a positive number, got {value!r}")
    return float(value)


def regularized_loss(ce, expected, target: float, kind: str):
    """The search loss from the cross-entropy and the expected cost (MindSpore scalars); see module docstring."""
    if kind == "none":
        return ce
    if kind == "add#linear":
        return ce + ADD_LINEAR_LAMBDA * (expected - target) / target
    if kind == "mul#log":
        return MUL_LOG_ALPHA * ce * (expected / target) ** (MUL_LOG_BETA / math.log(MUL_LOG_REF))
    raise UserError(f"--latency_loss {kind!r} is not one of {', '.join(LATENCY_LOSSES)}")
