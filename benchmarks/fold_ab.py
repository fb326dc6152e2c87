"""Interleaved A/B of BatchNorm folding in MindSpore GRAPH mode (one process, alternating rounds).

    python benchmarks/fold_ab.py [default|O0|O1|O2]

Alternating the two networks round by round keeps slow drifts of a shared machine's load out of the
comparison, which separate runs of benchmarks/run.py cannot.
"""
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(jit: str = "default", rounds: int = 5, image_size: int = 224, batch: int = 32) -> dict:
    """Median ms per call at batch 1 and ``batch`` of the network as trained and with BN folded."""
    import numpy as np
    import mindspore as ms
    from src import create_model
    from src.fuse import fold_batchnorm

    ms.set_device("CPU")
    ms.set_context(mode=ms.GRAPH_MODE, **({} if jit == "default" else {"jit_config": {"jit_level": jit}}))
    net = create_model("proxylessnas_mobile")
    net.set_train(False)
    folded = fold_batchnorm(net)
    inputs = {b: ms.Tensor(np.random.rand(b, 3, image_size, image_size).astype(np.float32)) for b in (1, batch)}
    times = {name: {b: [] for b in inputs} for name in ("plain", "folded")}
    for cell in (net, folded):
        for x in inputs.values():
            cell(x).asnumpy()  # compile
    for _ in range(rounds):
        for name, cell in (("plain", net), ("folded", folded)):
            for b, x in inputs.items():
                for _ in range(8 if b == 1 else 1):
                    start = time.perf_counter()
                    cell(x).asnumpy()
                    times[name][b].append((time.perf_counter() - start) * 1000.0)
    return {"jit_level": jit, "load_1min": os.getloadavg()[0],
            **{name: {f"batch{b}_ms": round(float(np.median(v)), 1) for b, v in d.items()} for name, d in times.items()}}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1] if len(sys.argv) > 1 else "default")))
