"""The network: tables against the official configs, parameter counts, shapes, init, checkpoints."""
import json
import math

import numpy as np
import pytest

import mindspore as ms

from conftest import VARIANT_CONFIGS, official_config
from src import create_model, list_models
from src.arch import get_arch, parse_arch, spec_from_config, spec_to_config
from src.errors import UserError
from src.proxylessnas_mobile import proxylessnas_mobile

PARAM_COUNTS = {
    "proxylessnas_mobile": 4_080_512,
    "proxylessnas_mobile_14": 6_857_568,
    "proxylessnas_cpu": 4_361_648,
    "proxylessnas_gpu": 7_119_848,
}


def trainable_count(net):
    return sum(int(np.prod(p.shape)) for p in net.trainable_params())


@pytest.fixture(scope="module")
def mobile():
    return proxylessnas_mobile(num_classes=1000)


def test_registry_lists_the_four_variants():
    assert list_models() == sorted(PARAM_COUNTS)


@pytest.mark.parametrize("variant", sorted(PARAM_COUNTS))
def test_trainable_parameter_count(variant):
    assert trainable_count(create_model(variant, num_classes=1000)) == PARAM_COUNTS[variant]


@pytest.mark.parametrize("variant", sorted(VARIANT_CONFIGS))
def test_table_matches_official_config_block_by_block(variant):
    official = json.loads(official_config(variant).read_text())
    spec = get_arch(variant)
    first, mix = official["first_conv"], official["feature_mix_layer"]
    assert (spec.in_channels, spec.stem_channels, spec.stem_kernel, spec.stem_stride) == (
        first["in_channels"], first["out_channels"], first["kernel_size"], first["stride"])
    assert len(spec.blocks) == len(official["blocks"])
    for i, (ours, theirs) in enumerate(zip(spec.blocks, official["blocks"])):
        conv, shortcut = theirs["mobile_inverted_conv"], theirs["shortcut"]
        if conv["name"] == "ZeroLayer":
            assert ours.zero and ours.shortcut, f"block {i}: official Zero block"
            continue
        assert not ours.zero, f"block {i}"
        assert (ours.in_channels, ours.out_channels, ours.kernel_size, ours.stride, ours.expand_ratio) == (
            conv["in_channels"], conv["out_channels"], conv["kernel_size"], conv["stride"], conv["expand_ratio"]
        ), f"block {i}"
        assert ours.shortcut == (shortcut is not None and shortcut["name"] == "IdentityLayer"), f"block {i}"
    assert (spec.last_channels, spec.head_channels) == (mix["in_channels"], mix["out_channels"])
    assert mix["kernel_size"] == 1 and official["classifier"]["in_features"] == spec.head_channels


@pytest.mark.parametrize("variant", sorted(VARIANT_CONFIGS))
def test_official_json_round_trip(variant):
    official = json.loads(official_config(variant).read_text())
    # our table written out is the released document, and reading that document gives our table back
    assert spec_to_config(get_arch(variant)) == official
    spec, head = spec_from_config(official)
    assert spec.stages == get_arch(variant).stages
    assert head == {"num_classes": 1000, "dropout_rate": 0}
    assert create_model(variant).to_config() == official


def test_network_from_official_file_has_same_parameters(tmp_path):
    path = official_config("proxylessnas_cpu")
    net = create_model(str(path), num_classes=10)
    ref = create_model("proxylessnas_cpu", num_classes=10)
    assert [(p.name, p.shape) for p in net.get_parameters()] == [(p.name, p.shape) for p in ref.get_parameters()]


def test_searched_network_trains_from_its_config(tmp_path):
    # a made-up searched net: write it in the official format, load it back as a network
    spec = parse_arch(stem=16, head=64, blocks="k3_e1_c8\nk5_e6_c16_s2 zero k7_e3_c16\nk3_e4_c24_s2")
    path = tmp_path / "searched.config"
    path.write_text(json.dumps(spec_to_config(spec, num_classes=5)))
    net = create_model(str(path), num_classes=5)
    assert net.spec.stages == spec.stages
    out = net(ms.Tensor(np.random.default_rng(0).random((2, 3, 64, 64), np.float32)))
    assert out.shape == (2, 5)


@pytest.mark.parametrize("size", [224, 160, 32])
def test_forward_shapes(mobile, size):
    mobile.set_train(False)
    x = ms.Tensor(np.random.default_rng(size).random((2, 3, size, size), np.float32))
    assert mobile(x).shape == (2, 1000)
    assert mobile.forward_features(x).shape == (2, 1280)


def test_num_classes_and_dropout():
    net = create_model("proxylessnas_mobile", num_classes=7, dropout_rate=0.2)
    assert net.output.weight.shape == (7, 1280)
    net.set_train(False)
    x = ms.Tensor(np.random.default_rng(1).random((1, 3, 64, 64), np.float32))
    np.testing.assert_allclose(net(x).asnumpy(), net(x).asnumpy())  # dropout is off in eval mode


def test_initialisation_follows_official_code(mobile):
    params = {p.name: p.asnumpy() for p in mobile.get_parameters()}
    w = params["features.stage5.unit5.body.bc_conv.conv.weight"]  # 1x1, 192 -> 1152
    assert abs(w.std() - math.sqrt(2.0 / 1152)) < 0.05 * math.sqrt(2.0 / 1152)
    dw = params["features.stage5.unit1.body.dw_conv.conv.weight"]  # 7x7 depthwise, 576 channels
    assert abs(dw.std() - math.sqrt(2.0 / (49 * 576))) < 0.05 * math.sqrt(2.0 / (49 * 576))
    fc = params["output.weight"]
    bound = 1 / math.sqrt(1280)
    assert fc.min() >= -bound and fc.max() <= bound and fc.max() > 0.95 * bound
    assert not params["output.bias"].any()
    assert (params["features.init_block.bn.gamma"] == 1).all() and not params["features.init_block.bn.beta"].any()
    assert mobile.features.init_block.bn.eps == pytest.approx(1e-3)


def test_batchnorm_running_stats_follow_momentum_0_9():
    # PyTorch momentum 0.1 == MindSpore momentum 0.9: new = 0.9 * old + 0.1 * batch
    net = create_model("proxylessnas_mobile", num_classes=10)
    bn = net.features.init_block.bn
    x = np.random.default_rng(1).standard_normal((4, 32, 8, 8)).astype(np.float32) * 3 + 2
    bn.set_train(True)
    bn(ms.Tensor(x))
    np.testing.assert_allclose(bn.moving_mean.asnumpy(), 0.1 * x.mean(axis=(0, 2, 3)), rtol=1e-4, atol=1e-5)


def _seed_checkpoint_names():
    """Parameter names of the MindSpore ModelZoo (seed) ProxylessNAS-Mobile, written out from its layout."""
    def convbn(prefix):
        return [f"{prefix}.conv.weight"] + [f"{prefix}.bn.{n}" for n in ("moving_mean", "moving_variance", "gamma", "beta")]
    names = convbn("features.init_block")
    units = {1: [1], 2: [1, 2], 3: [1, 2, 3, 4], 4: list(range(1, 9)), 5: list(range(1, 6))}
    for stage, unit_ids in units.items():
        for u in unit_ids:
            body = f"features.stage{stage}.unit{u}.body"
            names += (convbn(f"{body}.bc_conv") if stage > 1 else []) + convbn(f"{body}.dw_conv") + convbn(f"{body}.pw_conv")
    return names + convbn("features.final_block") + ["output.weight", "output.bias"]


def test_seed_format_checkpoint_loads(tmp_path, mobile):
    names = _seed_checkpoint_names()
    shapes = {p.name: p.shape for p in mobile.get_parameters()}
    assert sorted(names) == sorted(shapes)
    rng = np.random.default_rng(0)
    values = {n: rng.standard_normal(shapes[n]).astype(np.float32) for n in names}
    # what the seed's training left in its files besides the weights
    extra = {f"moments.{n}": np.zeros(shapes[n], np.float32) for n in names if "moving" not in n}
    extra.update({"learning_rate": np.array(0.1, np.float32), "global_step": np.array([5], np.int32)})
    path = tmp_path / "seed.ckpt"
    ms.save_checkpoint([{"name": k, "data": ms.Tensor(v)} for k, v in {**values, **extra}.items()], str(path))

    from src.checkpoint import load_weights
    net = proxylessnas_mobile(num_classes=1000)
    load_weights(net, str(path))
    for p in net.get_parameters():
        np.testing.assert_array_equal(p.asnumpy(), values[p.name])


def test_unknown_arch_is_named():
    with pytest.raises(UserError, match="unknown arch 'proxylessnas_tiny'.*proxylessnas_cpu"):
        create_model("proxylessnas_tiny")


def test_bad_official_config_is_reported(tmp_path):
    doc = spec_to_config(get_arch("proxylessnas_mobile"))
    doc["blocks"][5]["mobile_inverted_conv"]["in_channels"] = 33
    with pytest.raises(UserError, match=r"blocks\[5\].*in_channels 33"):
        spec_from_config(doc)


def test_create_model_takes_the_classifier_size_from_a_config_file_unless_given(tmp_path):
    spec = parse_arch(stem=16, head=64, blocks="k3_e1_c8\nk5_e6_c16_s2")
    path = tmp_path / "searched.config"
    path.write_text(json.dumps(spec_to_config(spec, num_classes=7)))
    assert create_model(str(path)).output.weight.shape == (7, 64)  # written in the file
    assert create_model(str(path), num_classes=3).output.weight.shape == (3, 64)  # passed: wins
    assert create_model("proxylessnas_mobile").output.weight.shape == (1000, 1280)  # a name: ImageNet
