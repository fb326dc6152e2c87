"""src/fuse.py: BatchNorm folded into the convs gives the same logits in eval mode, with no BN left."""
import numpy as np
import pytest

from conftest import VARIANT_CONFIGS, official_config

ms = pytest.importorskip("mindspore")

from mindspore import nn  # noqa: E402

from src import create_model  # noqa: E402
from src.arch import get_arch  # noqa: E402
from src.convert import convert  # noqa: E402
from src.fuse import ConvAct, fold_batchnorm  # noqa: E402

INPUTS = np.random.default_rng(3).standard_normal((2, 3, 64, 64)).astype(np.float32)


def trained_like(variant: str):
    """A network with random weights and realistic BN statistics (logits O(1)), from the PyTorch reference."""
    torch_reference = pytest.importorskip("torch_reference", reason="needs torch for the randomized reference")
    model = torch_reference.build(official_config(variant), seed=5)
    tensors = {k: v.numpy() for k, v in model.state_dict().items()}
    net = create_model(variant)
    ms.load_param_into_net(net, {k: ms.Parameter(ms.Tensor(v), name=k)
                                 for k, v in convert(tensors, get_arch(variant), "official").items()},
                           strict_load=True)
    net.set_train(False)
    return net


@pytest.mark.parametrize("variant", ["proxylessnas_mobile", "proxylessnas_cpu"])
def test_folded_network_gives_the_same_logits(variant):
    assert variant in VARIANT_CONFIGS
    net = trained_like(variant)
    before = {p.name: p.asnumpy().copy() for p in net.get_parameters()}
    folded = fold_batchnorm(net)
    expected = net(ms.Tensor(INPUTS)).asnumpy()
    got = folded(ms.Tensor(INPUTS)).asnumpy()
    assert np.abs(expected).max() > 1.0  # real logits, not a saturated or vanishing network
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()
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
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()
