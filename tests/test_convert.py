"""Weight conversion: official, pytorchcv and ModelZoo checkpoints give the same logits in MindSpore."""
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

import mindspore as ms
from mindspore import nn

from conftest import ROOT, VARIANT_CONFIGS, assert_logits_close, official_config
from src import create_model
from src.arch import get_arch
from src.checkpoint import load_weights, read_checkpoint
from src.convert import SOURCES, convert, guess_source, key_map, resolve_spec
from src.errors import UserError
from tools.convert_weights import main as convert_main

try:
    import torch
    import torch_reference
except ImportError:  # the tests that need them skip through the `torch_needed` fixture
    torch = torch_reference = None

VARIANTS = sorted(VARIANT_CONFIGS)
INPUTS = np.random.default_rng(7).standard_normal((2, 3, 64, 64)).astype(np.float32)


@pytest.fixture
def torch_needed():
    pytest.importorskip("torch", reason="PyTorch writes the reference .pth files: pip install torch==2.13.0")


@lru_cache(maxsize=None)
def reference(variant):
    """The randomized PyTorch network of a variant and its logits on INPUTS (built once per variant)."""
    model = torch_reference.build(official_config(variant), seed=VARIANTS.index(variant))
    with torch.no_grad():
        logits = model(torch.from_numpy(INPUTS)).numpy()
    return model, logits


@lru_cache(maxsize=None)
def mindspore_net(variant):
    net = create_model(variant)
    net.set_train(False)
    return net


def write_source(source, model, path):
    """Save the reference weights the way that source publishes them."""
    if source == "official":
        torch.save({"epoch": 300, "best_acc": 74.6, "state_dict": model.state_dict()}, path)
    elif source == "pytorchcv":
        torch.save(torch_reference.pytorchcv_state_dict(model), path)
    else:
        # as the ModelZoo saves it: the whole training cell (TrainOneStepCell + nn.Momentum), so the file also
        # holds momentum, learning_rate, global_step and moments.*
        weights = {k: v.numpy() for k, v in torch_reference.modelzoo_weights(model).items()}
        net = create_model(Path(path).stem.split("_", 1)[1], num_classes=weights["output.bias"].shape[0])
        ms.load_param_into_net(net, {k: ms.Parameter(ms.Tensor(v), name=k) for k, v in weights.items()},
                               strict_load=True)
        optimizer = nn.Momentum(net.trainable_params(), learning_rate=0.2, momentum=0.9, weight_decay=1e-4)
        loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
        ms.save_checkpoint(nn.TrainOneStepCell(nn.WithLossCell(net, loss), optimizer), str(path))
    return path


def source_file(source, variant, tmp_path):
    suffix = ".ckpt" if source == "modelzoo" else ".pth"
    return write_source(source, reference(variant)[0], tmp_path / f"{source}_{variant}{suffix}")


def mindspore_logits(variant, ckpt):
    net = mindspore_net(variant)
    load_weights(net, str(ckpt))
    return net(ms.Tensor(INPUTS)).asnumpy()


def assert_same_logits(ours, theirs, variant="proxylessnas_mobile"):
    scale = np.abs(theirs).max()
    # a network whose activations all saturate would give input-independent logits and prove nothing
    assert np.abs(theirs[0] - theirs[1]).max() > 0.05 * scale
    # two frameworks' float32 kernels: within float32 rounding through the network (conftest)
    assert_logits_close(ours, theirs, mindspore_net(variant))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("source", SOURCES)
def test_converted_weights_give_same_logits(source, variant, tmp_path, torch_needed):
    path = source_file(source, variant, tmp_path)
    out = tmp_path / "converted.ckpt"
    assert convert_main(["--source", source, "--arch", variant, "--input", str(path), "--output", str(out)]) == 0
    assert_same_logits(mindspore_logits(variant, out), reference(variant)[1], variant)


def test_comparison_detects_a_swapped_statistic(tmp_path, torch_needed):
    # the logit test has power: exchanging one BN layer's mean and variance is caught
    model, logits = reference("proxylessnas_mobile")
    tensors = {k: v.numpy() for k, v in model.state_dict().items()}
    name = "blocks.9.mobile_inverted_conv.depth_conv.bn"
    tensors[f"{name}.running_mean"], tensors[f"{name}.running_var"] = (
        tensors[f"{name}.running_var"], tensors[f"{name}.running_mean"])
    weights = convert(tensors, get_arch("proxylessnas_mobile"), "official")
    path = tmp_path / "swapped.ckpt"
    ms.save_checkpoint([{"name": k, "data": ms.Tensor(v)} for k, v in weights.items()], str(path))
    with pytest.raises(AssertionError, match="max abs logit difference"):
        assert_same_logits(mindspore_logits("proxylessnas_mobile", path), logits)


def test_cli_subprocess_writes_a_loadable_checkpoint_and_refuses_overwrite(tmp_path, torch_needed):
    path = source_file("official", "proxylessnas_cpu", tmp_path)
    out = tmp_path / "cpu.ckpt"
    cmd = [sys.executable, str(ROOT / "tools" / "convert_weights.py"), "--source", "official",
           "--arch", "proxylessnas_cpu", "--input", str(path), "--output", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith(f"wrote {out}: ") and "1000 classes" in last
    net = mindspore_net("proxylessnas_cpu")
    load_weights(net, str(out))  # strict: every parameter and statistic present
    assert sorted(read_checkpoint(str(out))) == sorted(p.name for p in net.get_parameters())

    again = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert again.returncode == 2
    assert again.stderr.strip().startswith("error: ") and "--overwrite" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    # MindSpore writes checkpoints read-only; --overwrite still replaces them
    assert convert_main(cmd[2:] + ["--overwrite"]) == 0


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("source", SOURCES)
def test_key_map_targets_are_the_network_parameters(source, variant):
    # names and shapes derived from the NetSpec are exactly those of the built network
    net = mindspore_net(variant)
    mapping = key_map(get_arch(variant), source)
    assert list(mapping) == [p.name for p in net.get_parameters()]
    assert [shape for _, shape in mapping.values()] == [tuple(p.shape) for p in net.get_parameters()]
    assert len({src for src, _ in mapping.values()}) == len(mapping)


@pytest.fixture(scope="module")
def official_mobile():
    pytest.importorskip("torch", reason="PyTorch builds the reference weights: pip install torch==2.13.0")
    return {k: v.numpy() for k, v in reference("proxylessnas_mobile")[0].state_dict().items()}


def test_missing_key_is_named(official_mobile):
    tensors = dict(official_mobile)
    del tensors["blocks.7.mobile_inverted_conv.depth_conv.bn.running_var"]
    with pytest.raises(UserError, match=r"1 keys missing: blocks\.7\.mobile_inverted_conv\.depth_conv\.bn\.running_var;"
                                        r" 0 unexpected"):
        convert(tensors, get_arch("proxylessnas_mobile"), "official")


def test_extra_key_is_named(official_mobile):
    tensors = dict(official_mobile, **{"classifier.extra.weight": np.zeros(3, np.float32)})
    with pytest.raises(UserError, match=r"0 keys missing; 1 unexpected: classifier\.extra\.weight"):
        convert(tensors, get_arch("proxylessnas_mobile"), "official")


def test_many_unmatched_keys_are_sampled_with_a_count(official_mobile):
    with pytest.raises(UserError, match=r"keys missing: .* and \d+ more; .* unexpected: .* and \d+ more"):
        convert(official_mobile, get_arch("proxylessnas_cpu"), "official")


def test_shape_mismatch_is_reported(official_mobile):
    tensors = dict(official_mobile)
    tensors["feature_mix_layer.conv.weight"] = np.zeros((1280, 320, 3, 3), np.float32)
    with pytest.raises(UserError, match=r"1 tensors: feature_mix_layer\.conv\.weight \(1280, 320, 3, 3\) "
                                        r"vs \(1280, 320, 1, 1\)"):
        convert(tensors, get_arch("proxylessnas_mobile"), "official")


def test_num_batches_tracked_is_ignored_and_num_classes_taken_from_the_file(official_mobile):
    tensors = dict(official_mobile)
    assert any(k.endswith("num_batches_tracked") for k in tensors)
    tensors["classifier.linear.weight"] = np.zeros((10, 1280), np.float32)
    tensors["classifier.linear.bias"] = np.zeros(10, np.float32)
    weights = convert(tensors, get_arch("proxylessnas_mobile"), "official")
    assert weights["output.weight"].shape == (10, 1280)
    with pytest.raises(UserError, match="classifier has 10 classes but 1000 were asked for: pass --num_classes 10"):
        convert(tensors, get_arch("proxylessnas_mobile"), "official", num_classes=1000)


def test_wrong_source_and_wrong_arch_get_a_hint(tmp_path, capsys, torch_needed):
    path = source_file("pytorchcv", "proxylessnas_mobile", tmp_path)
    args = ["--input", str(path), "--output", str(tmp_path / "x.ckpt")]
    assert convert_main(["--source", "official", "--arch", "proxylessnas_mobile"] + args) == 2
    assert "the keys look like --source pytorchcv" in capsys.readouterr().err
    assert convert_main(["--source", "pytorchcv", "--arch", "proxylessnas_gpu"] + args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "weights fit --arch proxylessnas_mobile, not proxylessnas_gpu" in err
    assert not (tmp_path / "x.ckpt").exists()


def test_plain_official_state_dict_and_dataparallel_prefix_are_accepted(tmp_path, torch_needed):
    model, logits = reference("proxylessnas_mobile")
    path = tmp_path / "plain.pth"
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, path)
    out = tmp_path / "plain.ckpt"
    assert convert_main(["--source", "official", "--arch", "proxylessnas_mobile",
                         "--input", str(path), "--output", str(out)]) == 0
    assert_same_logits(mindspore_logits("proxylessnas_mobile", out), logits)


def test_unreadable_and_missing_inputs_are_one_line_errors(tmp_path, capsys, torch_needed):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    for source, path in (("official", bad), ("pytorchcv", tmp_path / "absent.pth"), ("modelzoo", bad)):
        assert convert_main(["--source", source, "--arch", "proxylessnas_mobile", "--input", str(path),
                             "--output", str(tmp_path / "o.ckpt")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and len(err.splitlines()) == 1 and "Traceback" not in err


def test_missing_torch_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    path = tmp_path / "w.pth"
    path.write_bytes(b"x")
    from src.convert import read_torch_weights

    with pytest.raises(UserError, match=r"pip install torch==2\.13\.0"):
        read_torch_weights(str(path))


@pytest.mark.parametrize("variant", VARIANTS)
def test_arch_can_be_an_official_config_file(variant):
    spec = resolve_spec(str(official_config(variant)))
    assert key_map(spec, "official") == key_map(get_arch(variant), "official")


def test_guess_source():
    assert guess_source(["first_conv.conv.weight"]) == "official"
    assert guess_source(["features.init_block.bn.running_mean"]) == "pytorchcv"
    assert guess_source(["features.init_block.bn.moving_mean"]) == "modelzoo"
    assert guess_source(["fc.weight"]) is None


# ---------------------------------------------------------------------------
# ModelZoo checkpoints saved from real training cells (tests/modelzoo_checkpoint.py)
# ---------------------------------------------------------------------------
from modelzoo_checkpoint import KINDS, save_modelzoo_checkpoint  # noqa: E402
from src.convert import convert_file  # noqa: E402


@pytest.mark.parametrize("kind", KINDS)
def test_modelzoo_source_converts_training_cell_checkpoints(kind, tmp_path):
    ckpt = save_modelzoo_checkpoint(tmp_path / "zoo", kind, seed=4)
    out = tmp_path / "converted.ckpt"
    summary = convert_file("modelzoo", "proxylessnas_mobile", str(ckpt), str(out))
    assert summary["num_classes"] == 3
    entries, converted = read_checkpoint(str(ckpt)), read_checkpoint(str(out))
    net = create_model("proxylessnas_mobile", num_classes=3)
    assert sorted(converted) == sorted(p.name for p in net.get_parameters())  # optimizer state dropped
    for name, value in converted.items():
        np.testing.assert_array_equal(value.asnumpy(), entries[name].asnumpy())


def test_modelzoo_cli_on_a_model_train_checkpoint_and_a_foreign_entry(tmp_path):
    ckpt = save_modelzoo_checkpoint(tmp_path / "zoo", "model_train", seed=4)
    cmd = [sys.executable, str(ROOT / "tools" / "convert_weights.py"), "--source", "modelzoo",
           "--arch", "proxylessnas_mobile", "--input", str(ckpt), "--output", str(tmp_path / "out.ckpt")]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1].startswith(f"wrote {tmp_path / 'out.ckpt'}: 307 tensors")
    assert "3 classes) from modelzoo" in done.stdout
    entries = read_checkpoint(str(ckpt))
    odd = tmp_path / "odd.ckpt"
    ms.save_checkpoint([{"name": k, "data": v} for k, v in entries.items()]
                       + [{"name": "aux_head.weight", "data": ms.Tensor(np.ones(2, np.float32))}], str(odd))
    with pytest.raises(UserError, match=r"1 unexpected: aux_head.weight\)"):
        convert_file("modelzoo", "proxylessnas_mobile", str(odd), str(tmp_path / "odd_out.ckpt"))
