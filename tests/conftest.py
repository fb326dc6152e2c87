"""Shared test setup: import path, CPU environment, reference files, small helpers."""
import os
import sys
from pathlib import Path

# Before MindSpore loads (see src/model_utils/device.py for why).
os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# Copies of the official released network configs and the official (Pixel 1) latency table, so that a
# clone runs the whole suite on its own (originals: ../shared/reference/ of the project's workspace).
DATA = ROOT / "tests" / "data"
NET_CONFIGS = DATA / "net_configs"
OFFICIAL_LATENCY_TABLE = DATA / "mobile_trim.yaml"

VARIANT_CONFIGS = {
    "proxylessnas_mobile": "proxyless_mobile.config",
    "proxylessnas_mobile_14": "proxyless_mobile_14.config",
    "proxylessnas_cpu": "proxyless_cpu.config",
    "proxylessnas_gpu": "proxyless_gpu.config",
}


def official_config(variant: str) -> Path:
    """Path of the released JSON config of a variant (kept in tests/data/net_configs/)."""
    return NET_CONFIGS / VARIANT_CONFIGS[variant]


def default_depthwise_kernel() -> str:
    """What `depthwise_kernel auto` picks on CPU here: native where a C++ compiler exists, else builtin."""
    import shutil

    return "native" if shutil.which(os.environ.get("CXX", "g++")) else "builtin"


def trained_like(variant: str = "proxylessnas_mobile", seed: int = 5):
    """A MindSpore network with random weights and realistic BN statistics (logits O(1)), in eval mode.

    Built from the randomized PyTorch reference of the variant's official config (needs torch).
    """
    torch_reference = pytest.importorskip("torch_reference", reason="needs torch for the randomized reference")
    import mindspore as ms
    from src import create_model
    from src.arch import get_arch
    from src.convert import convert

    model = torch_reference.build(official_config(variant), seed=seed)
    tensors = {k: v.numpy() for k, v in model.state_dict().items()}
    net = create_model(variant)
    ms.load_param_into_net(net, {k: ms.Parameter(ms.Tensor(v), name=k)
                                 for k, v in convert(tensors, get_arch(variant), "official").items()},
                           strict_load=True)
    net.set_train(False)
    return net


# ---------------------------------------------------------------------------
# Tolerances of comparisons across kernels, frameworks and CPUs: float32 rounding, not a value that passed
# ---------------------------------------------------------------------------
UNIT_ROUNDOFF = 2.0 ** -24  # float32: half of np.finfo(np.float32).eps


def float32_tolerance(longest_sum: int, depth: int) -> float:
    """Relative error that float32 rounding can leave in a result of ``depth`` chained layers.

    Two correct implementations differ only in the order of their sums. The rounding error of an
    n-term float32 sum grows like sqrt(n) * u (random-signed errors; Higham & Mary, SIAM J. Sci.
    Comput. 2019, bound it by a small constant times that with high probability), and every layer of
    the chain adds its own share of it.
    """
    import math

    return depth * math.sqrt(longest_sum) * UNIT_ROUNDOFF


def network_tolerance(net) -> float:
    """float32_tolerance of an inference forward of ``net``, relative to its largest logit.

    Its Conv2d and Dense layers are the chain; their longest dot product is the longest sum (1280
    terms for the classifier). BN keeps every layer's activations O(1), so each layer's relative
    error carries over to the logits' scale. proxylessnas_mobile: 62 layers, 1.3e-4.
    """
    from mindspore import nn

    layers = [cell for _, cell in net.cells_and_names() if isinstance(cell, (nn.Conv2d, nn.Dense))]
    longest = max(cell.in_channels if isinstance(cell, nn.Dense)
                  else cell.in_channels // cell.group * cell.kernel_size[0] * cell.kernel_size[1] for cell in layers)
    return float32_tolerance(longest, len(layers))


def assert_logits_close(got, expected, net) -> None:
    """Largest logit difference within network_tolerance(net) of the largest logit."""
    import numpy as np

    got, expected = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    assert got.shape == expected.shape
    scale, tol = float(np.abs(expected).max()), network_tolerance(net)
    err = float(np.abs(got - expected).max())
    assert err <= tol * scale, f"max abs logit difference {err:.3g} > {tol:.3g} * largest logit {scale:.3g}"


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: end-to-end runs of a minute or more")


def make_image_folder(root: Path, classes=("cat", "dog"), n_train: int = 4, n_val: int = 2, size=(40, 52),
                      seed: int = 0) -> Path:
    """A tiny ImageFolder dataset (root/train/<class>/*.jpg, root/val/<class>/*.jpg) of random colour images.

    Each class has its own mean colour so a network can tell them apart.
    """
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, count in (("train", n_train), ("val", n_val)):
        if count == 0:
            continue
        for c, name in enumerate(classes):
            folder = Path(root) / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                base = np.array([60 + 120 * (c % 2), 60 + 60 * (c % 3), 200 - 100 * (c % 2)])
                pixels = np.clip(base + rng.normal(0, 30, (size[0], size[1], 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{name}_{i}.jpg", quality=90)
    return Path(root)


def run_script(args, cwd=None, timeout=600, env=None):
    """Run `python <script> args...` from the repository root; returns the CompletedProcess."""
    import subprocess

    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, *map(str, args)], cwd=str(cwd or ROOT), capture_output=True, text=True,
                          timeout=timeout, env=full_env)


# ---------------------------------------------------------------------------
# Order independence: every test starts from the same seeds and leaves no global state behind
# ---------------------------------------------------------------------------
TEST_SEED = 0


def _own_handlers(logger):
    """The logger's handlers other than pytest's per-phase capture handlers (pytest adds and removes those)."""
    return [h for h in logger.handlers if not type(h).__module__.startswith("_pytest")]


def seed_everything(seed: int = TEST_SEED) -> None:
    """Seed Python's and numpy's global generators, and MindSpore's (weight initialisers, dataset ops) once loaded."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    ms = sys.modules.get("mindspore")
    if ms is not None:
        ms.set_seed(seed)  # also seeds numpy's global generator and mindspore.dataset


@pytest.fixture(autouse=True, scope="module")
def seeded_module():
    """Module-scoped fixtures (networks built once per file) draw the same weights whatever ran before."""
    seed_everything()


@pytest.fixture(autouse=True)
def isolated_global_state():
    """Seed Python, numpy, MindSpore (weights) and MindSpore dataset draws the same way before each test;
    afterwards restore the environment, working directory, root logging and MindSpore's execution mode.

    In-process entry points (train, predict, convert) set these for a whole process: a test must not
    inherit them from whichever test ran before it.
    """
    import logging

    seed_everything()
    ms = sys.modules.get("mindspore")
    environ, cwd = dict(os.environ), os.getcwd()
    root = logging.getLogger()
    level, handlers = root.level, _own_handlers(root)
    mode = ms.get_context("mode") if ms is not None else None
    yield
    ms = sys.modules.get("mindspore")
    if ms is not None:
        # a test that imported MindSpore itself found it in its start-up mode, PyNative
        ms.set_context(mode=ms.PYNATIVE_MODE if mode is None else mode)
    for handler in _own_handlers(root):
        if handler not in handlers:  # e.g. the trainer's train.log, basicConfig(force=True) of a script's main
            root.removeHandler(handler)
            handler.close()
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)
    os.chdir(cwd)
    if dict(os.environ) != environ:
        os.environ.clear()
        os.environ.update(environ)
