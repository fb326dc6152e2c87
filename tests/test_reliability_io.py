"""Reliability, round 2 (issue 13, points 3, 4, 11, 16, 17): config files with values of the wrong kind,
outputs that cannot be written, exported input sizes, launch-script logs and messages, each reproduced the
way it happens in the field (a real read-only folder, a real folder where a file is expected, real files)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, make_image_folder, official_config, run_script
from src.errors import UserError

TINY = ["--device_target", "CPU", "--num_classes", "2", "--image_size", "32", "--val_batch_size", "3",
        "--work_nums", "1"]


def one_line_error(text: str) -> str:
    """The stderr of a failed script: exactly one 'error: ...' line (no traceback)."""
    errors = [line for line in text.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in text, text[-3000:]
    return errors[0]


# ---------------------------------------------------------------------------
# A real read-only folder.  Root ignores permission bits, so as root the folder is bind-mounted onto itself
# read-only (writes fail with EROFS, as on a read-only mount in the field), else made immutable with
# chattr +i (EPERM); as another user, permission bits do it (EACCES).
# ---------------------------------------------------------------------------
def _try(*cmd) -> bool:
    return subprocess.run(list(map(str, cmd)), capture_output=True).returncode == 0


@pytest.fixture
def readonly_dir(tmp_path):
    folder = tmp_path / "readonly"
    folder.mkdir()
    (folder / "earlier.json").write_text('{"kept": true}\n')
    undo = None
    if os.geteuid() != 0:
        folder.chmod(0o555)
        undo = lambda: folder.chmod(0o755)  # noqa: E731
    elif _try("mount", "--bind", folder, folder):
        if _try("mount", "-o", "remount,bind,ro", folder):
            undo = lambda: _try("umount", folder)  # noqa: E731
        else:
            _try("umount", folder)
    if undo is None and os.geteuid() == 0 and _try("chattr", "+i", folder):
        undo = lambda: _try("chattr", "-i", folder)  # noqa: E731
    if undo is None:
        pytest.skip("cannot make a read-only folder here (root without mount or chattr)")
    try:
        try:
            (folder / "probe").write_text("x")
        except OSError:
            pass
        else:
            pytest.skip("the folder stayed writable: no read-only folder can be made here")
        yield folder
    finally:
        undo()
    assert sorted(p.name for p in folder.iterdir()) == ["earlier.json"]  # nothing added, nothing lost


# ---------------------------------------------------------------------------
# Point 3 (and 17): YAML values get the command line's type checks
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("line, message", [
    ("lr_init:", "lr_init in {path}: expected float, got nothing (empty value)"),
    ("lr_init: [0.1, 0.2]", "lr_init in {path}: expected float, got [0.1, 0.2] (a list)"),
    ("epoch_size: {first: 3}", "epoch_size in {path}: expected int, got {'first': 3} (a mapping)"),
    ("train_batch_size: 3.5", "train_batch_size in {path}: expected int, got 3.5 (a float)"),
    ("image_size: true", "image_size in {path}: expected int, got True (a bool)"),
    ("train_batch_size: many", "train_batch_size in {path}: expected int, got 'many'"),
    ("dataset_path: 5", "dataset_path in {path}: expected a string (a path or a name), got 5 (an int)"),
    ("checkpoint_path: [a.ckpt]", "checkpoint_path in {path}: expected a string (a path or a name), got ['a.ckpt']"),
    ("random_flip: 2", "random_flip in {path}: expected bool (true/false/1/0), got 2 (an int)"),
    ("cutout: [true]", "cutout in {path}: expected bool (true/false/1/0), got [True] (a list)"),
])
def test_yaml_values_of_the_wrong_kind_name_key_file_and_kind(tmp_path, line, message):
    from src.model_utils.config import get_config

    path = tmp_path / "run.yaml"
    path.write_text(f"device_target: CPU\n{line}\n")
    with pytest.raises(UserError) as err:
        get_config(["--config_path", str(path)])
    assert message.replace("{path}", str(path)) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("value, expected", [("1", True), ("0", False), ("true", True), ("no", False),
                                             ("'1'", True), ("off", False)])
def test_yaml_bools_accept_what_the_command_line_accepts(tmp_path, value, expected):
    from src.model_utils.config import get_config

    path = tmp_path / "run.yaml"
    path.write_text(f"random_flip: {value}\n")
    assert get_config(["--config_path", str(path)]).random_flip is expected
    cli = get_config(["--random_flip", value.strip("'")]).random_flip
    assert cli is expected  # the same word means the same on both sides


def test_yaml_empty_string_value_means_not_set(tmp_path):
    from src.model_utils.config import get_config

    path = tmp_path / "run.yaml"
    path.write_text("pretrained:\nlr_init: 1\n")
    cfg = get_config(["--config_path", str(path)])
    assert cfg.pretrained == "" and cfg.lr_init == 1.0 and isinstance(cfg.lr_init, float)


def test_wrong_kind_in_yaml_through_the_entry_script(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("device_target: CPU\nval_batch_size: [1, 2]\n")
    proc = run_script(["eval.py", "--config_path", path, "--checkpoint_path", tmp_path])
    assert proc.returncode == 2
    assert one_line_error(proc.stderr) == (f"error: val_batch_size in {path}: expected int, got [1, 2] (a list)")


def _drop(config: dict, where: str) -> dict:
    """The config without the key at a dotted path like 'blocks.3.mobile_inverted_conv.kernel_size'."""
    parts = where.split(".")
    node = config
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node[part]
    del node[int(parts[-1]) if parts[-1].isdigit() else parts[-1]]
    return config


@pytest.mark.parametrize("key, names", [
    ("first_conv.out_channels", ("first_conv", "'out_channels'")),
    ("first_conv.kernel_size", ("first_conv", "'kernel_size'")),
    ("feature_mix_layer.in_channels", ("feature_mix_layer", "'in_channels'")),
    ("classifier.out_features", ("classifier", "'out_features'")),
    ("classifier", ("top level", "'classifier'")),
    ("blocks", ("top level", "'blocks'")),
    ("blocks.1.mobile_inverted_conv.kernel_size", ("blocks[1].mobile_inverted_conv", "'kernel_size'")),
    ("blocks.5.mobile_inverted_conv.expand_ratio", ("blocks[5].mobile_inverted_conv", "'expand_ratio'")),
    ("blocks.2.mobile_inverted_conv", ("blocks[2]", "'mobile_inverted_conv'")),
    ("blocks.7.mobile_inverted_conv.name", ("blocks[7].mobile_inverted_conv", "'name'")),
])
def test_network_config_missing_key_names_the_key_and_the_file(tmp_path, key, names):
    from src import create_model
    from src.arch import spec_from_config

    config = _drop(json.loads(official_config("proxylessnas_mobile").read_text()), key)
    path = tmp_path / "net.config"
    path.write_text(json.dumps(config))
    for load in (spec_from_config, create_model):  # the reader and the way train.py --arch FILE meets it
        with pytest.raises(UserError) as err:
            load(str(path))
        text = str(err.value)
        assert str(path) in text and f"at {names[0]}" in text and f"the key {names[1]} is missing" in text, text


@pytest.mark.parametrize("key, value, expected", [
    ("first_conv.out_channels", "32", "first_conv.out_channels: expected a whole number, got '32'"),
    ("blocks.1.mobile_inverted_conv.stride", None, "blocks[1].mobile_inverted_conv.stride: expected a whole number"),
    ("blocks.1.mobile_inverted_conv.expand_ratio", "3", "expand_ratio: expected a number, got '3'"),
    ("classifier", [1000], "at top level.classifier: expected a JSON object, got [1000]"),
    ("bn.eps", "1e-3", "bn.eps: expected a number, got '1e-3'"),
])
def test_network_config_value_of_the_wrong_kind(tmp_path, key, value, expected):
    from src.arch import spec_from_config

    config = json.loads(official_config("proxylessnas_mobile").read_text())
    parts = key.split(".")
    node = config
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node[part]
    node[parts[-1]] = value
    path = tmp_path / "net.config"
    path.write_text(json.dumps(config))
    with pytest.raises(UserError) as err:
        spec_from_config(str(path))
    assert expected in str(err.value) and str(path) in str(err.value), str(err.value)


def test_network_config_that_is_a_folder_or_a_json_list(tmp_path):
    from src.arch import spec_from_config

    with pytest.raises(UserError, match="is a folder: pass the .config/.json file"):
        spec_from_config(str(tmp_path))
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(UserError, match="at top level: expected a JSON object, got list"):
        spec_from_config(str(tmp_path / "list.json"))


# ---------------------------------------------------------------------------
# Points 4 and 17: evaluation outputs and a folder of checkpoints with a bad one
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def eval_setup(tmp_path_factory):
    """A tiny 2-class dataset and a folder of checkpoints: two good ones, a text file and another variant's."""
    import mindspore as ms
    from src import create_model

    base = tmp_path_factory.mktemp("eval")
    data = make_image_folder(base / "data", n_train=2, n_val=2)
    ckpts = base / "ckpts"
    ckpts.mkdir()
    for seed in (1, 2):
        ms.set_seed(seed)
        ms.save_checkpoint(create_model("proxylessnas_mobile", num_classes=2), str(ckpts / f"good{seed}.ckpt"))
    (ckpts / "notes.ckpt").write_text("these are my notes, not weights\n")
    ms.set_seed(3)
    ms.save_checkpoint(create_model("proxylessnas_cpu", num_classes=2), str(ckpts / "other_arch.ckpt"))
    return data, ckpts


def test_folder_evaluation_reports_bad_checkpoints_and_keeps_the_others(eval_setup, tmp_path):
    data, ckpts = eval_setup
    out = tmp_path / "results.json"
    proc = run_script(["eval.py", *TINY, "--dataset_path", data, "--checkpoint_path", ckpts, "--eval_output", out])
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    summary = json.loads(out.read_text())
    assert sorted(Path(p).name for p in summary["results"]) == ["good1.ckpt", "good2.ckpt"]
    assert sorted(Path(p).name for p in summary["failed"]) == ["notes.ckpt", "other_arch.ckpt"]
    assert "it holds text ('these are my notes, not weights')" in summary["failed"][str(ckpts / "notes.ckpt")]
    assert "pass --arch proxylessnas_cpu" in summary["failed"][str(ckpts / "other_arch.ckpt")]
    assert proc.stdout.strip().splitlines()[-1].startswith(f"best {summary['best']}: top-1")
    line = one_line_error(proc.stderr)
    assert line.startswith("error: 2 of 4 checkpoints could not be evaluated (notes.ckpt, other_arch.ckpt;")
    assert f"the other 2 are in {out}" in line


def test_eval_into_a_read_only_folder_prints_the_accuracy_then_one_line(eval_setup, readonly_dir):
    data, ckpts = eval_setup
    out = readonly_dir / "eval.json"
    proc = run_script(["eval.py", *TINY, "--dataset_path", data, "--checkpoint_path", ckpts / "good1.ckpt",
                       "--eval_output", out])
    assert proc.returncode == 2
    assert proc.stdout.strip().splitlines()[-1].startswith(f"{ckpts / 'good1.ckpt'}: top-1 ")
    line = one_line_error(proc.stderr)
    assert line.startswith(f"error: cannot write the evaluation results to {out}: ")
    assert line.endswith("(pass --eval_output with a writable path)")


def test_eval_output_that_is_a_folder_is_refused_and_leaves_no_temp_file(eval_setup, tmp_path):
    data, ckpts = eval_setup
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "earlier.json").write_text("{}\n")
    before = sorted(p.name for p in ckpts.iterdir())
    proc = run_script(["eval.py", *TINY, "--dataset_path", data, "--checkpoint_path", ckpts / "good1.ckpt",
                       "--eval_output", folder])
    assert proc.returncode == 2
    assert one_line_error(proc.stderr) == (f"error: --eval_output {folder} is a folder: give a file path for the "
                                           "evaluation results")
    assert sorted(p.name for p in folder.iterdir()) == ["earlier.json"]
    assert sorted(p.name for p in ckpts.iterdir()) == before


def test_write_json_atomic_into_a_folder_path_leaves_nothing(tmp_path, readonly_dir):
    from src.evaluate import write_json_atomic

    (tmp_path / "out.json").mkdir()
    with pytest.raises(UserError, match="is a folder"):
        write_json_atomic(str(tmp_path / "out.json"), {"a": 1})
    with pytest.raises(UserError, match=f"cannot write the evaluation results to {readonly_dir / 'r.json'}"):
        write_json_atomic(str(readonly_dir / "r.json"), {"a": 1})
    with pytest.raises(UserError, match="is a file, not a folder"):
        write_json_atomic(str(readonly_dir / "earlier.json" / "r.json"), {"a": 1})
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "readonly") == ["out.json"]


# ---------------------------------------------------------------------------
# Point 4: export, conversion, the 310 pre- and postprocessing into read-only folders
# ---------------------------------------------------------------------------
def test_export_into_a_read_only_folder_is_one_line(eval_setup, readonly_dir, capsys):
    import export

    _, ckpts = eval_setup
    code = export.main(["--device_target", "CPU", "--checkpoint", str(ckpts / "good1.ckpt"), "--num_classes", "2",
                        "--image_size", "32", "--file_name", str(readonly_dir / "net")])
    assert code == 2
    assert one_line_error(capsys.readouterr().err).startswith(
        f"error: cannot write the exported MINDIR file to {readonly_dir / 'net.mindir'}: ")


def test_conversion_into_a_read_only_folder_is_one_line(tmp_path, readonly_dir, capsys):
    torch = pytest.importorskip("torch", reason="converting .pth files needs torch")
    from tools import convert_weights

    source = tmp_path / "w.pth"
    torch.save({"state_dict": {"first_conv.conv.weight": torch.zeros(32, 3, 3, 3)}}, source)
    code = convert_weights.main(["--source", "official", "--arch", "proxylessnas_mobile", "--input", str(source),
                                 "--output", str(readonly_dir / "w.ckpt")])
    assert code == 2
    assert one_line_error(capsys.readouterr().err).startswith(
        f"error: cannot write the converted checkpoint to {readonly_dir / 'w.ckpt'}: ")


def test_postprocess_acc_log_into_a_read_only_folder(tmp_path, readonly_dir, capsys):
    import postprocess

    from src.infer_310 import LABEL_FILE

    pre = tmp_path / "pre"
    pre.mkdir()
    (pre / LABEL_FILE).write_text(json.dumps({"a": 0, "b": 1}))
    results = tmp_path / "result_Files"
    results.mkdir()
    np.array([3.0, 1.0], dtype=np.float32).tofile(results / "a_0.bin")  # right
    np.array([3.0, 1.0], dtype=np.float32).tofile(results / "b_0.bin")  # wrong
    code = postprocess.main(["--device_target", "CPU", "--result_path", str(results), "--pre_result_path", str(pre),
                             "--acc_log", str(readonly_dir / "acc.log")])
    assert code == 2
    assert one_line_error(capsys.readouterr().err).startswith(
        f"error: cannot write the accuracy log to {readonly_dir / 'acc.log'}: ")
    # the same into a writable place works and reads back
    assert postprocess.main(["--device_target", "CPU", "--result_path", str(results), "--pre_result_path", str(pre),
                             "--acc_log", str(tmp_path / "acc.log")]) == 0
    assert (tmp_path / "acc.log").read_text() == "Top1 acc:  0.5\nTop5 acc:  1.0\n"


def test_preprocess_into_a_read_only_folder(eval_setup, readonly_dir, tmp_path, capsys):
    import preprocess

    data, _ = eval_setup
    argv = ["--device_target", "CPU", "--dataset_path", str(data / "val"), "--num_classes", "2",
            "--image_size", "32"]
    assert preprocess.main(argv + ["--pre_result_path", str(readonly_dir / "pre")]) == 2
    assert one_line_error(capsys.readouterr().err).startswith(
        f"error: cannot write the preprocessed inputs to {readonly_dir / 'pre'}: ")
    (tmp_path / "a_file").write_text("x")
    assert preprocess.main(argv + ["--pre_result_path", str(tmp_path / "a_file")]) == 2
    assert "is a file, not a folder" in one_line_error(capsys.readouterr().err)


# ---------------------------------------------------------------------------
# Point 17: folders where a file is needed, text files as weights, another variant's checkpoint
# ---------------------------------------------------------------------------
def test_folder_given_as_checkpoint_model_or_resume_is_called_a_folder(eval_setup, tmp_path, capsys):
    import export
    from src.predict import main as predict_main

    data, ckpts = eval_setup
    assert export.main(["--device_target", "CPU", "--checkpoint", str(ckpts), "--num_classes", "2",
                        "--file_name", str(tmp_path / "n")]) == 2
    assert one_line_error(capsys.readouterr().err) == (f"error: checkpoint {ckpts} is a folder, not a file: "
                                                        "pass a .ckpt file inside it")
    assert predict_main([str(data / "val"), "--model", str(ckpts)]) == 2
    assert one_line_error(capsys.readouterr().err) == (f"error: --model {ckpts} is a folder, not a file: pass a "
                                                        ".ckpt, .mindir or .onnx file inside it")
    proc = run_script(["train.py", *TINY, "--dataset_path", data, "--save_ckpt_path", tmp_path / "runs",
                       "--resume", ckpts])
    assert proc.returncode == 2
    assert one_line_error(proc.stderr) == f"error: --resume {ckpts} is a folder, not a file: pass a file inside it"
    assert not (tmp_path / "runs").exists()  # refused before anything was created


def test_text_file_given_as_weights_says_what_it_holds(tmp_path, capsys):
    from src.checkpoint import read_checkpoint
    from tools import convert_weights

    pytest.importorskip("torch", reason="reading .pth files needs torch")
    text = tmp_path / "weights.pth"
    text.write_text("see https://example.org for the real weights\n")
    assert convert_weights.main(["--source", "official", "--arch", "proxylessnas_mobile", "--input", str(text),
                                 "--output", str(tmp_path / "w.ckpt")]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert line == (f"error: {text} is not a PyTorch weights file: it holds text ('see https://example.org for "
                    "the real weights'); pass the .pth file of the official or pytorchcv release")
    assert "(101)" not in line
    with pytest.raises(UserError, match=r"is not a MindSpore checkpoint: it holds text \('see https"):
        read_checkpoint(str(text))
    assert not (tmp_path / "w.ckpt").exists()


@pytest.mark.parametrize("saved, built", [("proxylessnas_cpu", "proxylessnas_mobile"),
                                          ("proxylessnas_mobile_14", "proxylessnas_mobile"),
                                          ("proxylessnas_mobile", "proxylessnas_gpu")])
def test_checkpoint_of_another_variant_names_the_arch_to_pass(tmp_path, saved, built):
    import mindspore as ms
    from src import create_model
    from src.checkpoint import load_weights

    path = tmp_path / "w.ckpt"
    ms.save_checkpoint(create_model(saved, num_classes=7), str(path))
    with pytest.raises(UserError) as err:
        load_weights(create_model(built, num_classes=7), str(path))
    assert str(err.value).endswith(f"it was saved for another --arch ({saved}): pass --arch {saved}")


# ---------------------------------------------------------------------------
# Point 11: a model exported at one image size, run at another
# ---------------------------------------------------------------------------
EXPORTED = 64


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A MINDIR and an ONNX file of a 3-class network exported for 64x64 inputs, and a few images."""
    import mindspore as ms
    from src import create_model
    from src.export import export_network

    base = tmp_path_factory.mktemp("exported")
    ms.set_seed(4)
    net = create_model("proxylessnas_mobile", num_classes=3)
    mindir = export_network(net, str(base / "net"), "MINDIR", image_size=EXPORTED).path
    onnx = None
    if _has("onnxruntime"):
        onnx = export_network(net, str(base / "net"), "ONNX", image_size=EXPORTED).path
    data = make_image_folder(base / "data", classes=("a", "b", "c"), n_train=1, n_val=2)
    return mindir, onnx, data


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_mindir_records_its_input_shape(exported):
    from src.files import mindir_input_shape

    assert mindir_input_shape(exported[0]) == (1, 3, EXPORTED, EXPORTED)


@pytest.mark.parametrize("kind", ["MINDIR", "ONNX"])
def test_predict_takes_the_size_from_the_file_and_refuses_another(exported, kind, capsys):
    from src.predict import main as predict_main, open_model

    mindir, onnx, data = exported
    model_path = mindir if kind == "MINDIR" else onnx
    if model_path is None:
        pytest.skip("onnxruntime is not installed: the ONNX file cannot be run here")
    assert open_model(str(model_path)).image_size == EXPORTED  # no --image_size: the file's own
    image = sorted((data / "val").rglob("*.jpg"))[0]
    assert predict_main([str(image), "--model", str(model_path), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)[0]["top"]) == 3
    assert predict_main([str(image), "--model", str(model_path), "--image_size", "224"]) == 2
    assert one_line_error(capsys.readouterr().err) == (
        f"error: {model_path} was exported for {EXPORTED}x{EXPORTED} inputs but --image_size is 224: "
        f"pass --image_size {EXPORTED} (or export again at 224)")


def test_cpu_310_runner_refuses_inputs_of_another_size(exported, tmp_path):
    from src.dataset import preprocess_image
    from src.infer_runner import run_mindir_on_binaries

    mindir, _, data = exported
    inputs = tmp_path / "img_data"
    inputs.mkdir()
    for path in sorted((data / "val").rglob("*.jpg"))[:2]:
        preprocess_image(str(path), 32).tofile(inputs / f"{path.stem}.bin")
    with pytest.raises(UserError) as err:
        run_mindir_on_binaries(str(mindir), str(inputs), str(tmp_path / "res"), str(tmp_path / "time"))
    assert str(err.value).endswith(f"was exported for {EXPORTED}x{EXPORTED} inputs: preprocess again with "
                                   f"IMAGE_SIZE={EXPORTED} NEED_PREPROCESS=y")
    assert not list(tmp_path.glob("res/*.bin"))


def test_run_infer_310_refuses_a_wrong_image_size_and_defaults_to_the_files(exported, tmp_path):
    mindir, _, data = exported
    env = dict(os.environ, INFER_BACKEND="python", PYTHON=sys.executable, IMAGE_SIZE="224")
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "run_infer_310.sh"), str(mindir), "imagenet2012",
                           str(data / "val"), "y"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2
    assert one_line_error(proc.stderr) == (f"error: IMAGE_SIZE=224 but {mindir} was exported for "
                                           f"{EXPORTED}x{EXPORTED} inputs: set IMAGE_SIZE={EXPORTED} (or leave it unset)")
    assert not (tmp_path / "preprocess_Result").exists()  # refused before any work


# ---------------------------------------------------------------------------
# Point 16 and 17: launch scripts keep earlier logs and show a failed worker's cause
# ---------------------------------------------------------------------------
def test_refused_rerun_keeps_the_earlier_runs_log(tmp_path):
    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    (data / "val").mkdir()
    out = tmp_path / "out"
    (out / "r1" / "checkpoints").mkdir(parents=True)  # the earlier run
    (out / "r1" / "checkpoints" / "proxylessnas_mobile-1_4.ckpt").write_bytes(b"weights")
    (out / "logs" / "r1").mkdir(parents=True)
    earlier = "epoch 1/1 step 4/4 loss 0.7\ntraining done: 1 epochs\n"
    (out / "logs" / "r1" / "train.log").write_text(earlier)
    env = dict(os.environ, PYTHON=sys.executable, OUTPUT_DIR=str(out), RUN_NAME="r1")
    script = ["bash", str(ROOT / "scripts" / "run_standalone_train_for_cpu.sh"), str(data), "--epoch_size", "1"]
    for attempt in (2, 3):
        proc = subprocess.run(script, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert f"run folder {out / 'r1'} already exists" in proc.stdout  # train.py's refusal, through tee
        assert f"logs of an earlier run named r1 are kept in {out / 'logs' / 'r1'}" in proc.stderr
        assert "already exists" in (out / "logs" / f"r1.{attempt}" / "train.log").read_text()
    assert (out / "logs" / "r1" / "train.log").read_text() == earlier
    assert sorted(p.name for p in (out / "logs").iterdir()) == ["r1", "r1.2", "r1.3"]
    assert (out / "r1" / "checkpoints" / "proxylessnas_mobile-1_4.ckpt").read_bytes() == b"weights"


def test_failed_worker_cause_is_printed_by_the_launcher(tmp_path):
    # msrun stand-in: workers write their logs and exit statuses the way msrun_worker.py records them
    fake = tmp_path / "msrun.sh"
    fake.write_text("""#!/usr/bin/env bash
for arg in "$@"; do case "$arg" in --log_dir=*) log_dir="${arg#--log_dir=}" ;; esac; done
printf 'epoch 1 step 1\\n' > "$log_dir/worker_0.log"
printf 'loading data\\nerror: dataset folder not found: /data/train (rank 1)\\n' > "$log_dir/worker_1.log"
echo 0 > "$WORKER_STATUS_DIR/rank_0.exit"
echo 2 > "$WORKER_STATUS_DIR/rank_1.exit"
exit 1
""")
    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    env = dict(os.environ, PYTHON=sys.executable, OUTPUT_DIR=str(tmp_path / "out"), RUN_NAME="d2",
               MSRUN=f"bash {fake}", MASTER_PORT="8118")
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "run_distribute_train_for_cpu.sh"), "2", str(data)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    logs = tmp_path / "out" / "logs" / "d2"
    assert proc.returncode == 1
    assert f"FAILED: rank 1 (exit code 2, log {logs / 'worker_1.log'})" in proc.stderr
    lines = proc.stderr.splitlines()
    start = lines.index(f"[run_distribute_train_for_cpu.sh] last lines of {logs / 'worker_1.log'}:")
    assert lines[start + 1:start + 3] == ["    loading data", "    error: dataset folder not found: /data/train (rank 1)"]
    assert "epoch 1 step 1" not in proc.stderr  # only the failed worker's log


# ---------------------------------------------------------------------------
# Point 17: the demo refuses an existing output folder with exit 2
# ---------------------------------------------------------------------------
def test_demo_refuses_an_existing_out_with_exit_2(tmp_path, capsys):
    from tools import demo

    existing = tmp_path / "demo_output"
    existing.mkdir()
    (existing / "eval.json").write_text("{}\n")
    assert demo.main(["--out", str(existing)]) == 2
    assert one_line_error(capsys.readouterr().err) == (f"error: --out {existing} already exists: remove it or pass "
                                                        "--out NEW_FOLDER")
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    assert demo.main(["--out", str(a_file)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (existing / "eval.json").read_text() == "{}\n" and a_file.read_text() == "x"


# ---------------------------------------------------------------------------
# The same class with other files: a folder where a file is read or written
# ---------------------------------------------------------------------------
def _folder_cases():
    from src.arch import spec_from_config
    from src.checkpoint import read_checkpoint
    from src.infer_310 import read_labels
    from src.infer_runner import run_mindir_on_binaries
    from src.model_utils.config import get_config
    from src.predict import open_model, read_names_file

    return {
        "--config_path": (lambda d: get_config(["--config_path", str(d)]), "is a folder, not a file"),
        "--class_names": (lambda d: read_names_file(str(d)), "--class_names {d} is a folder, not a file"),
        "label file": (lambda d: read_labels(str(d)), "label file {d} is a folder, not a file"),
        "--mindir_path": (lambda d: run_mindir_on_binaries(str(d), str(d), str(d), str(d)),
                          "--mindir_path {d} is a folder, not a file"),
        "--model": (lambda d: open_model(str(d)), "--model {d} is a folder, not a file"),
        "--arch FILE": (lambda d: spec_from_config(str(d)), "network config {d} is a folder"),
        "checkpoint": (lambda d: read_checkpoint(str(d)), "checkpoint {d} is a folder, not a file"),
    }


@pytest.mark.parametrize("case", ["--config_path", "--class_names", "label file", "--mindir_path", "--model",
                                  "--arch FILE", "checkpoint"])
def test_a_folder_where_a_file_is_read_is_called_a_folder(tmp_path, case):
    call, message = _folder_cases()[case]
    folder = tmp_path / "looks_like.ckpt"  # a folder named like the file it replaces
    folder.mkdir()
    with pytest.raises(UserError) as err:
        call(folder)
    assert message.format(d=folder) in str(err.value) and "not found" not in str(err.value)


def test_plot_into_a_folder_or_a_read_only_folder(tmp_path, readonly_dir, capsys):
    from tools import plot_metrics

    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text(json.dumps({"type": "step", "epoch": 1, "step": 1, "global_step": 1, "loss": 1.0,
                                   "lr": 0.1}) + "\n")
    (tmp_path / "plot.png").mkdir()
    assert plot_metrics.main([str(metrics), "--out", str(tmp_path / "plot.png")]) == 2
    assert "--out {} is a folder".format(tmp_path / "plot.png") in one_line_error(capsys.readouterr().err)
    assert plot_metrics.main([str(metrics), "--out", str(readonly_dir / "plot.png")]) == 2
    assert one_line_error(capsys.readouterr().err).startswith(f"error: cannot write the plot to {readonly_dir}")


def test_choices_document_must_hold_lists(tmp_path):
    from src.model_utils.config import get_config

    path = tmp_path / "run.yaml"
    path.write_text("device_target: CPU\n---\n{}\n---\ndevice_target: CPU\n")
    with pytest.raises(UserError, match=r"the choices of 'device_target' \(third document\) must be a list"):
        get_config(["--config_path", str(path)])
