"""ProxylessNAS architecture search (Cai et al., ICLR 2019) on MindSpore.

The search space itself (stem, fixed first block, 21 mixed cells, head) and the latency tables are in
``src/latency.py`` (``default_space``, ``LatencyTable``); this package builds the search on them.

- ``cost``: expected latency (from a latency table) or multiply-adds of the supernet, and the latency losses.
- ``supernet``: the supernet built from the released networks' block classes, mixed edges with binary gates.
- ``optim``: the weight step on sampled paths only, and the architecture optimiser (Adam, pair rescale).
- ``search``: the search loop behind ``search.py``.
"""
