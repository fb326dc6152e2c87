"""Speed of this project side by side with PyTorch and ONNX Runtime: same machine, same weights, one run.

    python benchmarks/run.py [--quick] [--batch 32] [--image_size 224] [--out benchmarks/results]

Measured, each part in its own process (so peak memory and thread pools stay separate):

- training throughput of this project's train step (``ms.amp.build_train_network`` with
  CrossEntropySmooth and Momentum, built by ``src/train_step.py`` as for train.py, GRAPH mode; with the native CPU
  depthwise kernel, the default, and with MindSpore's Conv2D) and of PyTorch eager (SGD momentum,
  label smoothing), first-step (compile) time, peak RSS;
- inference latency at batch 1 (median, p90) and throughput at ``--batch``: MindSpore from a checkpoint
  through ``src/predict.py``'s ``open_model``/``Model.run`` (numpy in and out) in the mode
  ``checkpoint_mode`` picks for many images (GRAPH; eval.py runs the same folded network in GRAPH) and
  for one image (PyNative); lab forms (GRAPH, BN not folded; MindSpore's Conv2D for depthwise); the
  exported MINDIR (``ms.load`` + ``nn.GraphCell``), the exported ONNX on ONNX Runtime, and PyTorch
  (eval, no_grad).  PyTorch and ONNX Runtime run at their own defaults; only MindSpore gets ``--isa``;
- the data pipeline (train and eval transforms of ``src/dataset.py``, 1 and 2 workers) on generated
  JPEGs of ImageNet's typical size.

Writes ``benchmark.json`` and ``benchmark.md`` (ratios against PyTorch) into ``--out``.  A competitor
that is not installed is skipped and reported as such.  ``--quick`` uses tiny sizes so a test can run
the whole thing in about a minute; its numbers mean nothing.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

_LOG = logging.getLogger("benchmark")

SECTIONS = ("weights", "export", "infer_entry", "infer_entry_one", "infer_mindspore", "infer_mindir", "infer_onnxruntime", "infer_torch",
            "infer_torch_capped",
            "train_mindspore", "train_mindspore_builtin", "train_torch", "data")
SEED_INPUT = 11
JPEG_SIZE = (500, 375)  # ImageNet's most common image size (width x height)


# ---------------------------------------------------------------------------
# Small helpers shared by the workers
# ---------------------------------------------------------------------------
def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def time_calls(fn: Callable[[], Any], iters: int, warmup: int) -> Dict[str, float]:
    """First-call time (compile), then ``iters`` timed calls after ``warmup``: median, p90, mean in ms."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return {"first_call_s": first, "median_ms": float(np.median(times)), "p90_ms": float(np.percentile(times, 90)),
            "mean_ms": float(np.mean(times)), "iters": iters}


def latency_and_throughput(make_fn: Callable[[np.ndarray], Callable[[], Any]], args: argparse.Namespace) -> dict:
    """Batch-1 latency and batch-``args.batch`` throughput of a runner built by ``make_fn(inputs)``."""
    one = np.random.default_rng(SEED_INPUT).standard_normal((1, 3, args.image_size, args.image_size)).astype(np.float32)
    many = np.random.default_rng(SEED_INPUT + 1).standard_normal(
        (args.batch, 3, args.image_size, args.image_size)).astype(np.float32)
    batch1 = time_calls(make_fn(one), args.infer_iters, args.warmup)
    batch_n = time_calls(make_fn(many), max(3, args.infer_iters // 4), max(1, args.warmup // 2))
    return {"batch1": batch1, "batchN": {**batch_n, "batch": args.batch,
                                         "img_per_s": args.batch * 1000.0 / batch_n["median_ms"]}}


def mindspore_setup(args: argparse.Namespace) -> Any:
    """Import MindSpore on CPU in GRAPH mode with the benchmark's context options; returns the module.

    The environment is the entry points' own (src/model_utils/device.py): the AVX2 cap on oneDNN unless
    the worker was given one (the lab sections) or the project lifts it (native kernels, AVX-512)."""
    from src.model_utils.device import configure_environment
    configure_environment("CPU")
    import mindspore as ms

    from src.model_utils.device import set_device
    set_device("CPU")
    context: Dict[str, Any] = {"mode": ms.GRAPH_MODE}
    if args.jit_level:
        context["jit_config"] = {"jit_level": args.jit_level}
    if args.threads:
        context["runtime_num_threads"] = args.threads
    if args.graph_kernel:
        context["enable_graph_kernel"] = True
    ms.set_context(**context)
    return ms


def mindspore_net(args: argparse.Namespace, workdir: Path):
    """This project's network with the benchmark's shared weights (the PyTorch side has the same)."""
    ms = mindspore_setup(args)
    from src import create_model
    from src.arch import get_arch
    from src.convert import convert

    net = create_model(args.arch, num_classes=args.num_classes)
    weights = workdir / "torch_weights.npz"
    if weights.is_file():
        with np.load(weights) as data:
            tensors = convert(dict(data), get_arch(args.arch), "pytorchcv", args.num_classes)
        ms.load_param_into_net(net, {k: ms.Parameter(ms.Tensor(v), name=k) for k, v in tensors.items()},
                               strict_load=True)
    return net


def torch_net(args: argparse.Namespace, workdir: Path):
    """The PyTorch network with the shared weights."""
    import torch
    from benchmarks.torch_proxylessnas import TorchProxylessNAS
    from src.arch import get_arch

    model = TorchProxylessNAS(get_arch(args.arch), args.num_classes)
    with np.load(workdir / "torch_weights.npz") as data:
        model.load_state_dict({k: torch.from_numpy(v) for k, v in data.items()})
    return model


def save_logits(workdir: Path, name: str, logits: np.ndarray) -> None:
    """Batch-1 logits of one runner, compared across runners by the orchestrator."""
    np.save(workdir / f"logits_{name}.npy", np.asarray(logits, dtype=np.float32))


def batch1_input(args: argparse.Namespace) -> np.ndarray:
    """The fixed batch-1 input whose logits every runner saves."""
    return np.random.default_rng(SEED_INPUT).standard_normal((1, 3, args.image_size, args.image_size)).astype(np.float32)


# ---------------------------------------------------------------------------
# Workers (each runs in its own process)
# ---------------------------------------------------------------------------
def work_weights(args: argparse.Namespace, workdir: Path) -> dict:
    """Random weights with calibrated BN statistics, written once for both frameworks."""
    import torch
    from benchmarks.torch_proxylessnas import TorchProxylessNAS, numpy_state_dict, randomize
    from src.arch import get_arch

    torch.manual_seed(0)
    # statistics from maps of at least 2x2 at the last stage: at 1x1 a few samples give near-zero variances
    model = randomize(TorchProxylessNAS(get_arch(args.arch), args.num_classes), max(args.image_size, 64))
    state = {k: v for k, v in numpy_state_dict(model).items()}
    np.savez(workdir / "torch_weights.npz", **state)
    return {"parameters": int(sum(p.numel() for p in model.parameters()))}


def work_export(args: argparse.Namespace, workdir: Path) -> dict:
    """Export MINDIR and ONNX (BN folded, the default, and unfolded) at batch 1 and batch N with the project's code."""
    from src.export import export_network

    net = mindspore_net(args, workdir)
    out = {}
    for fmt in ("MINDIR", "ONNX"):
        if fmt == "ONNX" and not _installed("onnx"):
            out[fmt] = {"skipped": "onnx is not installed (pip install onnx)"}
            continue
        for folded in (True, False):
            for batch in (1, args.batch):
                name = f"{fmt.lower()}_{'folded' if folded else 'plain'}_b{batch}"
                start = time.perf_counter()
                result = export_network(net, str(workdir / name), fmt, batch_size=batch, image_size=args.image_size,
                                        fold_bn=folded)
                out[name] = {"seconds": time.perf_counter() - start, "max_abs_diff": result.max_abs_diff,
                             "tolerance": result.tolerance, "bytes": result.path.stat().st_size,
                             "folded_bn": result.folded_bn}
    if "onnx_folded_b1" in out and _installed("onnxruntime"):
        out.update(_export_int8(args, workdir))
    return out


def _export_int8(args: argparse.Namespace, workdir: Path) -> dict:
    """INT8 models of the folded ONNX files (batch 1 and N) as export.py --quantize int8 writes them, in
    both of ONNX Runtime's formats, calibrated on generated photo-like JPEGs through the eval transform."""
    from src.quantize import FORMATS, quantize_onnx

    folder = workdir / "calibration"
    folder.mkdir(exist_ok=True)
    images = [Path(p) for p in _write_jpegs(folder, min(64, max(args.batch, args.data_images)))]
    out = {}
    for fmt in FORMATS:
        for batch in (1, args.batch):
            name = f"onnx_int8_{fmt.lower()}_b{batch}"
            start = time.perf_counter()
            path = quantize_onnx(workdir / f"onnx_folded_b{batch}.onnx", images, args.image_size, 0.875, fmt,
                                 workdir / f"{name}.onnx")
            out[name] = {"seconds": time.perf_counter() - start, "bytes": path.stat().st_size,
                         "calibration_images": len(images)}
    return out


def work_infer_entry(args: argparse.Namespace, workdir: Path) -> dict:
    """MindSpore from a checkpoint through ``src/predict.py``'s own code (``open_model`` + ``Model.run``,
    numpy in, numpy out) in the mode ``checkpoint_mode`` picks for a folder of many images, in the
    environment the entry points make (no cap given by the benchmark: ``onednn_isa`` records what was in
    force)."""
    return _infer_entry(args, workdir, "entry_many")


def work_infer_entry_one(args: argparse.Namespace, workdir: Path) -> dict:
    """The same for a single image, in its own process as a user's call of predict.py on one image is."""
    return _infer_entry(args, workdir, "entry_one")


def _infer_entry(args: argparse.Namespace, workdir: Path, name: str) -> dict:
    ms = mindspore_setup(args)
    from src import native_depthwise
    from src.checkpoint import params_list, save_checkpoint_atomic
    from src.inference import inference_form
    from src.model_utils.device import onednn_isa
    from src.predict import GRAPH_MIN_IMAGES, checkpoint_mode, open_model

    net = inference_form(mindspore_net(args, workdir), False, "builtin")
    ckpt = save_checkpoint_atomic(params_list(net), str(workdir / f"weights_{name}.ckpt"))
    out: Dict[str, Any] = {"kernel_isa": native_depthwise.active_isa()}
    # the entry point's own decision: a folder of many images (GRAPH), a single image (PyNative)
    mode = checkpoint_mode(GRAPH_MIN_IMAGES if name == "entry_many" else 1)
    model = open_model(ckpt, args.arch, args.num_classes, args.image_size, mode=mode)
    out["onednn_isa"] = onednn_isa()  # before the first convolution: what oneDNN will read
    out[f"{name}_mode"] = mode
    out[f"{name}_context_mode"] = "GRAPH" if ms.get_context("mode") == ms.GRAPH_MODE else "PYNATIVE"
    out[name] = latency_and_throughput(lambda x: (lambda: model.run(x)), args)
    save_logits(workdir, f"mindspore_{name}", model.run(batch1_input(args)))
    return out


def work_infer_mindspore(args: argparse.Namespace, workdir: Path) -> dict:
    """Lab forms of the network under the benchmark's --isa (GRAPH; BN not folded; MindSpore's Conv2D
    instead of the native kernels)."""
    ms = mindspore_setup(args)
    from src import native_depthwise
    from src.inference import inference_form
    from src.model_utils.device import onednn_isa

    net = inference_form(mindspore_net(args, workdir), False, "builtin")
    out: Dict[str, Any] = {"kernel_isa": native_depthwise.active_isa(), "onednn_isa": onednn_isa()}
    cells = [("plain_builtin", net), ("folded_builtin", inference_form(net, True, "builtin"))]
    reason = native_depthwise.unavailable_reason()
    if reason:
        out["native_skipped"] = reason
    else:
        native_plain = inference_form(mindspore_net(args, workdir), False, "native")
        cells = [("plain", native_plain)] + cells
    for name, cell in cells:
        def make(x, cell=cell):
            tensor = ms.Tensor(x)
            return lambda: cell(tensor).asnumpy()

        out[name] = latency_and_throughput(make, args)  # first: the first call compiles
        save_logits(workdir, f"mindspore_{name}", cell(ms.Tensor(batch1_input(args))).asnumpy())
    return out


def work_infer_mindir(args: argparse.Namespace, workdir: Path) -> dict:
    """The exported MINDIR files through ms.load + nn.GraphCell."""
    ms = mindspore_setup(args)
    from mindspore import nn

    out = {}
    for kind in ("folded", "plain"):
        cells = {b: nn.GraphCell(ms.load(str(workdir / f"mindir_{kind}_b{b}.mindir"))) for b in (1, args.batch)}

        def make(x, cells=cells):
            tensor = ms.Tensor(x)
            cell = cells[x.shape[0]]
            return lambda: cell(tensor).asnumpy()

        out[kind] = latency_and_throughput(make, args)
        save_logits(workdir, f"mindir_{kind}", cells[1](ms.Tensor(batch1_input(args))).asnumpy())
    return out


def work_infer_onnxruntime(args: argparse.Namespace, workdir: Path) -> dict:
    """The exported ONNX files on ONNX Runtime's CPU provider (default graph optimisations)."""
    import onnxruntime as ort

    out: Dict[str, Any] = {"version": ort.__version__}
    kinds = ["folded", "plain"] + [f"int8_{fmt}" for fmt in ("qdq", "qoperator")
                                   if (workdir / f"onnx_int8_{fmt}_b1.onnx").is_file()]
    for kind in kinds:
        sessions = {b: ort.InferenceSession(str(workdir / f"onnx_{kind}_b{b}.onnx"), providers=["CPUExecutionProvider"])
                    for b in (1, args.batch)}
        name = sessions[1].get_inputs()[0].name
        save_logits(workdir, f"onnxruntime_{kind}", sessions[1].run(None, {name: batch1_input(args)})[0])

        def make(x, sessions=sessions, name=name):
            session = sessions[x.shape[0]]
            return lambda: session.run(None, {name: x})

        out[kind] = latency_and_throughput(make, args)
    return out


def work_infer_torch(args: argparse.Namespace, workdir: Path, logits_name: str = "torch") -> dict:
    """PyTorch eager, eval mode, no_grad."""
    import torch

    model = torch_net(args, workdir).eval()
    with torch.no_grad():
        save_logits(workdir, logits_name, model(torch.from_numpy(batch1_input(args))).numpy())

    def make(x):
        tensor = torch.from_numpy(x)

        def run():
            with torch.no_grad():
                return model(tensor)
        return run

    return {"eager": latency_and_throughput(make, args), "threads": torch.get_num_threads(),
            "version": torch.__version__}


def _train_batch(args: argparse.Namespace):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((args.batch, 3, args.image_size, args.image_size)).astype(np.float32)
    y = rng.integers(0, args.num_classes, args.batch).astype(np.int32)
    return x, y


def _train_result(timing: dict, args: argparse.Namespace, loss: float) -> dict:
    return {**timing, "batch": args.batch, "img_per_s": args.batch * 1000.0 / timing["median_ms"],
            "final_loss": loss, "peak_rss_mb": peak_rss_mb()}


def work_infer_torch_capped(args: argparse.Namespace, workdir: Path) -> dict:
    """PyTorch eager as above, run with the ISA cap MindSpore needs (set by :func:`worker_env`)."""
    result = work_infer_torch(args, workdir, "torch_capped")
    result["isa_cap"] = {k: os.environ.get(k) for k in TORCH_ISA_CAP}
    return result


def work_train_mindspore(args: argparse.Namespace, workdir: Path) -> dict:
    """This project's train step, built by src/train_step.py as train.py builds it (amp level, loss scale, decay
    groups, depthwise kernel chosen by the default 'auto')."""
    return _train_mindspore(args, workdir, "auto")


def work_train_mindspore_builtin(args: argparse.Namespace, workdir: Path) -> dict:
    """The same train step with MindSpore's own Conv2D for the depthwise convolutions."""
    return _train_mindspore(args, workdir, "builtin")


def _train_mindspore(args: argparse.Namespace, workdir: Path, depthwise_kernel: str) -> dict:
    ms = mindspore_setup(args)
    from src.model_utils.config import get_config
    from src.train_step import build_train_step

    config = get_config([], str(ROOT / "default_config.yaml"))
    config.update(device_target="CPU", num_classes=args.num_classes, image_size=args.image_size,
                  train_batch_size=args.batch, depthwise_kernel=depthwise_kernel)
    steps = 1 + args.warmup + args.train_steps
    lr = np.full(steps + 1, 0.01, dtype=np.float32)
    train_step = build_train_step(config, lr, mindspore_net(args, workdir))  # as train.py builds it
    from src.model_utils.device import onednn_isa
    isa = onednn_isa()  # before the first convolution: what oneDNN will read
    x, y = _train_batch(args)
    data, label = ms.Tensor(x), ms.Tensor(y)
    last: List[float] = []

    def step():
        out = train_step.train_net(data, label)
        loss = out[0] if isinstance(out, tuple) else out
        last[:] = [float(loss.asnumpy())]

    timing = time_calls(step, args.train_steps, args.warmup)
    return {**_train_result(timing, args, last[0]), "amp_level": train_step.amp_level,
            "depthwise_kernel": "native" if train_step.native_depthwise else "builtin", "onednn_isa": isa}


def work_train_torch(args: argparse.Namespace, workdir: Path) -> dict:
    """PyTorch eager train step: SGD momentum 0.9, weight decay on conv/linear weights only, label smoothing 0.1."""
    import torch

    model = torch_net(args, workdir).train()
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    optimizer = torch.optim.SGD([{"params": decay, "weight_decay": 1e-4}, {"params": no_decay, "weight_decay": 0.0}],
                                lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    x, y = _train_batch(args)
    data, label = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
    last: List[float] = []

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(data), label)
        loss.backward()
        optimizer.step()
        last[:] = [float(loss.detach())]

    timing = time_calls(step, args.train_steps, args.warmup)
    return {**_train_result(timing, args, last[0]), "threads": torch.get_num_threads()}


def _write_jpegs(folder: Path, count: int) -> List[str]:
    """Photo-like JPEGs (smooth colour fields plus grain) of ImageNet's typical size."""
    from PIL import Image

    rng = np.random.default_rng(0)
    width, height = JPEG_SIZE
    paths = []
    for i in range(count):
        coarse = rng.integers(0, 255, (height // 25 + 1, width // 25 + 1, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((width, height), Image.BILINEAR)
        pixels = np.clip(np.asarray(image, np.int16) + rng.integers(-12, 12, (height, width, 3)), 0, 255)
        path = folder / f"img_{i:04d}.jpg"
        Image.fromarray(pixels.astype(np.uint8)).save(path, quality=90)
        paths.append(str(path))
    return paths


def work_data(args: argparse.Namespace, workdir: Path) -> dict:
    """Images per second out of create_dataset (decode + transforms + batch), train and eval, 1 and 2 workers."""
    import mindspore.dataset as ds
    from src.dataset import ImageList, create_dataset
    from src.model_utils.config import get_config

    folder = workdir / "jpegs"
    folder.mkdir(exist_ok=True)
    paths = _write_jpegs(folder, args.data_images)
    images = ImageList([(p, i % 2) for i, p in enumerate(paths)], ["a", "b"], str(folder))
    ds.config.set_seed(0)
    out = {"images": len(paths), "jpeg_size": list(JPEG_SIZE)}
    for training in (True, False):
        for workers in (1, 2):
            config = get_config([], str(ROOT / "default_config.yaml"))
            config.update(device_target="CPU", image_size=args.image_size, work_nums=workers)
            dataset = create_dataset(images, config, training=training, batch_size=min(args.batch, len(paths)),
                                     shuffle=False, drop_remainder=False)
            start = time.perf_counter()
            first, seen = None, 0
            for image, _ in dataset.create_tuple_iterator(num_epochs=1, output_numpy=True):
                seen += image.shape[0]
                if first is None:
                    first, first_count = time.perf_counter(), seen
            end = time.perf_counter()
            steady = (seen - first_count) / (end - first) if seen > first_count else seen / (end - start)
            out[f"{'train' if training else 'eval'}_w{workers}"] = {
                "img_per_s": steady, "total_s": end - start, "startup_s": first - start, "images": seen}
    return out


WORKERS: Dict[str, Callable[[argparse.Namespace, Path], dict]] = {
    "weights": work_weights, "export": work_export, "infer_entry": work_infer_entry,
    "infer_entry_one": work_infer_entry_one,
    "infer_mindspore": work_infer_mindspore,
    "infer_mindir": work_infer_mindir, "infer_onnxruntime": work_infer_onnxruntime, "infer_torch": work_infer_torch,
    "infer_torch_capped": work_infer_torch_capped,
    "train_mindspore": work_train_mindspore, "train_mindspore_builtin": work_train_mindspore_builtin,
    "train_torch": work_train_torch, "data": work_data,
}
# what a section needs besides MindSpore; missing -> skipped and reported
REQUIRES = {"weights": ("torch",), "infer_torch": ("torch",), "infer_torch_capped": ("torch",), "train_torch": ("torch",),
            "infer_onnxruntime": ("onnxruntime", "onnx")}


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


# ---------------------------------------------------------------------------
# Orchestration
# ---------------------------------------------------------------------------
# Lab sections that run MindSpore with its own convolutions get the --isa cap; PyTorch and ONNX Runtime
# run at their own defaults (their oneDNN/MLAS pick the CPU's best ISA and are fast there).  The entry
# points and this project's training step (infer_entry, train_mindspore) run in the environment the
# project makes itself: capped at AVX2, lifted where the native kernels cover the convolutions oneDNN runs
# as slow reference kernels on AVX-512 (src/model_utils/device.py, src/native_depthwise.py).
CAPPED_SECTIONS = ("weights", "export", "infer_mindspore", "infer_mindir", "train_mindspore_builtin", "data")


# PyTorch's two ISA switches: its oneDNN convolutions and its own ATen kernels (depthwise, elementwise)
TORCH_ISA_CAP = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")
CAP_MARK = "PROXYLESSNAS_ONEDNN_CAP"  # src/model_utils/device.py: a cap the project set (and may lift)


def worker_env(args: argparse.Namespace, section: str = "infer_mindspore") -> Dict[str, str]:
    """Environment of a worker: the oneDNN ISA cap (MindSpore only) must be set before the framework loads.

    ``infer_torch_capped`` runs PyTorch under the same cap (oneDNN and ATen), to show how much of the
    difference to PyTorch is the instruction set MindSpore is held to.
    """
    env = dict(os.environ)
    for name in (*TORCH_ISA_CAP, CAP_MARK):
        env.pop(name, None)
    if section in CAPPED_SECTIONS:
        # "default": uncapped, said explicitly, or the worker's own setup would put the project's cap in place
        env["ONEDNN_MAX_CPU_ISA"] = "ALL" if args.isa == "default" else args.isa
    if args.isa != "default" and section == "infer_torch_capped":
        env["ONEDNN_MAX_CPU_ISA"], env["ATEN_CPU_CAPABILITY"] = args.isa, args.isa.lower()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    return env


def forward_args(args: argparse.Namespace) -> List[str]:
    """The command-line options a worker needs to do the same measurement."""
    keys = ("arch", "num_classes", "batch", "image_size", "train_steps", "infer_iters", "warmup", "data_images",
            "jit_level", "threads", "isa")
    out = [f"--{k}={getattr(args, k)}" for k in keys]
    return out + (["--graph_kernel"] if args.graph_kernel else [])


def error_line(output: str) -> str:
    """The line of a failed worker's output that says what went wrong (MindSpore logs a lot around it)."""
    lines = [line.strip() for line in output.splitlines()
             if line.strip() and not line.startswith(("[WARNING", "[INFO", "---", "- C++"))]
    errors = [line for line in lines if "Error" in line]
    return (errors or lines or ["no output"])[-1]


def run_section(section: str, args: argparse.Namespace, workdir: Path) -> dict:
    """Run one worker in a fresh process; its result, or why it was skipped or failed."""
    missing = [m for m in REQUIRES.get(section, ()) if not _installed(m)]
    if missing:
        _LOG.warning("%s skipped: %s not installed", section, " and ".join(missing))
        return {"skipped": f"{' and '.join(missing)} not installed (pip install {' '.join(missing)})"}
    result_file = workdir / f"{section}.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", section, "--workdir", str(workdir),
               *forward_args(args)]
    _LOG.info("running %s", section)
    start = time.perf_counter()
    proc = subprocess.run(command, env=worker_env(args, section), capture_output=True, text=True, timeout=args.timeout)
    wall = time.perf_counter() - start
    if proc.returncode != 0 or not result_file.is_file():
        tail = error_line(proc.stdout + "\n" + proc.stderr)
        _LOG.error("%s failed (exit %d): %s", section, proc.returncode, tail)
        return {"failed": f"exit {proc.returncode}: {tail}", "wall_s": wall}
    result = json.loads(result_file.read_text())
    result["wall_s"] = wall
    _LOG.info("%s done in %.1f s", section, wall)
    return result


def cpu_model() -> str:
    """The CPU model name (Linux /proc/cpuinfo), else what platform reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> Dict[str, Optional[str]]:
    """Versions of the frameworks compared (None when not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for package in ("mindspore", "torch", "onnxruntime", "onnx", "numpy", "pillow"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = None
    return out


def load_average() -> List[float]:
    """1, 5 and 15 minute load averages (other work on the machine skews timings)."""
    return [round(v, 2) for v in os.getloadavg()]


def compare_logits(workdir: Path) -> Dict[str, float]:
    """Largest difference of each runner's batch-1 logits from PyTorch's, relative to the largest PyTorch logit."""
    reference = workdir / "logits_torch.npy"
    if not reference.is_file():
        return {}
    expected = np.load(reference).astype(np.float64)
    scale = max(float(np.abs(expected).max()), 1e-30)
    return {f.stem[len("logits_"):]: float(np.abs(np.load(f) - expected).max() / scale)
            for f in sorted(workdir.glob("logits_*.npy")) if f != reference}


# the CPU flags that decide which kernels run (oneDNN, MLAS, this project's native kernel)
REPORTED_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                  "avx512_bf16", "amx_tile", "avx_vnni")


def cpu_flags() -> List[str]:
    """The vector-ISA flags of this CPU (from /proc/cpuinfo) among :data:`REPORTED_FLAGS`."""
    from src.native_depthwise import _cpu_flags

    have = _cpu_flags()
    return [flag for flag in REPORTED_FLAGS if flag in have]


def machine_info() -> dict:
    """Where the numbers were taken."""
    from src.native_depthwise import cpu_isas

    return {"cpu": cpu_model(), "cores": os.cpu_count(), "cpu_flags": cpu_flags(),
            "native_kernel_isa": cpu_isas()[0], "platform": platform.platform(), "versions": versions()}


# Sections rerun in alternating rounds (--rounds): the MindSpore entry points and their competitors
ROUND_SECTIONS = ("infer_entry", "infer_entry_one", "infer_onnxruntime", "infer_torch")


def _round_result(section: dict) -> Dict[str, Optional[float]]:
    """Batch-1 median ms of every runner of one section's run (None where it failed)."""
    return {name: node["batch1"]["median_ms"] for name, node in section.items()
            if isinstance(node, dict) and "batch1" in node}


def round_summary(results: dict) -> Dict[str, dict]:
    """Per runner of the rounds: its batch-1 ms per round, their median, and its ratio to PyTorch per round and
    of the medians (above 1 = faster than PyTorch)."""
    rounds = results.get("rounds") or {}
    torch_ms = [r.get("eager") for r in rounds.get("infer_torch", [])]
    out: Dict[str, dict] = {}
    for section, runs in rounds.items():
        for name in runs[0]:
            values = [r.get(name) for r in runs]
            if any(v is None for v in values):
                continue
            row = {"ms": values, "median_ms": float(np.median(values))}
            if torch_ms and all(torch_ms) and len(torch_ms) == len(values):
                row["x_torch"] = [t / v for t, v in zip(torch_ms, values)]
                row["x_torch_of_medians"] = float(np.median(torch_ms)) / row["median_ms"]
            out[f"{section}/{name}"] = row
    return out


def run_benchmark(args: argparse.Namespace) -> dict:
    """All sections, one process each, and the combined result."""
    workdir = Path(tempfile.mkdtemp(prefix="proxylessnas-bench-"))
    try:
        results: Dict[str, Any] = {
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "command": " ".join([Path(sys.argv[0]).name if sys.argv else "run.py", *sys.argv[1:]]),
            "machine": machine_info(),
            "settings": {k: getattr(args, k) for k in ("arch", "num_classes", "batch", "image_size", "train_steps",
                                                       "infer_iters", "warmup", "data_images", "jit_level", "threads",
                                                       "isa", "graph_kernel", "quick", "rounds")},
            "load_average_before": load_average(),
            "sections": {},
        }
        for section in (s for s in SECTIONS if s in args.sections):
            results["sections"][section] = run_section(section, args, workdir)
        # the batch-1 comparison again, the runners alternating, so that a slow minute of the machine does
        # not fall on one runner only: round 1 is the pass above
        rounds = [s for s in ROUND_SECTIONS if s in args.sections and "skipped" not in results["sections"][s]]
        if args.rounds > 1 and rounds:
            results["rounds"] = {s: [_round_result(results["sections"][s])] for s in rounds}
            for index in range(2, args.rounds + 1):
                _LOG.info("round %d of %d: %s", index, args.rounds, ", ".join(rounds))
                for section in rounds:
                    results["rounds"][section].append(_round_result(run_section(section, args, workdir)))
        results["load_average_after"] = load_average()
        results["logits_vs_torch_rel"] = compare_logits(workdir)
        return results
    finally:
        if args.keep:
            _LOG.info("work folder kept: %s", workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------
def _get(results: dict, *keys: str) -> Any:
    node: Any = results["sections"]
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _fmt(value: Optional[float], digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ratio(ours: Optional[float], theirs: Optional[float], higher_is_better: bool) -> str:
    if not ours or not theirs:
        return "-"
    return f"{(ours / theirs if higher_is_better else theirs / ours):.2f}x"


def _why_missing(results: dict, section: str) -> str:
    node = results["sections"].get(section) or {}
    return node.get("skipped") or (node.get("failed", "").splitlines() or [""])[0] or "not run"


def _isa_words(isa: Optional[str]) -> str:
    """How a worker's oneDNN setting reads in the report."""
    if isa == "lifted":
        return "uncapped (native kernels cover its slow convolutions)"
    return f"capped at {isa}" if isa and isa != "unset" else "at its default"


def markdown_report(results: dict) -> str:
    """The results as markdown tables with ratios against PyTorch (>1 means faster than PyTorch)."""
    s = results["settings"]
    m = results["machine"]
    v = m["versions"]
    batch, size = s["batch"], s["image_size"]
    entry_isa = _get(results, "infer_entry", "onednn_isa")
    one_isa = _get(results, "infer_entry_one", "onednn_isa")
    train_isa = _get(results, "train_mindspore", "onednn_isa")
    kernel_isa = (_get(results, "infer_entry", "kernel_isa") or _get(results, "infer_mindspore", "kernel_isa")
                  or m.get("native_kernel_isa", "?"))
    lines = [f"# Benchmark: {s['arch']}, image {size}, batch {batch}", "",
             f"- date: {results['date']}; machine: {m['cpu']}, {m['cores']} cores; load average before "
             f"{results['load_average_before']}, after {results['load_average_after']}",
             f"- CPU flags: {' '.join(m.get('cpu_flags', [])) or 'unknown'}; native kernels (depthwise, first layer) "
             f"built for {kernel_isa}",
             "- versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val),
             "- PyTorch and ONNX Runtime run at their own defaults (no ISA cap, their own thread counts)",
             "- MindSpore's oneDNN: predict.py / eval.py and this project's training step run in the environment "
             f"the project makes (oneDNN {_isa_words(entry_isa)} for many images, {_isa_words(one_isa)} for one "
             f"image, {_isa_words(train_isa)} for training); lab rows, MINDIR and MindSpore's-Conv2D training: "
             f"ONEDNN_MAX_CPU_ISA={s['isa']} "
             "(its bundled oneDNN runs depthwise and first-layer convolutions as slow reference kernels on AVX-512)",
             f"- MindSpore settings: jit_level={s['jit_level'] or 'default'}, "
             f"threads={s['threads'] or 'default'}, graph_kernel={s['graph_kernel']}"
             + ("; **--quick: sizes too small for the numbers to mean anything**" if s["quick"] else ""),
             "- ratio: speed relative to PyTorch eager on the same weights (above 1 = faster than PyTorch)", ""]

    torch_train = _get(results, "train_torch", "img_per_s")
    lines += ["## Training step", "",
              "| framework | img/s | x PyTorch | median step ms | first step (compile) s | peak RSS MiB |",
              "|---|---|---|---|---|---|"]
    native_train = _get(results, "train_mindspore", "depthwise_kernel") or "?"
    for label, key in ((f"MindSpore GRAPH, this project ({native_train} depthwise kernel, oneDNN {_isa_words(train_isa)})",
                        "train_mindspore"),
                       ("MindSpore GRAPH, MindSpore's Conv2D for depthwise", "train_mindspore_builtin"),
                       ("PyTorch eager", "train_torch")):
        node = _get(results, key)
        if not node or "img_per_s" not in node:
            lines.append(f"| {label} | skipped: {_why_missing(results, key)} | | | | |")
            continue
        lines.append(f"| {label} | {_fmt(node['img_per_s'])} | {_ratio(node['img_per_s'], torch_train, True)} | "
                     f"{_fmt(node['median_ms'])} | {_fmt(node['first_call_s'], 2)} | {_fmt(node['peak_rss_mb'], 0)} |")

    torch_b1 = _get(results, "infer_torch", "eager", "batch1", "median_ms")
    torch_bn = _get(results, "infer_torch", "eager", "batchN", "img_per_s")
    rel = results.get("logits_vs_torch_rel", {})
    lines += ["", "## Inference", "",
              f"| runner | batch 1 median ms | batch 1 p90 ms | x PyTorch (batch 1) | batch {batch} img/s | "
              f"x PyTorch (batch {batch}) | first call s | logits vs PyTorch (rel.) |",
              "|---|---|---|---|---|---|---|---|"]
    many = _get(results, "infer_entry", "entry_many_mode") or "GRAPH"
    one = _get(results, "infer_entry_one", "entry_one_mode") or "PYNATIVE"
    rows = ((f"predict.py / eval.py, .ckpt, many images: {many}, BN folded, native kernels, oneDNN "
             f"{_isa_words(entry_isa)}", "infer_entry", "entry_many", "mindspore_entry_many"),
            (f"predict.py, .ckpt, one image: {one}, BN folded, native kernels, oneDNN {_isa_words(one_isa)}",
             "infer_entry_one", "entry_one", "mindspore_entry_one"),
            (f"lab: MindSpore GRAPH, BN not folded, native kernels, oneDNN capped at {s['isa']}", "infer_mindspore",
             "plain", "mindspore_plain"),
            ("lab: MindSpore GRAPH, BN folded, MindSpore's Conv2D", "infer_mindspore", "folded_builtin",
             "mindspore_folded_builtin"),
            ("lab: MindSpore GRAPH, BN not folded, MindSpore's Conv2D", "infer_mindspore", "plain_builtin",
             "mindspore_plain_builtin"),
            ("MINDIR + GraphCell, BN folded (export default)", "infer_mindir", "folded", "mindir_folded"),
            ("MINDIR + GraphCell, BN not folded", "infer_mindir", "plain", "mindir_plain"),
            ("ONNX Runtime, BN folded (export default)", "infer_onnxruntime", "folded", "onnxruntime_folded"),
            ("ONNX Runtime, BN not folded", "infer_onnxruntime", "plain", "onnxruntime_plain"),
            ("ONNX Runtime INT8 (export.py --quantize int8, QDQ), BN folded", "infer_onnxruntime", "int8_qdq",
             "onnxruntime_int8_qdq"),
            ("ONNX Runtime INT8 (--quantize_format QOperator), BN folded", "infer_onnxruntime", "int8_qoperator",
             "onnxruntime_int8_qoperator"),
            ("PyTorch eager (eval, no_grad)", "infer_torch", "eager", None),
            (f"PyTorch eager, capped at {s['isa']} as MindSpore is (ONEDNN_MAX_CPU_ISA, ATEN_CPU_CAPABILITY)",
             "infer_torch_capped", "eager", "torch_capped"))
    for label, section, kind, logits in rows:
        node = _get(results, section, kind)
        if not node:
            why = _get(results, section, "native_skipped") if section == "infer_mindspore" else None
            lines.append(f"| {label} | skipped: {why or _why_missing(results, section)} | | | | | | |")
            continue
        b1, bn = node["batch1"], node["batchN"]
        diff = "reference" if logits is None else (f"{rel[logits]:.1e}" if logits in rel else "-")
        lines.append(f"| {label} | {_fmt(b1['median_ms'], 2)} | {_fmt(b1['p90_ms'], 2)} | "
                     f"{_ratio(b1['median_ms'], torch_b1, False)} | {_fmt(bn['img_per_s'])} | "
                     f"{_ratio(bn['img_per_s'], torch_bn, True)} | {_fmt(b1['first_call_s'], 2)} | {diff} |")

    capped = _get(results, "infer_torch_capped", "eager")
    entry = _get(results, "infer_entry", "entry_many")
    if capped and entry and entry_isa == s["isa"]:
        lines.append(f"\npredict.py / eval.py ({many}) vs PyTorch held to the same ISA ({s['isa']}): batch 1 "
                     f"{_ratio(entry['batch1']['median_ms'], capped['batch1']['median_ms'], False)}, batch {batch} "
                     f"{_ratio(entry['batchN']['img_per_s'], capped['batchN']['img_per_s'], True)}")
    fp32 = _get(results, "infer_onnxruntime", "folded")
    for fmt in ("qdq", "qoperator"):
        int8 = _get(results, "infer_onnxruntime", f"int8_{fmt}")
        if fp32 and int8:
            lines.append(f"\nINT8 {fmt.upper() if fmt == 'qdq' else 'QOperator'} vs FP32 ONNX (BN folded): batch 1 "
                         f"{_ratio(int8['batch1']['median_ms'], fp32['batch1']['median_ms'], False)}, batch {batch} "
                         f"{_ratio(int8['batchN']['img_per_s'], fp32['batchN']['img_per_s'], True)} "
                         "(accuracy: tests/test_quantize.py and export.py --eval_dataset_path)")

    summary = round_summary(results)
    if summary:
        count = len(next(iter(summary.values()))["ms"])
        labels = {"infer_entry/entry_many": f"predict.py / eval.py, many images ({many})",
                  "infer_entry_one/entry_one": f"predict.py, one image ({one})",
                  "infer_onnxruntime/folded": "ONNX Runtime, BN folded", "infer_onnxruntime/plain": "ONNX Runtime, BN not folded",
                  "infer_onnxruntime/int8_qdq": "ONNX Runtime INT8 QDQ",
                  "infer_onnxruntime/int8_qoperator": "ONNX Runtime INT8 QOperator",
                  "infer_torch/eager": "PyTorch eager"}
        lines += ["", f"## Batch 1 in {count} alternating rounds", "",
                  "Each round runs the entry points, ONNX Runtime and PyTorch once more, one after the other (round 1 "
                  "is the table above), so that a slow minute of this machine does not fall on one runner only. "
                  "x PyTorch per round is against PyTorch's time of the same round.", "",
                  "| runner | ms per round | median ms | x PyTorch per round | x PyTorch (medians) |",
                  "|---|---|---|---|---|"]
        for key, row in summary.items():
            per_round = ", ".join(f"{v:.2f}" for v in row["ms"])
            ratios = ", ".join(f"{v:.2f}x" for v in row.get("x_torch", [])) or "-"
            medians = f"{row['x_torch_of_medians']:.2f}x" if "x_torch_of_medians" in row else "-"
            lines.append(f"| {labels.get(key, key)} | {per_round} | {row['median_ms']:.2f} | {ratios} | {medians} |")

    data = _get(results, "data")
    lines += ["", "## Data pipeline (src/dataset.py create_dataset)", ""]
    if not data or "train_w1" not in data:
        lines.append(f"not measured: {_why_missing(results, 'data')}")
    else:
        lines += [f"{data['images']} generated JPEGs of {data['jpeg_size'][0]}x{data['jpeg_size'][1]}, "
                  f"output {size}x{size}, batch {min(batch, data['images'])}.", "",
                  "| transforms | 1 worker img/s | 2 workers img/s |", "|---|---|---|"]
        for split in ("train", "eval"):
            lines.append(f"| {split} | {_fmt(data[f'{split}_w1']['img_per_s'])} | "
                         f"{_fmt(data[f'{split}_w2']['img_per_s'])} |")
    export = _get(results, "export")
    if export and "failed" not in export:
        lines += ["", "## Export (src/export.py, reload check included)", "",
                  "| file | seconds | max abs diff vs network | tolerance |", "|---|---|---|---|"]
        for name, node in export.items():
            if isinstance(node, dict) and "max_abs_diff" in node:
                lines.append(f"| {name} | {_fmt(node['seconds'])} | {node['max_abs_diff']:.2g} | "
                             f"{node['tolerance']:.2g} |")
            elif isinstance(node, dict) and "calibration_images" in node:
                lines.append(f"| {name} | {_fmt(node['seconds'])} | INT8: calibrated on "
                             f"{node['calibration_images']} images | - |")
    return "\n".join(lines) + "\n"


def write_results(results: dict, out: Path, stem: str = "benchmark") -> List[Path]:
    """Write ``<stem>.json`` and ``<stem>.md`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"{stem}.json", out / f"{stem}.md"
    json_path.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    md_path.write_text(markdown_report(results))
    return [json_path, md_path]


def build_parser() -> argparse.ArgumentParser:
    """Command line of the benchmark."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes and few iterations (checks that it runs)")
    p.add_argument("--arch", default="proxylessnas_mobile")
    p.add_argument("--num_classes", type=int, default=1000)
    p.add_argument("--batch", type=int, default=32, help="training batch and inference throughput batch")
    p.add_argument("--image_size", type=int, default=224)
    p.add_argument("--train_steps", type=int, default=8, help="timed training steps (after warm-up)")
    p.add_argument("--infer_iters", type=int, default=40, help="timed batch-1 inference calls")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls after the first one")
    p.add_argument("--data_images", type=int, default=192, help="generated JPEGs for the data pipeline")
    p.add_argument("--jit_level", default="", choices=["", "O0", "O1", "O2"], help="MindSpore jit level (default: its own)")
    p.add_argument("--threads", type=int, default=0, help="MindSpore runtime_num_threads (0: its default)")
    p.add_argument("--graph_kernel", action="store_true", help="MindSpore enable_graph_kernel")
    p.add_argument("--isa", default="AVX2", help="ONEDNN_MAX_CPU_ISA for MindSpore's lab sections ('default': "
                   "no cap, oneDNN's ALL); the entry points and the project's training step make their own setting")
    p.add_argument("--rounds", type=int, default=3, help="batch-1 rounds of the entry points, ONNX Runtime and "
                   "PyTorch, alternating (1: the single pass only)")
    p.add_argument("--sections", default=",".join(SECTIONS),
                   help="comma-separated subset of: " + ", ".join(SECTIONS))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="folder for the JSON and markdown")
    p.add_argument("--name", default="benchmark", help="file stem of the results")
    p.add_argument("--timeout", type=int, default=1800, help="seconds allowed per section")
    p.add_argument("--keep", action="store_true", help="keep the work folder (weights, exported files)")
    p.add_argument("--worker", choices=SECTIONS, help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    return p


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse and complete the options (--quick shrinks sizes; sections needed by others are added)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quick and not args.worker:
        args.batch, args.image_size = min(args.batch, 2), min(args.image_size, 64)
        args.train_steps, args.infer_iters, args.warmup, args.data_images = 2, 4, 1, 8
    if isinstance(args.sections, str):
        wanted = [s.strip() for s in args.sections.split(",") if s.strip()]
        unknown = sorted(set(wanted) - set(SECTIONS))
        if unknown:
            parser.error(f"--sections: unknown {unknown}; valid are {', '.join(SECTIONS)}")
        if any(s.startswith(("infer_", "train_")) for s in wanted):
            wanted.append("weights")
        if any(s in ("infer_mindir", "infer_onnxruntime") for s in wanted):
            wanted.append("export")
        args.sections = set(wanted)
    if args.image_size % 32 or args.image_size < 32:
        parser.error(f"--image_size must be a multiple of 32 and at least 32, got {args.image_size}")
    if args.batch < 1:
        parser.error(f"--batch must be >= 1, got {args.batch}")
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")
    if args.quick and not args.worker:
        args.rounds = min(args.rounds, 2)
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the benchmark (or, with the internal --worker, one section of it)."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    if args.worker:
        workdir = Path(args.workdir)
        result = WORKERS[args.worker](args, workdir)
        result.setdefault("peak_rss_mb", peak_rss_mb())
        (workdir / f"{args.worker}.json").write_text(json.dumps(result))
        return 0
    results = run_benchmark(args)
    paths = write_results(results, Path(args.out), args.name)
    print(markdown_report(results))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
