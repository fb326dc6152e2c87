"""ProxylessNAS architecture search (Cai et al., ICLR 2019) on MindSpore.

- ``space``: the official search space (stem, fixed first block, 21 mixed cells, head) at any input size.
- ``cost``: expected latency (from a latency table) or multiply-adds of the supernet, and the latency losses.
- ``supernet``: the supernet built from the released networks' block classes, mixed edges with binary gates.
- ``optim``: the weight step on sampled paths only, and the architecture optimiser (Adam, pair rescale).
- ``search``: the search loop behind ``search.py``.
"""
