"""src/native_depthwise.py: the native kernel's instruction-set builds (AVX-512 and AVX2) each pass the
numpy self-check and compute what MindSpore's Conv2D computes on CPUs that have them; the best one is
chosen at run time; a damaged cached library is rebuilt, never loaded."""
import ctypes
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ms = pytest.importorskip("mindspore")

from mindspore import ops  # noqa: E402

from src import native_depthwise as nd  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
COMPILER = os.environ.get("CXX", "g++")
needs_compiler = pytest.mark.skipif(shutil.which(COMPILER) is None,
                                    reason=f"no C++ compiler '{COMPILER}' on PATH: the kernel cannot be built")


@pytest.fixture(scope="module")
def kernel_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("kernels")


def isa_library(isa: str, directory: Path) -> Path:
    """The checked library for ``isa``; skipped, naming the missing CPU flags, where this CPU lacks them."""
    if isa not in nd.cpu_isas():
        missing = sorted(dict((n, need) for n, need, _, _ in nd.ISAS)[isa] - nd._cpu_flags())
        pytest.skip(f"this CPU has no {isa} (missing flags: {', '.join(missing) or 'not x86-64'})")
    return nd.checked_library(isa, directory)  # a failed build or self-check fails the test


@needs_compiler
@pytest.mark.parametrize("isa, lanes", [("avx512", 16), ("avx2", 8)])
def test_isa_build_passes_the_self_check(isa, lanes, kernel_dir):
    library = isa_library(isa, kernel_dir)
    assert library.name.startswith(f"depthwise-{isa}-")
    assert ctypes.CDLL(str(library)).DwLanes() == lanes
    nd.self_check(library)  # raises when any entry point is off


@needs_compiler
@pytest.mark.parametrize("isa", ["avx512", "avx2"])
@pytest.mark.parametrize("stride", [1, 2])
def test_isa_build_matches_mindspore_conv2d(isa, stride, kernel_dir):
    library = ctypes.CDLL(str(isa_library(isa, kernel_dir)))
    rng = np.random.default_rng(7 + stride)
    for k in (3, 5, 7):
        # 40 channels: two full 16-lane blocks (five of 8) and a partial one; a MobileNet-like plane
        x = rng.standard_normal((2, 40, 17, 17)).astype(np.float32)
        w = rng.standard_normal((40, 1, k, k)).astype(np.float32)
        b = rng.standard_normal(40).astype(np.float32)
        conv = ops.Conv2D(40, k, pad_mode="pad", pad=k // 2, stride=stride, group=40)
        want = conv(ms.Tensor(x), ms.Tensor(w)).asnumpy() + b[:, None, None]
        got = np.zeros(want.shape, np.float32)
        assert nd._call(getattr(library, f"DwForwardBiasS{stride}"), [x, w, b, got]) == 0
        # two float32 sums of k*k products each round at most k*k + 1 times: bound from the magnitudes
        magnitude = nd.reference_conv(np.abs(x), np.abs(w), stride) + np.abs(b)[:, None, None]
        bound = 2 * (k * k + 1) * np.finfo(np.float32).eps * magnitude
        assert np.all(np.abs(got.astype(np.float64) - want) <= bound), f"k={k}"


def test_isa_needing_missing_cpu_flags_is_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(nd, "_cpu_flags", lambda: {"sse2", "avx2", "fma"})
    monkeypatch.setattr(nd.platform, "machine", lambda: "x86_64")
    assert nd.cpu_isas() == ["avx2", "generic"]
    with pytest.raises(nd.KernelUnavailable, match="cannot run the avx512 build .*lack avx512f"):
        nd.checked_library("avx512", tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing built for it


@needs_compiler
def test_the_best_isa_of_this_cpu_is_used():
    assert nd.unavailable_reason() == ""
    assert nd.active_isa() == nd.cpu_isas()[0]
    assert Path(nd.library_path()).name.startswith(f"depthwise-{nd.cpu_isas()[0]}-")


@needs_compiler
def test_cut_short_cached_library_is_rebuilt_not_loaded(tmp_path):
    # the cache as the field leaves it: a real build, then the file cut short (a full disk, a killed copy)
    cache = tmp_path / "cache"
    good = nd.build_library(cache)
    size, original = good.stat().st_size, good.read_bytes()
    with open(good, "r+b") as handle:
        handle.truncate(size // 3)
    with pytest.raises(nd.KernelUnavailable, match="is damaged"):
        nd.self_check(good)  # refused before it is mapped
    # a fresh process (as a user's run is) with that cache: it must rebuild and run, not die of SIGBUS
    code = ("import logging; logging.basicConfig(level=logging.WARNING);"
            "from src import native_depthwise as nd; print(nd.library_path())")
    env = dict(os.environ, PROXYLESSNAS_KERNEL_DIR=str(cache))
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "is damaged (size or hash differs from its build); rebuilding it" in done.stderr
    rebuilt = Path(done.stdout.strip().splitlines()[-1])
    assert rebuilt.parent == cache and rebuilt.stat().st_size == size
    assert rebuilt.read_bytes() == original  # the same compiler call gives the same library
    assert sorted(p.name for p in cache.iterdir()) == [rebuilt.name]  # the damaged file is gone


@needs_compiler
def test_a_build_failing_its_check_falls_back_to_the_next_isa(monkeypatch, caplog):
    isas = nd.cpu_isas()
    if len(isas) < 2:
        pytest.skip(f"this CPU has one kernel build only ({isas[0]}): nothing to fall back to")
    real = nd.checked_library

    def best_is_broken(isa, directory=None):
        if isa == isas[0]:
            raise nd.KernelUnavailable(f"depthwise-{isa}.so: DwForwardS1 is off by 0.5 (k=3)")
        return real(isa, directory)

    monkeypatch.setattr(nd, "checked_library", best_is_broken)
    nd._library_or_reason.cache_clear()
    try:
        with caplog.at_level("WARNING", logger="src.native_depthwise"):
            assert nd.active_isa() == isas[1]
        assert f"using the {isas[1]} build because depthwise-{isas[0]}.so: DwForwardS1 is off by 0.5" in caplog.text
    finally:
        nd._library_or_reason.cache_clear()  # later tests get the real choice again


@needs_compiler
def test_kernel_isa_can_be_pinned(monkeypatch):
    isa = nd.cpu_isas()[-1]  # "generic" on x86-64: every CPU runs it
    monkeypatch.setenv("PROXYLESSNAS_KERNEL_ISA", isa)
    nd._library_or_reason.cache_clear()
    try:
        assert nd.active_isa() == isa
        monkeypatch.setenv("PROXYLESSNAS_KERNEL_ISA", "sse9")
        nd._library_or_reason.cache_clear()
        assert nd.unavailable_reason() == "PROXYLESSNAS_KERNEL_ISA=sse9 is not one of avx512, avx2, generic"
    finally:
        monkeypatch.delenv("PROXYLESSNAS_KERNEL_ISA")
        nd._library_or_reason.cache_clear()
