"""src/fuse.py: BatchNorm folded into the convs gives the same logits in eval mode, with no BN left."""
import numpy as np
import pytest

from conftest import VARIANT_CONFIGS, assert_logits_close, trained_like

ms = pytest.importorskip("mindspore")

from mindspore import nn  # noqa: E402

from src import create_model  # noqa: E402
from src.arch import get_arch  # noqa: E402
from src.fuse import ConvAct, fold_batchnorm  # noqa: E402

INPUTS = np.random.default_rng(3).standard_normal((2, 3, 64, 64)).astype(np.float32)


@pytest.mark.parametrize("variant", ["proxylessnas_mobile", "proxylessnas_cpu"])
def test_folded_network_gives_the_same_logits(variant):
    assert variant in VARIANT_CONFIGS
    net = trained_like(variant)
    before = {p.name: p.asnumpy().copy() for p in net.get_parameters()}
    folded = fold_batchnorm(net)
    expected = net(ms.Tensor(INPUTS)).asnumpy()
    got = folded(ms.Tensor(INPUTS)).asnumpy()
    assert np.abs(expected).max() > 1.0  # real logits, not a saturated or vanishing network
    assert_logits_close(got, expected, net)  # folding rounds each weight once more: within float32 error
    # the original network is untouched
    assert all(np.array_equal(p.asnumpy(), before[p.name]) for p in net.get_parameters())


def test_folded_network_has_no_batchnorm_and_full_parameter_names():
    net = create_model("proxylessnas_mobile", num_classes=10)
    folded = fold_batchnorm(net)
    cells = [c for _, c in folded.cells_and_names()]
    assert not any(isinstance(c, nn.BatchNorm2d) for c in cells)
    spec = get_arch("proxylessnas_mobile")
    convs = 2 + sum(3 if b.expand_ratio != 1 else 2 for b in spec.blocks if not b.zero)
    assert sum(isinstance(c, ConvAct) for c in cells) == convs
    names = [p.name for p in folded.get_parameters()]
    assert len(names) == len(set(names)) == 2 * convs + 2
    assert "features.stage1.unit1.body.dw_conv.conv.bias" in names
    assert "features.init_block.conv.weight" in names and "output.weight" in names
    assert not folded.training


def test_folded_network_runs_in_graph_mode():
    net = trained_like("proxylessnas_mobile")
    mode = ms.get_context("mode")
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        expected = net(ms.Tensor(INPUTS)).asnumpy()
        got = fold_batchnorm(net)(ms.Tensor(INPUTS)).asnumpy()
    finally:
        ms.set_context(mode=mode)
    assert_logits_close(got, expected, net)  # folding rounds each weight once more: within float32 error
