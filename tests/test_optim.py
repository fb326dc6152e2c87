"""The recipe: weight-decay groups that really skip BN and biases, label smoothing, loss scaling per device."""
import numpy as np
import pytest

import mindspore as ms
from mindspore import nn
from mindspore.amp import DynamicLossScaleManager, FixedLossScaleManager

from src import create_model
from src.loss import CrossEntropySmooth
from src.model_utils.config import get_config
from src.optim import create_optimizer, loss_scaling, resolve_amp_level


class ZeroLoss(nn.Cell):
    """A loss with zero gradient everywhere: only weight decay can move the weights."""

    def construct(self, logits, label):
        return (logits * 0.0).sum()


def test_weight_decay_skips_bn_and_biases():
    cfg = get_config(["--device_target", "CPU", "--weight_decay", "0.1", "--momentum", "0.9"])
    net = create_model("proxylessnas_mobile", num_classes=4)
    # make BN gamma/beta and the bias non-trivial so that decay would show
    for p in net.trainable_params():
        if p.name.endswith(("gamma", "beta", "bias")):
            p.set_data(ms.Tensor(np.full(p.shape, 0.5, np.float32)))
    before = {p.name: p.asnumpy().copy() for p in net.trainable_params()}
    opt = create_optimizer(net, cfg, np.full(4, 0.5, np.float32))
    step = nn.TrainOneStepCell(nn.WithLossCell(net, ZeroLoss()), opt)
    step(ms.Tensor(np.random.default_rng(0).random((2, 3, 32, 32), np.float32)), ms.Tensor(np.array([0, 1], np.int32)))
    after = {p.name: p.asnumpy() for p in net.trainable_params()}
    skipped = [n for n in before if n.endswith(("gamma", "beta", "bias"))]
    decayed = [n for n in before if n.endswith("weight")]
    assert len(skipped) > 100 and len(decayed) > 60
    for n in skipped:
        np.testing.assert_array_equal(after[n], before[n], err_msg=n)
    for n in decayed:  # w <- w - lr * wd * w  (first momentum step)
        np.testing.assert_allclose(after[n], before[n] * (1 - 0.5 * 0.1), rtol=1e-5, atol=1e-7, err_msg=n)


def test_label_smoothing_matches_numpy():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((6, 5)).astype(np.float32) * 3
    labels = np.array([0, 1, 2, 3, 4, 0], np.int32)
    got = float(CrossEntropySmooth(5, 0.1)(ms.Tensor(logits), ms.Tensor(labels)).asnumpy())
    logp = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)) - logits.max(1, keepdims=True)
    target = np.full((6, 5), 0.1 / 5)
    target[np.arange(6), labels] += 0.9
    assert got == pytest.approx(float(-(target * logp).sum(1).mean()), rel=1e-5)


def test_amp_and_loss_scale_per_device():
    cpu = get_config(["--device_target", "CPU"])
    assert resolve_amp_level(cpu) == "O0" and loss_scaling(cpu, "O0") == (None, 1.0)
    manager, opt_scale = loss_scaling(cpu, "O2")
    assert isinstance(manager, FixedLossScaleManager) and not manager.get_drop_overflow_update()
    assert opt_scale == manager.get_loss_scale() == 1024.0  # the optimizer divides by the same scale
    for device, level in (("Ascend", "O3"), ("GPU", "O2")):
        cfg = get_config(["--device_target", device])
        assert resolve_amp_level(cfg) == level
        manager, opt_scale = loss_scaling(cfg, level)
        assert isinstance(manager, DynamicLossScaleManager) and opt_scale == 1.0
    assert resolve_amp_level(get_config(["--device_target", "CPU", "--amp_level", "O2"])) == "O2"


def _one_step_update(level: str):
    """Change of the classifier weights after one SGD step at this amp level, from a fixed init."""
    cfg = get_config(["--device_target", "CPU", "--weight_decay", "0"])
    ms.set_seed(3)
    net = create_model("proxylessnas_mobile", num_classes=2)
    before = net.output.weight.asnumpy().copy()
    manager, opt_scale = loss_scaling(cfg, level)
    opt = create_optimizer(net, cfg, np.full(4, 0.1, np.float32), opt_scale)
    kwargs = {"loss_scale_manager": manager} if manager is not None else {}
    step = ms.amp.build_train_network(net, opt, CrossEntropySmooth(2, 0.0), level=level, **kwargs)
    rng = np.random.default_rng(0)
    y = np.array([0, 1, 0, 1], np.int32)
    x = (rng.random((4, 3, 32, 32)) + y[:, None, None, None]).astype(np.float32)
    loss = float(step(ms.Tensor(x), ms.Tensor(y)).asnumpy())
    return loss, net.output.weight.asnumpy().astype(np.float32) - before


def test_cpu_o2_step_equals_o0_step_up_to_fp16():
    # the fixed loss scale must be divided out again: otherwise the update would be 1024x too large
    loss32, delta32 = _one_step_update("O0")
    loss16, delta16 = _one_step_update("O2")
    assert np.isfinite(loss16) and loss16 == pytest.approx(loss32, rel=0.1)
    # fp16 through 22 blocks moves the direction somewhat; the size shows the scale was divided out
    ratio = np.linalg.norm(delta16) / np.linalg.norm(delta32)
    assert 0.7 < ratio < 1.4, ratio
    cosine = float((delta16 * delta32).sum() / (np.linalg.norm(delta16) * np.linalg.norm(delta32)))
    assert cosine > 0.8, cosine


def _momentum_steps(opt_factory, mode, steps=3):
    """Three steps of a tiny two-group problem; the weights after each (gradients = 2 * weights + 1)."""
    ms.set_context(mode=mode)
    w = ms.Parameter(ms.Tensor(np.array([1.0, -2.0, 0.5], np.float32)), name="w")
    b = ms.Parameter(ms.Tensor(np.array([0.25, 3.0], np.float32)), name="bias")

    class Net(nn.Cell):
        def __init__(self):
            super().__init__()
            self.w, self.bias = w, b

        def construct(self):
            return (self.w * self.w).sum() + self.w.sum() + (self.bias * self.bias).sum() + self.bias.sum()

    net = Net()
    groups = [{"params": [w], "weight_decay": 0.1}, {"params": [b], "weight_decay": 0.0}, {"order_params": [w, b]}]
    opt = opt_factory(groups)
    grad_fn = ms.value_and_grad(net, None, opt.parameters)
    out = []
    for _ in range(steps):
        _, grads = grad_fn()
        opt(grads)
        out.append((w.asnumpy().copy(), b.asnumpy().copy()))
    return out


def _numpy_momentum(lrs, momentum, nesterov, steps=3):
    w, b = np.array([1.0, -2.0, 0.5]), np.array([0.25, 3.0])
    vw, vb = np.zeros(3), np.zeros(2)
    out = []
    for step in range(steps):
        gw, gb = 2 * w + 1 + 0.1 * w, 2 * b + 1
        vw, vb = momentum * vw + gw, momentum * vb + gb
        lr = lrs[step]
        w = w - lr * (gw + momentum * vw if nesterov else vw)
        b = b - lr * (gb + momentum * vb if nesterov else vb)
        out.append((w, b))
    return out


@pytest.mark.parametrize("mode", [ms.GRAPH_MODE, ms.PYNATIVE_MODE])
def test_nesterov_is_nesterov_on_cpu(mode):
    from src.optim import NesterovMomentum

    lrs = np.array([0.1, 0.05, 0.02], np.float32)
    # MindSpore 2.10's own CPU kernel: use_nesterov=True gives plain momentum (why NesterovMomentum exists)
    builtin = _momentum_steps(lambda g: nn.Momentum(g, ms.Tensor(lrs), 0.9, use_nesterov=True), mode)
    plain, nesterov = _numpy_momentum(lrs, 0.9, False), _numpy_momentum(lrs, 0.9, True)
    np.testing.assert_allclose(builtin[-1][0], plain[-1][0], rtol=1e-5)
    ours = _momentum_steps(lambda g: NesterovMomentum(g, ms.Tensor(lrs), 0.9, use_nesterov=True), mode)
    for (w, b), (rw, rb) in zip(ours, nesterov):
        np.testing.assert_allclose(w, rw, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(b, rb, rtol=1e-5, atol=1e-6)
    assert np.abs(nesterov[-1][0] - plain[-1][0]).max() > 0.05  # the two updates really differ here


def test_create_optimizer_picks_nesterov_on_cpu():
    from src.optim import NesterovMomentum

    net = create_model("proxylessnas_mobile", num_classes=4)
    lr = np.full(4, 0.1, np.float32)
    on = create_optimizer(net, get_config(["--device_target", "CPU", "--nesterov", "true"]), lr)
    off = create_optimizer(net, get_config(["--device_target", "CPU", "--nesterov", "false"]), lr)
    assert type(on) is NesterovMomentum and type(off) is nn.Momentum
    assert len(on.moments) == len(off.moments) == len(net.trainable_params())  # same slots: resume is unchanged
