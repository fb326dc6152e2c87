"""The ProxylessNAS supernet, built from the released networks' block classes.

Parameter names mirror the final network's: the fixed layers keep their names
(``features.init_block``, ``features.stage1.unit1.body``, ``features.final_block``, ``output``) and the
candidate ``i`` of a mixed cell lives under ``features.stageS.unitU.ops.i``, which becomes
``features.stageS.unitU.body`` once the cell's op is chosen: the chosen weights map 1:1 onto
``create_model(net.config)``.

A mixed edge runs in one of three ways, set by the search loop before each forward:
- ``single``: only the active op (weight steps, and the forward of ``full_v2`` arch steps);
- ``two``: binary gates over the sampled pair, ``y = g_a * o_a(x) + g_b * stop_gradient(o_b(x))`` with
  ``g = (1, 0)``; the gradient over ``g`` is dL/dg_j = sum(o_j(x) * dL/dy) for both ops of the pair.
Zero contributes nothing; the identity shortcut (stride 1, equal widths) is added outside the gates.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import mindspore as ms
import mindspore.nn as nn
from mindspore import ops
from mindspore.common.initializer import Uniform, Zero

from src.arch import NetSpec
from src.latency import CellSpace, SearchSpace
from src.proxylessnas_mobile import ConvBNAct, MBConv, ProxylessNAS, ProxylessUnit

ALPHA_NAME, GATES_NAME = "alpha", "gates"


class MixedEdge(nn.Cell):
    """One mixed cell: its candidate MBConvs, alpha (architecture parameters) and the binary gates."""

    def __init__(self, cell: CellSpace, alpha_init: np.ndarray, bn_eps: float = 1e-3):
        super().__init__()
        self.cell = cell
        self.num_ops = len(cell.op_names)
        self.zero_index = len(cell.candidates) if cell.zero else -1
        self.ops = nn.CellList([MBConv(cell.block(i), bn_eps) for i in range(len(cell.candidates))])
        self.shortcut = cell.shortcut
        self.alpha = ms.Parameter(ms.Tensor(alpha_init.astype(np.float32)), name=ALPHA_NAME)
        self.gates = ms.Parameter(ms.Tensor(np.array([1.0, 0.0], np.float32)), name=GATES_NAME)
        self.mode = "single"
        self.active = 0
        self.inactive = 1
        self.probe = None  # full_v2: a zero tensor added to the output, whose gradient is dL/dy
        self.last_input = None  # full_v2: the input of the last forward, for the recomputed ops

    def run_op(self, index: int, x):
        """Output of one op without the shortcut (None for Zero)."""
        return None if index == self.zero_index else self.ops[index](x)

    def construct(self, x):
        if self.mode == "two":
            out_a = self.run_op(self.active, x)
            out_b = self.run_op(self.inactive, x) if self.inactive != self.active else None  # a single-op edge
            out = None
            if out_a is not None:
                out = self.gates[0] * out_a
            if out_b is not None:
                term = self.gates[1] * ops.stop_gradient(out_b)
                out = term if out is None else out + term
        else:
            out = self.run_op(self.active, x)
            self.last_input = x
        if self.shortcut:
            out = x if out is None else x + out
        if self.probe is not None:
            out = out + self.probe
        return out


class SuperNet(nn.Cell):
    """Stem, fixed first block, one MixedEdge per cell of the space, feature mix, classifier."""

    def __init__(self, space: SearchSpace, seed: int = 0, alpha_std: float = 1e-3, bn_eps: float = 1e-3):
        super().__init__()
        self.space = space
        rng = np.random.default_rng(seed)
        features: "OrderedDict[str, nn.Cell]" = OrderedDict()
        features["init_block"] = ConvBNAct(space.in_channels, space.stem_channels, space.stem_kernel, space.stem_stride,
                                           bn_eps=bn_eps)
        # stage/unit names as group_stages gives them for any choice: strides are fixed per cell
        stages: List["OrderedDict[str, nn.Cell]"] = [OrderedDict(unit1=ProxylessUnit(space.first_block, bn_eps))]
        self.edge_names: List[str] = []
        for cell in space.cells:
            if cell.stride != 1:
                stages.append(OrderedDict())
            name = f"unit{len(stages[-1]) + 1}"
            stages[-1][name] = MixedEdge(cell, rng.normal(0.0, alpha_std, len(cell.op_names)), bn_eps)
            self.edge_names.append(f"features.stage{len(stages)}.{name}")
        for s, units in enumerate(stages, start=1):
            features[f"stage{s}"] = nn.SequentialCell(units)
        features["final_block"] = ConvBNAct(space.last_channels, space.head_channels, 1, bn_eps=bn_eps)
        self.features = nn.SequentialCell(features)
        bound = 1.0 / math.sqrt(space.head_channels)
        self.output = nn.Dense(space.head_channels, space.num_classes, weight_init=Uniform(bound), bias_init=Zero())
        self.edges: List[MixedEdge] = [c for _, c in self.cells_and_names() if isinstance(c, MixedEdge)]

    def construct(self, x):
        return self.output(ops.mean(self.features(x), (2, 3)))

    # -- parameter sets ------------------------------------------------------
    def alphas(self) -> List[ms.Parameter]:
        return [e.alpha for e in self.edges]

    def gates(self) -> List[ms.Parameter]:
        return [e.gates for e in self.edges]

    def weights(self) -> List[ms.Parameter]:
        """Trainable weights (no alpha, no gates)."""
        arch = {id(p) for p in self.alphas() + self.gates()}
        return [p for p in self.trainable_params() if id(p) not in arch]

    def shared_weights(self) -> List[ms.Parameter]:
        """Weights every sampled network uses: stem, first block, feature mix, classifier."""
        return [p for p in self.weights() if ".ops." not in p.name]

    def op_weights(self, edge: int, op: int) -> List[ms.Parameter]:
        """Trainable weights of one candidate op (empty for Zero)."""
        e = self.edges[edge]
        return [] if op == e.zero_index else list(e.ops[op].trainable_params())

    def path_weights(self, choices: Sequence[int]) -> List[ms.Parameter]:
        """Weights of the network with these choices: shared ones plus the chosen op of every edge."""
        params = self.shared_weights()
        for e, c in enumerate(choices):
            params += self.op_weights(e, c)
        return params

    # -- modes ------------------------------------------------------------------
    def set_single(self, choices: Sequence[int]) -> None:
        """Every edge runs only its op ``choices[e]``."""
        for e, c in zip(self.edges, choices):
            e.mode, e.active = "single", int(c)

    def set_two(self, pairs: Sequence[Tuple[int, int]]) -> None:
        """Binary gates over (active, inactive) of every edge."""
        for e, (a, b) in zip(self.edges, pairs):
            e.mode, e.active, e.inactive = "two", int(a), int(b)

    def alpha_arrays(self) -> List[np.ndarray]:
        return [p.asnumpy().astype(np.float64) for p in self.alphas()]

    def set_alphas(self, arrays: Sequence[np.ndarray]) -> None:
        for p, a in zip(self.alphas(), arrays):
            p.set_data(ms.Tensor(np.asarray(a, np.float32)))

    # -- result ------------------------------------------------------------------
    def argmax(self) -> List[int]:
        """The most probable op of every edge."""
        return [int(np.argmax(a)) for a in self.alpha_arrays()]

    def spec(self, choices: Optional[Sequence[int]] = None) -> NetSpec:
        return self.space.spec(self.argmax() if choices is None else choices)

    def chosen_weights(self, choices: Optional[Sequence[int]] = None) -> Dict[str, ms.Parameter]:
        """The final network's parameter names -> the supernet Parameters of the chosen paths (BN statistics too)."""
        choices = self.argmax() if choices is None else list(choices)
        out: Dict[str, ms.Parameter] = {}
        chosen = dict(zip(self.edge_names, choices))
        for p in self.get_parameters():
            if p.name.endswith((f".{ALPHA_NAME}", f".{GATES_NAME}")):
                continue
            if ".ops." not in p.name:
                out[p.name] = p
                continue
            edge, rest = p.name.split(".ops.", 1)
            op, tail = rest.split(".", 1)
            if chosen[edge] == int(op):
                out[f"{edge}.body.{tail}"] = p
        return out

    def export_network(self, choices: Optional[Sequence[int]] = None) -> ProxylessNAS:
        """The chosen network as a ProxylessNAS cell holding copies of the chosen weights."""
        net = ProxylessNAS(self.spec(choices), num_classes=self.space.num_classes)
        weights = self.chosen_weights(choices)
        for p in net.get_parameters():
            p.set_data(ms.Tensor(weights[p.name].asnumpy()))
        return net
