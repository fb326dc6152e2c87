"""src/native_depthwise.py + src/kernels/depthwise.cc: the native CPU kernels (depthwise convolutions and
the dense first layer) compute what MindSpore's Conv2D computes (forward, both gradients, the fused
inference forms, whole networks, a training step), are built and cached safely, and are chosen, refused
or replaced as documented; the AVX2 cap on oneDNN is lifted only when they cover the slow convolutions."""
import logging
import os
import shutil

import numpy as np
import pytest

from conftest import UNIT_ROUNDOFF, float32_tolerance, network_tolerance, trained_like

ms = pytest.importorskip("mindspore")

from mindspore import nn, ops  # noqa: E402

from src import create_model  # noqa: E402
from src import native_depthwise as nd  # noqa: E402
from src.arch import get_arch  # noqa: E402
from src.errors import UserError  # noqa: E402
from src.fuse import fold_batchnorm  # noqa: E402


@pytest.fixture(scope="module")
def library():
    """The built and checked library; skipped (with the reason) only where no C++ compiler exists."""
    compiler = os.environ.get("CXX", "g++")
    if shutil.which(compiler) is None:
        pytest.skip(f"no C++ compiler '{compiler}' on PATH: the native kernel cannot be built here")
    return nd.library_path()  # with a compiler present, a failed build or check fails the test


def close(got, expected, rel=1e-5, floor=1e-6):
    """Max abs difference within ``rel`` of the largest expected value (at least ``floor``).

    rel 1e-5 for one operator: its longest sum has n <= 198 terms (a filter gradient here; k*k <= 49
    for the forward and the input gradient). Random-signed rounding leaves about sqrt(n) * u of the
    sum of |terms|, which for standard-normal data is about 0.2 * sqrt(n) times the largest result:
    0.2 * n * u = 2.4e-6 of the largest value, and 1e-5 allows four times that.
    """
    got, expected = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    assert got.shape == expected.shape
    scale = max(floor, float(np.abs(expected).max()))
    err = float(np.abs(got - expected).max())
    assert err <= rel * scale, f"max abs error {err:.3g} vs scale {scale:.3g}"


# ---------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------
def test_build_is_cached_and_passes_the_numpy_check(library, tmp_path):
    built = nd.build_library(tmp_path)
    assert built.parent == tmp_path and built.suffix == ".so"
    stamp = built.stat().st_mtime_ns
    assert nd.build_library(tmp_path) == built and built.stat().st_mtime_ns == stamp  # reused, not rebuilt
    nd.self_check(built)
    assert [p.name for p in tmp_path.iterdir()] == [built.name]  # no temporary files left behind


def test_reference_conv_matches_mindspore_conv2d():
    # the numpy reference used by the self check is itself checked against MindSpore
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 5, 9, 7)).astype(np.float32)
    w = rng.standard_normal((5, 1, 5, 5)).astype(np.float32)
    conv = ops.Conv2D(5, 5, pad_mode="pad", pad=2, stride=2, group=5)
    close(nd.reference_conv(x, w, 2), conv(ms.Tensor(x), ms.Tensor(w)).asnumpy())


def test_missing_compiler_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("CXX", "no-such-compiler-xyz")
    with pytest.raises(nd.KernelUnavailable, match="no C\\+\\+ compiler 'no-such-compiler-xyz'"):
        nd.build_library(tmp_path)


def test_failed_compile_leaves_nothing(monkeypatch, tmp_path):
    fake = tmp_path / "bin" / "fakecxx"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\n[ \"$1\" = --version ] && { echo fake 1.0; exit 0; }\necho 'boom: bad flag' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CXX", str(fake))
    out = tmp_path / "cache"
    with pytest.raises(nd.KernelUnavailable, match="compiling depthwise.cc failed: boom: bad flag"):
        nd.build_library(out)
    assert list(out.iterdir()) == []


def test_unwritable_cache_folder_is_named(library, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(nd.KernelUnavailable, match="PROXYLESSNAS_KERNEL_DIR"):
        nd.build_library(blocker / "sub")


def test_wrong_shapes_are_refused(library):
    # the kernel returns an error instead of computing something else; MindSpore raises on it
    import ctypes

    lib = ctypes.CDLL(library)
    x, w = np.zeros((1, 4, 6, 6), np.float32), np.zeros((4, 1, 3, 3), np.float32)
    assert nd._call(lib.DwForwardS1, [x, w, np.zeros((1, 4, 6, 6), np.float32)]) == 0
    assert nd._call(lib.DwForwardS1, [x, w, np.zeros((1, 4, 3, 3), np.float32)]) != 0  # stride-2 shape
    assert nd._call(lib.DwForwardS2, [x, w, np.zeros((1, 4, 3, 3), np.float32)]) == 0
    assert nd._call(lib.DwForwardS1, [x, np.zeros((3, 1, 3, 3), np.float32), np.zeros((1, 4, 6, 6))]) != 0
    assert nd._call(lib.DwForwardS1, [x, np.zeros((4, 1, 4, 4), np.float32), np.zeros((1, 4, 6, 6))]) != 0
    # dense: at most DENSE_MAX_IN input channels; output channels from the weight
    dense_w = np.zeros((5, 4, 3, 3), np.float32)
    assert nd._call(lib.DenseForwardS2, [x, dense_w, np.zeros((1, 5, 3, 3), np.float32)]) == 0
    assert nd._call(lib.DenseForwardS2, [x, dense_w, np.zeros((1, 4, 3, 3), np.float32)]) != 0
    wide = nd.DENSE_MAX_IN + 1
    assert nd._call(lib.DenseForwardS1, [np.zeros((1, wide, 6, 6)), np.zeros((5, wide, 3, 3)),
                                         np.zeros((1, 5, 6, 6))]) != 0
    # the input-bias form needs one input bias per channel
    b = np.zeros(4, np.float32)
    assert nd._call(lib.DwForwardInputBiasRelu6BiasS1, [x, w, b, b, np.zeros((1, 4, 6, 6), np.float32)]) == 0
    assert nd._call(lib.DwForwardInputBiasRelu6BiasS1, [x, w, b, np.zeros(3, np.float32),
                                                         np.zeros((1, 4, 6, 6), np.float32)]) != 0


# ---------------------------------------------------------------------------
# Operators against MindSpore's Conv2D
# ---------------------------------------------------------------------------
class _Builtin(nn.Cell):
    def __init__(self, channels, k, stride):
        super().__init__()
        self.conv = ops.Conv2D(channels, k, pad_mode="pad", pad=k // 2, stride=stride, group=channels)

    def construct(self, x, w):
        return self.conv(x, w)


class _Native(nn.Cell):
    def __init__(self, stride, kind="depthwise"):
        super().__init__()
        self.conv = nd.operators(stride, kind)["conv"]

    def construct(self, x, w):
        return self.conv(x, w)


SHAPES = [  # n, c, h, w, k, stride: channel tails (not a multiple of 8), odd sizes, 1x1 maps, k 3/5/7
    (2, 12, 9, 11, 3, 1), (1, 8, 10, 10, 5, 2), (3, 20, 7, 6, 7, 1), (2, 16, 15, 15, 7, 2),
    (1, 4, 1, 1, 3, 2), (2, 3, 8, 5, 5, 1), (1, 24, 12, 13, 3, 2),
    # maps smaller than the kernel, as in the last stages at small input sizes
    (2, 16, 1, 1, 7, 1), (2, 16, 2, 2, 5, 2), (2, 16, 2, 2, 7, 1), (2, 8, 4, 4, 7, 2), (2, 16, 3, 3, 5, 1)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_forward_and_gradients_match_conv2d(library, shape):
    n, c, h, w, k, stride = shape
    rng = np.random.default_rng(sum(shape))
    x = ms.Tensor(rng.standard_normal((n, c, h, w)).astype(np.float32))
    wt = ms.Tensor(rng.standard_normal((c, 1, k, k)).astype(np.float32))
    builtin, native = _Builtin(c, k, stride), _Native(stride)
    close(native(x, wt).asnumpy(), builtin(x, wt).asnumpy())
    # gradients of a weighted sum, so every output position counts differently
    g = ms.Tensor(rng.standard_normal(builtin(x, wt).shape).astype(np.float32))
    grads = [ms.grad(lambda a, b, cell=cell: (cell(a, b) * g).sum(), grad_position=(0, 1))(x, wt)
             for cell in (builtin, native)]
    close(grads[1][0].asnumpy(), grads[0][0].asnumpy())
    close(grads[1][1].asnumpy(), grads[0][1].asnumpy())


class _BuiltinDense(nn.Cell):
    def __init__(self, out_channels, k, stride):
        super().__init__()
        self.conv = ops.Conv2D(out_channels, k, pad_mode="pad", pad=k // 2, stride=stride)

    def construct(self, x, w):
        return self.conv(x, w)


DENSE_SHAPES = [  # n, cin, cout, h, w, k, stride: the stem (3 -> 32, 3x3, stride 2), grey images, tails
    (2, 3, 32, 17, 18, 3, 2), (1, 1, 5, 9, 7, 5, 1), (2, 8, 19, 6, 11, 3, 1), (1, 3, 16, 2, 2, 7, 2)]


@pytest.mark.parametrize("shape", DENSE_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_dense_first_layer_matches_conv2d(library, shape):
    n, cin, cout, h, w, k, stride = shape
    rng = np.random.default_rng(sum(shape))
    x = ms.Tensor(rng.standard_normal((n, cin, h, w)).astype(np.float32))
    wt = ms.Tensor(rng.standard_normal((cout, cin, k, k)).astype(np.float32))
    builtin, native = _BuiltinDense(cout, k, stride), _Native(stride, "dense")
    expected = builtin(x, wt).asnumpy()
    close(native(x, wt).asnumpy(), expected)
    g = ms.Tensor(rng.standard_normal(expected.shape).astype(np.float32))
    grads = [ms.grad(lambda a, b, cell=cell: (cell(a, b) * g).sum(), grad_position=(0, 1))(x, wt)
             for cell in (builtin, native)]
    close(grads[1][0].asnumpy(), grads[0][0].asnumpy())
    close(grads[1][1].asnumpy(), grads[0][1].asnumpy())
    b = rng.standard_normal(cout).astype(np.float32) * 2
    plain = expected + b[None, :, None, None]
    close(nd.operators(stride, "dense")["bias"](x, wt, ms.Tensor(b)).asnumpy(), plain)
    close(nd.operators(stride, "dense")["bias_relu6"](x, wt, ms.Tensor(b)).asnumpy(), np.clip(plain, 0, 6))


@pytest.mark.parametrize("stride", [1, 2])
def test_input_bias_forms_apply_the_expansion_bias_and_relu6_first(library, stride):
    rng = np.random.default_rng(10 + stride)
    x = rng.standard_normal((2, 10, 9, 9)).astype(np.float32) * 4
    a = rng.standard_normal(10).astype(np.float32) * 2
    wt = ms.Tensor(rng.standard_normal((10, 1, 3, 3)).astype(np.float32))
    b = rng.standard_normal(10).astype(np.float32)
    activated = np.clip(x + a[None, :, None, None], 0, 6)
    assert (x + a[None, :, None, None] > 6).any() and (x + a[None, :, None, None] < 0).any()
    plain = _Builtin(10, 3, stride)(ms.Tensor(activated), wt).asnumpy() + b[None, :, None, None]
    ops_ = nd.operators(stride)
    args = (ms.Tensor(x), wt, ms.Tensor(b), ms.Tensor(a))
    close(ops_["input_bias_relu6_bias"](*args).asnumpy(), plain)
    close(ops_["input_bias_relu6_bias_relu6"](*args).asnumpy(), np.clip(plain, 0, 6))


@pytest.mark.parametrize("stride", [1, 2])
def test_fused_bias_and_relu6_forms(library, stride):
    rng = np.random.default_rng(stride)
    x = ms.Tensor(rng.standard_normal((2, 10, 9, 9)).astype(np.float32) * 3)
    wt = ms.Tensor(rng.standard_normal((10, 1, 3, 3)).astype(np.float32))
    b = rng.standard_normal(10).astype(np.float32) * 2
    plain = _Builtin(10, 3, stride)(x, wt).asnumpy() + b[None, :, None, None]
    close(nd.operators(stride)["bias"](x, wt, ms.Tensor(b)).asnumpy(), plain)
    close(nd.operators(stride)["bias_relu6"](x, wt, ms.Tensor(b)).asnumpy(), np.clip(plain, 0, 6))
    assert (plain < 0).any() and (plain > 6).any()  # both clamps were exercised


# ---------------------------------------------------------------------------
# Whole networks
# ---------------------------------------------------------------------------
def test_network_logits_match_builtin_plain_and_folded(library):
    net = trained_like(seed=7)
    x = ms.Tensor(np.random.default_rng(2).standard_normal((2, 3, 96, 96)).astype(np.float32))
    expected = net(x).asnumpy()
    assert np.abs(expected).max() > 1.0  # real logits
    spec = get_arch("proxylessnas_mobile")
    depthwise = sum(1 for b in spec.blocks if not b.zero)
    expanding = sum(1 for b in spec.blocks if not b.zero and b.expand_ratio != 1)

    native = trained_like(seed=7)
    # every depthwise conv and the stem; no deferred bias in a trainable network
    assert nd.set_native(native, True) == depthwise + 1 == nd.native_count(native)
    assert nd.slow_on_avx512(native) == []
    close(native(x).asnumpy(), expected, rel=network_tolerance(net))

    folded = fold_batchnorm(net)
    assert nd.native_count(folded) == 0  # folding builds fresh, builtin cells
    assert nd.set_native(folded, True) == depthwise + 1
    deferred = [name for name, cell in folded.cells_and_names() if getattr(cell, "deferred", False)]
    assert len(deferred) == expanding and all(name.endswith("bc_conv") for name in deferred)
    close(folded(x).asnumpy(), expected, rel=network_tolerance(net))


# One training step, native against builtin. The updates (the first Momentum step moves every weight by
# exactly -lr * gradient) are compared, not the loss after the update: at lr 0.1 that loss turns update
# differences of rounding size into loss differences of |gradient| * |update difference| (2.6e-5 on
# 1.8 on one machine), which says nothing about the kernel.
STEP_BATCH, STEP_SIZE, STEP_LR = 4, 64, 0.1


def step_tolerance(net) -> float:
    """float32_tolerance of one training step of ``net`` on the test batch."""
    # the longest sums: BN statistics and filter gradients over batch x the stem's output map
    longest_sum = STEP_BATCH * (STEP_SIZE // 2) ** 2
    depth = sum(1 for _, cell in net.cells_and_names() if isinstance(cell, (nn.Conv2d, nn.Dense)))
    return float32_tolerance(longest_sum, depth)


@pytest.fixture(scope="module")
def step_inputs():
    """A batch, labels and initial weights for the training-step comparison."""
    ms.set_seed(4)
    rng = np.random.default_rng(4)
    x = ms.Tensor(rng.standard_normal((STEP_BATCH, 3, STEP_SIZE, STEP_SIZE)).astype(np.float32))
    y = ms.Tensor(rng.integers(0, 10, STEP_BATCH).astype(np.int32))
    init = {p.name: p.asnumpy().copy() for p in create_model("proxylessnas_mobile", 10).get_parameters()}
    return x, y, init


def training_step(use_native, x, y, init):
    """One Momentum step from ``init``: (loss, largest |logit|, {name: (update, |weight|)}, tolerance)."""
    from src.loss import CrossEntropySmooth

    net = create_model("proxylessnas_mobile", 10)
    ms.load_param_into_net(net, {k: ms.Parameter(ms.Tensor(v), name=k) for k, v in init.items()})
    assert nd.set_native(net, use_native) == (21 if use_native else 0)  # 20 depthwise convs and the stem
    net.set_train(True)
    largest_logit = float(np.abs(net(x).asnumpy()).max())  # training-mode logits: the step's own
    optimizer = nn.Momentum(net.trainable_params(), learning_rate=STEP_LR, momentum=0.9)
    step = ms.amp.build_train_network(net, optimizer, CrossEntropySmooth(10, 0.1), level="O0")
    step.set_train(True)
    loss = float(step(x, y).asnumpy())
    updates = {p.name: (p.asnumpy().astype(np.float64) - init[p.name], float(np.linalg.norm(p.asnumpy())))
               for p in net.trainable_params()}
    return loss, largest_logit, updates, step_tolerance(net)


def assert_same_step(reference, candidate) -> None:
    """The candidate's loss and every layer's update agree with the reference within float32 rounding."""
    loss_r, largest_logit, updates_r, tol = reference
    loss_c, _, updates_c, _ = candidate
    # the loss moves by at most 2 * max|logit error| (its logit gradients have L1 norm <= 2 per image)
    assert abs(loss_c - loss_r) <= 2 * tol * max(1.0, largest_logit), f"loss {loss_c} vs {loss_r}"
    # A layer's tensors (conv weight, BN gamma and beta) are sums of the same output gradient over the
    # same positions, so their rounding errors scale with the layer's largest update: a BN beta whose
    # gradient is 0 in exact arithmetic (a BN followed by a conv and another BN) holds only rounding.
    layers = {}
    for name in updates_r:
        layers.setdefault(name.rsplit(".", 2)[0] if name.count(".") > 1 else name.rsplit(".", 1)[0], []).append(name)
    wrong = []
    for layer, names in layers.items():
        scale = max(np.linalg.norm(updates_r[n][0]) for n in names)
        assert scale > 0, f"{layer} was not updated"
        for n in names:
            (update_r, weight_norm), (update_c, _) = updates_r[n], updates_c[n]
            # plus the rounding of the updated weight itself (u * |w| per element, in both runs)
            err = np.linalg.norm(update_c - update_r)
            if err > tol * scale + 2 * UNIT_ROUNDOFF * weight_norm:
                wrong.append(f"{n} ({err / scale:.2g} of the layer's update)")
    assert not wrong, f"update of {len(wrong)} tensors differs beyond float32 rounding (tolerance {tol:.2g}): " + \
        ", ".join(wrong[:5])


@pytest.fixture(scope="module")
def builtin_step(step_inputs):
    return training_step(False, *step_inputs)


def test_training_step_matches_builtin(library, step_inputs, builtin_step):
    loss, largest_logit, updates, tol = builtin_step
    assert largest_logit > 0.1 and tol < 1e-3  # real logits; a tolerance that can see a 1% error
    assert_same_step(builtin_step, training_step(True, *step_inputs))


def _corrupted_operators(corruption):
    """``nd.operators`` with a deliberately wrong gradient in the trainable conv."""
    real = nd.operators

    def operators(stride, kind="depthwise"):
        ops_ = real(stride, kind)
        conv = ops_["conv"]

        def bprop(x, w, out, dout):
            dx, dw = conv.bprop(x, w, out, dout)
            if corruption == "filter_x1.01":
                return dx, dw * 1.01
            if corruption == "filter_mirrored":  # the classic convolution/correlation mix-up
                return dx, ops.flip(dw, (3,))
            return dx * 1.01, dw  # input_x1.01

        wrong = ops.Custom(conv.func, out_shape=conv.out_shape, out_dtype=conv.out_dtype, func_type="aot",
                           bprop=bprop)
        return dict(ops_, conv=wrong)

    return operators


@pytest.mark.parametrize("corruption", ["filter_x1.01", "filter_mirrored", "input_x1.01"])
def test_step_comparison_catches_a_wrong_gradient(library, monkeypatch, step_inputs, builtin_step, corruption):
    monkeypatch.setattr(nd, "operators", _corrupted_operators(corruption))
    with pytest.raises(AssertionError, match="differs beyond float32 rounding"):
        assert_same_step(builtin_step, training_step(True, *step_inputs))


def test_export_never_contains_the_native_kernel(library, tmp_path):
    from src.export import export_network, run_mindir

    net = trained_like(seed=7)
    nd.set_native(net, True)
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    for fold in (False, True):
        result = export_network(net, str(tmp_path / f"n{fold}"), "MINDIR", image_size=64, fold_bn=fold)
        data = result.path.read_bytes()
        assert b"DwForward" not in data and nd.SOURCE.stem.encode() + b"-" not in data
        close(run_mindir(result.path, x), net(ms.Tensor(x)).asnumpy(), rel=network_tolerance(net))
    assert nd.native_count(net) == 21  # restored after the export


def test_builtin_only_undoes_and_restores_the_deferred_bias(library):
    net = trained_like(seed=3)
    x = ms.Tensor(np.random.default_rng(4).standard_normal((1, 3, 64, 64)).astype(np.float32))
    expected = net(x).asnumpy()
    folded = fold_batchnorm(net)
    nd.set_native(folded, True)
    state = [(name, cell.native, cell.deferred, cell.input_bias) for name, cell in folded.cells_and_names()
             if hasattr(cell, "deferred")]
    assert any(deferred for _, _, deferred, _ in state)
    with nd.builtin_only(folded):
        assert nd.native_count(folded) == 0
        assert not any(getattr(cell, "deferred", False) for _, cell in folded.cells_and_names())
        close(folded(x).asnumpy(), expected, rel=network_tolerance(net))
    assert [(name, cell.native, cell.deferred, cell.input_bias) for name, cell in folded.cells_and_names()
            if hasattr(cell, "deferred")] == state


# ---------------------------------------------------------------------------
# Choosing
# ---------------------------------------------------------------------------
def test_builtin_choice_leaves_the_network_alone():
    net = create_model("proxylessnas_mobile", 10)
    assert nd.apply_choice(net, "builtin", "CPU") is False and nd.native_count(net) == 0


def test_auto_uses_native_on_cpu_float32_only(library):
    net = create_model("proxylessnas_mobile", 10)
    assert nd.apply_choice(net, "auto", "CPU", "O0") is True and nd.native_count(net) == 21
    for device, amp in (("GPU", "O0"), ("Ascend", "O3"), ("CPU", "O2")):
        other = create_model("proxylessnas_mobile", 10)
        assert nd.apply_choice(other, "auto", device, amp) is False and nd.native_count(other) == 0


@pytest.mark.parametrize("device,amp,message", [
    ("GPU", "O0", "device_target is GPU"),
    ("CPU", "O2", "amp_level O2 runs the convolutions in float16")])
def test_native_where_it_cannot_run_is_an_error(device, amp, message):
    with pytest.raises(UserError, match=f"depthwise_kernel native is a float32 CPU kernel but {message}: "
                                        "pass --depthwise_kernel auto or builtin"):
        nd.apply_choice(create_model("proxylessnas_mobile", 10), "native", device, amp)


def test_unavailable_kernel_auto_warns_native_fails(monkeypatch, caplog):
    monkeypatch.setattr(nd, "_library_or_reason", lambda: (None, "no C++ compiler 'g++' on PATH"))
    nd._warn_once.cache_clear()  # it warns once per process: an earlier test (or run of this one) may have
    net = create_model("proxylessnas_mobile", 10)
    with caplog.at_level(logging.WARNING):
        assert nd.apply_choice(net, "auto", "CPU") is False
    assert nd.native_count(net) == 0
    assert "using MindSpore's Conv2D for depthwise convolutions (slower on CPU): no C++ compiler" in caplog.text
    with pytest.raises(UserError, match="not available: no C\\+\\+ compiler 'g\\+\\+' on PATH; "
                                        "pass --depthwise_kernel builtin"):
        nd.apply_choice(net, "native", "CPU")


def test_unknown_choice_is_an_error():
    with pytest.raises(UserError, match="depthwise_kernel 'fast' is not one of auto, native, builtin"):
        nd.apply_choice(create_model("proxylessnas_mobile", 10), "fast", "CPU")


def test_unsupported_convs_are_not_switched():
    plain = nn.Conv2d(8, 8, 3, pad_mode="pad", padding=1, group=8)
    assert nd.supported(plain)
    assert not nd.supported(nn.Conv2d(8, 16, 3, pad_mode="pad", padding=1, group=8))  # not depthwise
    assert not nd.supported(nn.Conv2d(8, 8, 3, pad_mode="same", group=8))
    assert not nd.supported(nn.Conv2d(8, 8, 4, pad_mode="pad", padding=2, group=8))  # even kernel
    assert not nd.supported(nn.Conv2d(8, 8, 3, stride=3, pad_mode="pad", padding=1, group=8))
    assert not nd.supported(nn.Conv2d(8, 8, 3, pad_mode="pad", padding=1, dilation=2, group=8))
    stem = nn.Conv2d(3, 32, 3, stride=2, pad_mode="pad", padding=1)
    assert nd.conv_kind(stem) == "dense" and nd.conv_kind(plain) == "depthwise"
    assert not nd.supported(nn.Conv2d(3, 32, 1))  # 1x1: oneDNN's
    assert not nd.supported(nn.Conv2d(nd.DENSE_MAX_IN + 1, 32, 3, pad_mode="pad", padding=1))
    assert not nd.supported(nn.Conv2d(4, 8, 3, stride=2, pad_mode="pad", padding=1, group=2))  # grouped


@pytest.fixture
def avx512_cpu(monkeypatch):
    """A CPU with AVX-512 and the project's own AVX2 cap in the environment (as configure_environment sets it)."""
    from src.model_utils import device

    monkeypatch.setattr(nd, "_cpu_flags", lambda: {"avx2", "fma", "avx512f"})
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv(device.CAP_MARK, raising=False)
    device.configure_environment("CPU")
    assert os.environ["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    ms.set_context(mode=ms.GRAPH_MODE)  # the lift is for GRAPH mode (conftest restores the mode afterwards)
    return device


def test_cap_is_lifted_when_native_kernels_cover_the_slow_convs(library, avx512_cpu, caplog):
    with caplog.at_level(logging.INFO, logger="src.model_utils.device"):
        assert nd.apply_choice(create_model("proxylessnas_mobile", 10), "auto", "CPU") is True
    assert "ONEDNN_MAX_CPU_ISA" not in os.environ and avx512_cpu.onednn_isa() == "lifted"
    assert "no AVX2 cap" in caplog.text


def test_cap_is_kept_for_builtin_convs_or_a_users_setting(library, avx512_cpu, monkeypatch):
    net = create_model("proxylessnas_mobile", 10)
    assert nd.apply_choice(net, "builtin", "CPU") is False
    assert os.environ["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    # one depthwise conv the kernel does not take (dilated) keeps the cap
    net = create_model("proxylessnas_mobile", 10)
    odd = nn.Conv2d(8, 8, 3, pad_mode="pad", padding=2, dilation=2, group=8)
    net.features.insert_child_to_cell("odd", odd)
    assert nd.apply_choice(net, "auto", "CPU") is True
    assert nd.slow_on_avx512(net) == ["features.odd"]
    assert os.environ["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    # a cap the user set is never lifted
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.delenv(avx512_cpu.CAP_MARK)
    assert nd.apply_choice(create_model("proxylessnas_mobile", 10), "auto", "CPU") is True
    assert os.environ["ONEDNN_MAX_CPU_ISA"] == "AVX2"


def test_cap_is_kept_on_a_cpu_without_avx512(library, avx512_cpu, monkeypatch):
    monkeypatch.setattr(nd, "_cpu_flags", lambda: {"avx2", "fma"})
    assert nd.apply_choice(create_model("proxylessnas_mobile", 10), "auto", "CPU") is True
    assert os.environ["ONEDNN_MAX_CPU_ISA"] == "AVX2"


def test_cap_is_kept_in_pynative_mode(library, avx512_cpu):
    # operator by operator, uncapped oneDNN was slower (32-67 against 24-30 ms per batch-1 call on the Xeon)
    ms.set_context(mode=ms.PYNATIVE_MODE)
    assert nd.apply_choice(create_model("proxylessnas_mobile", 10), "auto", "CPU") is True
    assert os.environ["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    ms.set_context(mode=ms.GRAPH_MODE)
    assert nd.apply_choice(create_model("proxylessnas_mobile", 10), "auto", "CPU") is True
    assert "ONEDNN_MAX_CPU_ISA" not in os.environ
