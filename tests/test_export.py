"""export.py / src/export.py: MINDIR and ONNX files reload and match the network; AIR stops on CPU."""
import logging
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, assert_logits_close

ms = pytest.importorskip("mindspore")

from src import create_model  # noqa: E402
from src.checkpoint import params_list, save_checkpoint_atomic  # noqa: E402
from src.errors import UserError  # noqa: E402
from src.export import export_network, run_mindir  # noqa: E402

SIZE = 32
CLASSES = 4


def scaled_net(seed: int = 0):
    """A small-input network whose logits are O(1): a fresh net's logits are ~1e-10, too small to test a tolerance."""
    net = create_model("proxylessnas_mobile", num_classes=CLASSES)
    net.set_train(False)
    x = np.random.default_rng(seed).standard_normal((2, 3, SIZE, SIZE)).astype(np.float32)
    features = net.forward_features(ms.Tensor(x)).asnumpy()
    scale = 1.0 / max(float(features.std()), 1e-30)
    weight = np.random.default_rng(seed + 1).standard_normal((CLASSES, features.shape[1])) * scale
    net.output.weight.set_data(ms.Tensor(weight.astype(np.float32)))
    net.output.bias.set_data(ms.Tensor(np.arange(CLASSES, dtype=np.float32)))
    return net


@pytest.fixture(scope="module")
def net():
    from src.model_utils.device import set_device
    set_device("CPU")
    return scaled_net()


def _script(*args, cwd):
    return subprocess.run([sys.executable, str(ROOT / "export.py"), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_mindir_export_reloads_and_matches(net, tmp_path):
    result = export_network(net, str(tmp_path / "model"), "MINDIR", batch_size=1, image_size=SIZE)
    assert result.path == tmp_path / "model.mindir" and result.path.is_file()
    assert result.max_abs_diff is not None and result.max_abs_diff <= result.tolerance
    # an input the export never saw
    x = np.random.default_rng(7).standard_normal((1, 3, SIZE, SIZE)).astype(np.float32)
    expected = net(ms.Tensor(x)).asnumpy()
    assert np.abs(expected).max() > 1e-3  # the comparison is about real numbers, not zeros
    assert_logits_close(run_mindir(result.path, x), expected, net)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".export-")]


def test_onnx_export_reloads_and_matches(net, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    result = export_network(net, str(tmp_path / "model.onnx"), "ONNX", batch_size=1, image_size=SIZE)
    assert result.path == tmp_path / "model.onnx"
    assert result.max_abs_diff is not None and result.max_abs_diff <= result.tolerance
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(8).standard_normal((1, 3, SIZE, SIZE)).astype(np.float32)
    # another framework's float32 kernels (and BN folded): within float32 rounding through the network
    assert_logits_close(session.run(None, {session.get_inputs()[0].name: x})[0], net(ms.Tensor(x)).asnumpy(), net)


def test_onnx_dynamic_batch_is_refused(net, tmp_path):
    with pytest.raises(UserError, match="dynamic_batch works with MINDIR only"):
        export_network(net, str(tmp_path / "m"), "ONNX", image_size=SIZE, dynamic_batch=True)
    assert not list(tmp_path.iterdir())


def test_mismatch_is_an_error_and_writes_nothing(net, tmp_path, monkeypatch):
    import src.export as export

    monkeypatch.setattr(export, "run_mindir", lambda path, x: net(ms.Tensor(x)).asnumpy() + 0.5)
    with pytest.raises(UserError, match=r"differs from the network by 0.5 .*was not written"):
        export_network(net, str(tmp_path / "m"), "MINDIR", image_size=SIZE)
    assert not list(tmp_path.iterdir())


def test_existing_file_replaced_is_reported(net, tmp_path, caplog):
    target = tmp_path / "model.mindir"
    target.write_bytes(b"old")
    with caplog.at_level(logging.INFO, logger="src.export"):
        result = export_network(net, str(tmp_path / "model"), "MINDIR", image_size=SIZE)
    assert result.replaced
    assert f"replacing existing {target} (3 bytes" in caplog.text
    assert target.stat().st_size > 1000


def test_cli_dynamic_mindir_prints_the_check(net, tmp_path):
    ckpt = save_checkpoint_atomic(params_list(net), str(tmp_path / "net.ckpt"))
    run = _script("--device_target", "CPU", "--checkpoint", ckpt, "--num_classes", CLASSES, "--image_size", SIZE,
                  "--file_name", tmp_path / "dyn", "--dynamic_batch", "true", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    line = run.stdout.strip().splitlines()[-1]
    assert line.startswith(f"exported {tmp_path / 'dyn.mindir'} (MINDIR, input Nx3x{SIZE}x{SIZE}); reloaded and "
                           "compared: max |difference|")
    x = np.random.default_rng(9).standard_normal((3, 3, SIZE, SIZE)).astype(np.float32)
    assert_logits_close(run_mindir(tmp_path / "dyn.mindir", x), net(ms.Tensor(x)).asnumpy(), net)


def test_air_on_cpu_stops_with_one_line(tmp_path):
    run = _script("--device_target", "CPU", "--file_format", "AIR", "--checkpoint", tmp_path / "none.ckpt",
                  "--file_name", tmp_path / "m", cwd=tmp_path)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        "error: AIR export needs an Ascend host (--device_target is CPU); export MINDIR or ONNX here, "
        "or run with --device_target Ascend on an Ascend machine"]
    assert not list(tmp_path.iterdir())


def test_missing_checkpoint_is_one_line(tmp_path):
    run = _script("--device_target", "CPU", "--checkpoint", tmp_path / "none.ckpt", cwd=tmp_path)
    assert run.returncode == 2
    assert run.stderr.strip() == f"error: checkpoint not found: {tmp_path / 'none.ckpt'}"


@pytest.mark.parametrize("fold_bn", [True, False])
def test_onnx_export_folds_batchnorm_by_default(net, tmp_path, fold_bn):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    kwargs = {} if fold_bn else {"fold_bn": False}
    result = export_network(net, str(tmp_path / "m"), "ONNX", image_size=SIZE, **kwargs)
    assert result.folded_bn is fold_bn
    assert result.max_abs_diff is not None and result.max_abs_diff <= result.tolerance  # vs the unfolded net
    ops = {node.op_type for node in onnx.load(str(result.path)).graph.node}
    assert ("BatchNormalization" in ops) is not fold_bn
    assert "Conv" in ops


def test_mindir_export_without_folding_still_matches(net, tmp_path):
    folded = export_network(net, str(tmp_path / "folded"), "MINDIR", image_size=SIZE)
    plain = export_network(net, str(tmp_path / "plain"), "MINDIR", image_size=SIZE, fold_bn=False)
    assert folded.folded_bn and not plain.folded_bn
    assert b"BatchNorm" in plain.path.read_bytes() and b"BatchNorm" not in folded.path.read_bytes()
    x = np.random.default_rng(10).standard_normal((1, 3, SIZE, SIZE)).astype(np.float32)
    assert_logits_close(run_mindir(folded.path, x), run_mindir(plain.path, x), net)


def test_folded_graph_that_misses_the_tolerance_falls_back_to_unfolded(net, tmp_path, monkeypatch, caplog):
    import src.export as export

    real = export.run_mindir
    calls = []

    def first_call_off(path, x):  # the folded file (checked first) is off, the unfolded one is exact
        calls.append(path)
        return real(path, x) + (0.5 if len(calls) == 1 else 0.0)

    monkeypatch.setattr(export, "run_mindir", first_call_off)
    with caplog.at_level(logging.WARNING, logger="src.export"):
        result = export_network(net, str(tmp_path / "m"), "MINDIR", image_size=SIZE)
    assert not result.folded_bn and result.max_abs_diff <= result.tolerance and len(calls) == 2
    assert "with BatchNorm folded, the exported MINDIR differs" in caplog.text
    assert "exporting the unfolded network instead" in caplog.text
    assert [p.name for p in tmp_path.iterdir()] == ["m.mindir"]
