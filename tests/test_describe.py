"""Checkpoints and exported files that describe themselves (src/description.py), and the entry points that
take the description as their defaults: eval.py, predict.py, export.py, preprocess.py (issue 14)."""
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import make_image_folder, run_script

CLASSES = ("fox", "cat", "dog")  # folder order is sorted: cat, dog, fox
SIZE = 64
TINY = ["--device_target", "CPU", "--train_batch_size", "3", "--val_batch_size", "3", "--work_nums", "1",
        "--warmup_epochs", "0", "--lr_init", "0.01", "--log_interval", "1", "--cutout", "false", "--epoch_size", "1",
        "--steps_per_epoch", "1", "--ema_decay", "0.9"]
SMALL_NET = "k3_e1_c8\nk3_e3_c16_s2\nk3_e3_c16_s2"


def ok(proc):
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def error_line(proc):
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    return lines[0]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("data"), classes=CLASSES, n_train=2, n_val=2, size=(70, 90))


@pytest.fixture(scope="module")
def small_arch(tmp_path_factory):
    """A non-released network, written as an official ProxylessNASNets .config (classifier: 7 classes)."""
    from src.arch import parse_arch, spec_to_config

    path = tmp_path_factory.mktemp("arch") / "small.config"
    path.write_text(json.dumps(spec_to_config(parse_arch(16, 64, SMALL_NET), num_classes=7)))
    return path


def train(data, out, name, *extra):
    ok(run_script(["train.py", *TINY, "--dataset_path", data, "--save_ckpt_path", out, "--run_name", name, *extra]))
    return out / name / "checkpoints"


@pytest.fixture(scope="module")
def small_run(data, small_arch, tmp_path_factory):
    """train.py on 3 classes at 64x64 with a non-released network (its file's 7 classes overridden)."""
    return train(data, tmp_path_factory.mktemp("runs"), "small", "--arch", small_arch, "--num_classes", "3",
                 "--image_size", str(SIZE), "--crop_pct", "0.9")


@pytest.fixture(scope="module")
def mobile_run(data, tmp_path_factory):
    """train.py on 3 classes at 64x64 with the released proxylessnas_mobile."""
    return train(data, tmp_path_factory.mktemp("runs"), "mobile", "--num_classes", "3", "--image_size", str(SIZE))


def test_every_checkpoint_of_a_run_describes_the_network(small_run, small_arch):
    from src.arch import parse_arch, spec_to_config
    from src.checkpoint import read_checkpoint, weights_of
    from src.description import read_description

    names = sorted(p.name for p in small_run.glob("*.ckpt"))
    assert names == ["small-1_1-ema.ckpt", "small-1_1.ckpt", "small-best-ema.ckpt", "small-best.ckpt"]
    for name in names:
        d = read_description(small_run / name)
        assert d["arch"] == spec_to_config(parse_arch(16, 64, SMALL_NET), num_classes=3)  # the full JSON
        assert (d["num_classes"], d["image_size"], d["crop_pct"]) == (3, SIZE, 0.9)
        assert d["class_names"] == ["cat", "dog", "fox"]
        np.testing.assert_allclose(d["mean"], [0.485, 0.456, 0.406])
        np.testing.assert_allclose(d["std"], [0.229, 0.224, 0.225])
        # weights loading does not see it
        assert "description" not in weights_of(read_checkpoint(str(small_run / name)))


def test_released_arch_is_described_by_name(mobile_run):
    from src.description import read_description

    d = read_description(mobile_run / "proxylessnas_mobile-best.ckpt")
    assert d["arch"] == "proxylessnas_mobile" and d["num_classes"] == 3 and d["image_size"] == SIZE


@pytest.mark.parametrize("run", ["small_run", "mobile_run"])
def test_eval_needs_only_checkpoint_and_dataset(run, data, request, tmp_path):
    ckpt = request.getfixturevalue(run) / f"{'small' if run == 'small_run' else 'proxylessnas_mobile'}-best.ckpt"
    out = tmp_path / "eval.json"
    proc = ok(run_script(["eval.py", "--checkpoint_path", ckpt, "--dataset_path", data, "--device_target", "CPU",
                          "--eval_output", out]))
    assert "from the description in" in proc.stdout and f"image_size {SIZE}" in proc.stdout
    result = json.loads(out.read_text())
    assert result["image_size"] == SIZE and result["results"][str(ckpt)]["count"] == 6


def test_eval_at_another_image_size_is_used_and_logged(small_run, data, tmp_path):
    out = tmp_path / "eval.json"
    proc = ok(run_script(["eval.py", "--checkpoint_path", small_run / "small-best.ckpt", "--dataset_path", data,
                          "--device_target", "CPU", "--image_size", "96", "--eval_output", out]))
    assert "--image_size 96 used as given" in proc.stdout and "trained with image_size 64" in proc.stdout
    assert json.loads(out.read_text())["image_size"] == 96


@pytest.mark.parametrize("flag, value, expected", [
    ("--num_classes", "5", "--num_classes 5 contradicts {ckpt}, whose weights have 3 classes: drop --num_classes "
                           "(or pass 3)"),
    ("--arch", "proxylessnas_cpu", "--arch proxylessnas_cpu does not fit checkpoint {ckpt}, whose description says "
                                   "arch a custom network (official ProxylessNASNets JSON): drop --arch to use it"),
])
def test_a_contradiction_with_the_weights_is_one_error_naming_both(small_run, data, flag, value, expected):
    ckpt = small_run / "small-best.ckpt"
    line = error_line(run_script(["eval.py", "--checkpoint_path", ckpt, "--dataset_path", data,
                                  "--device_target", "CPU", flag, value]))
    assert line == "error: " + expected.format(ckpt=ckpt)


def predict_names(proc):
    """The class names predict.py printed, one per ranked line."""
    return [line.split("%", 1)[1].split("  (class")[0].strip() for line in proc.stdout.splitlines()
            if line.startswith("  ")]


def test_predict_prints_the_training_class_folder_names(small_run, data):
    image = data / "val" / "fox" / "fox_0.jpg"
    proc = ok(run_script(["predict.py", "--model", small_run / "small-best.ckpt", image]))
    assert sorted(predict_names(proc)) == ["cat", "dog", "fox"]
    js = json.loads(ok(run_script(["predict.py", "--model", small_run / "small-best.ckpt", image, "--json"])).stdout)
    assert sorted(e["index"] for e in js[0]["top"]) == [0, 1, 2]
    assert all(e["name"] == ["cat", "dog", "fox"][e["index"]] for e in js[0]["top"])


@pytest.fixture(scope="module")
def exported(small_run, tmp_path_factory):
    """export.py to MINDIR and ONNX from the described checkpoint, with no arch, class or size flags."""
    out = tmp_path_factory.mktemp("export")
    files = {}
    for fmt in ("MINDIR", "ONNX"):
        ok(run_script(["export.py", "--checkpoint", small_run / "small-best.ckpt", "--device_target", "CPU",
                       "--file_format", fmt, "--file_name", out / "small"]))
        files[fmt] = out / f"small.{fmt.lower()}"
    return files


def test_exported_files_carry_the_description(exported, small_run):
    from src.description import read_description, sidecar_path
    from src.files import image_size_of, mindir_input_shape

    trained = read_description(small_run / "small-best.ckpt")
    assert sidecar_path(exported["MINDIR"]) == exported["MINDIR"].with_name("small.mindir.json")
    assert json.loads(sidecar_path(exported["MINDIR"]).read_text()) == trained
    assert read_description(exported["MINDIR"]) == trained
    assert read_description(exported["ONNX"]) == trained
    assert image_size_of(mindir_input_shape(exported["MINDIR"])) == SIZE


def test_int8_onnx_carries_the_description(small_run, data, tmp_path):
    from src.description import read_description
    from src.quantize import int8_path

    ok(run_script(["export.py", "--checkpoint", small_run / "small-best.ckpt", "--device_target", "CPU",
                   "--file_format", "ONNX", "--file_name", tmp_path / "small", "--quantize", "int8",
                   "--calibration_path", data / "train", "--calibration_images", "6"]))
    int8 = int8_path(tmp_path / "small.onnx")
    assert int8.is_file() and read_description(int8) == read_description(small_run / "small-best.ckpt")


@pytest.mark.parametrize("fmt", ["MINDIR", "ONNX"])
def test_predict_on_exported_files_uses_their_description(exported, small_run, data, fmt):
    image = data / "val" / "dog" / "dog_1.jpg"
    got = json.loads(ok(run_script(["predict.py", "--model", exported[fmt], image, "--json"])).stdout)
    want = json.loads(ok(run_script(["predict.py", "--model", small_run / "small-best.ckpt", image,
                                     "--json"])).stdout)
    assert [e["name"] for e in got[0]["top"]] == [e["name"] for e in want[0]["top"]]
    np.testing.assert_allclose([e["probability"] for e in got[0]["top"]],
                               [e["probability"] for e in want[0]["top"]], atol=1e-4)


def test_preprocess_takes_size_and_classes_from_the_mindir_description(exported, data, tmp_path):
    import shutil

    from src.infer_310 import input_dir_of, label_path_of

    val = tmp_path / "alone" / "val"  # no train folder beside it: only the description names the classes
    shutil.copytree(data / "val", val)
    out = tmp_path / "pre"
    ok(run_script(["preprocess.py", "--dataset_path", val, "--model_path", exported["MINDIR"],
                   "--pre_result_path", out, "--device_target", "CPU"]))
    bins = sorted(Path(input_dir_of(str(out))).glob("*.bin"))
    assert len(bins) == 6 and all(b.stat().st_size == 3 * SIZE * SIZE * 4 for b in bins)
    labels = json.loads(Path(label_path_of(str(out))).read_text())
    assert {name.split("_")[0]: label for name, label in labels.items()} == {"cat": 0, "dog": 1, "fox": 2}


def test_num_classes_of_an_arch_file_is_the_default(small_arch):
    from src import create_model
    from src.model_utils.cli import arch_file_classes
    from src.model_utils.config import get_config

    assert create_model(str(small_arch)).output.weight.shape[0] == 7
    config = get_config(["--arch", str(small_arch)])
    arch_file_classes(config)
    assert config.num_classes == 7
    config = get_config(["--arch", str(small_arch), "--num_classes", "4"])
    arch_file_classes(config)
    assert config.num_classes == 4


def test_registry_is_defined_once():
    import src
    import src.proxylessnas_mobile as models

    assert src.create_model is models.create_model and src.list_models is models.list_models
    assert src.list_models() == ["proxylessnas_cpu", "proxylessnas_gpu", "proxylessnas_mobile",
                                 "proxylessnas_mobile_14"]


@pytest.fixture(scope="module")
def modelzoo_ckpt(tmp_path_factory):
    """A checkpoint without a description, saved from a ModelZoo-style training cell."""
    from modelzoo_checkpoint import save_modelzoo_checkpoint

    return save_modelzoo_checkpoint(tmp_path_factory.mktemp("zoo"), "momentum", num_classes=3, image_size=SIZE)


def test_checkpoint_without_description_works_as_before(modelzoo_ckpt, data, tmp_path):
    from src.description import read_description

    assert read_description(modelzoo_ckpt) is None
    # the options are needed, as always for such files; the defaults are the config's, not a description's
    line = error_line(run_script(["eval.py", "--checkpoint_path", modelzoo_ckpt, "--dataset_path", data,
                                  "--device_target", "CPU"]))
    assert line == "error: the validation set has 3 classes but --num_classes is 1000: pass --num_classes 3"
    out = tmp_path / "eval.json"
    proc = ok(run_script(["eval.py", "--checkpoint_path", modelzoo_ckpt, "--dataset_path", data, "--device_target",
                          "CPU", "--num_classes", "3", "--image_size", str(SIZE), "--eval_output", out]))
    assert "description" not in proc.stdout
    assert json.loads(out.read_text())["results"][str(modelzoo_ckpt)]["count"] == 6
    proc = ok(run_script(["predict.py", "--model", modelzoo_ckpt, data / "val" / "cat" / "cat_0.jpg"]))
    assert sorted(predict_names(proc)) == ["class 0", "class 1", "class 2"]


def test_export_without_description_removes_a_stale_sidecar(modelzoo_ckpt, tmp_path):
    from src.description import read_description, sidecar_path

    mindir = tmp_path / "model.mindir"
    sidecar_path(mindir).write_text("{}")  # left by an earlier export of another checkpoint to this name
    ok(run_script(["export.py", "--checkpoint", modelzoo_ckpt, "--device_target", "CPU", "--num_classes", "3",
                   "--image_size", str(SIZE), "--file_name", mindir]))
    assert mindir.is_file() and not sidecar_path(mindir).exists() and read_description(mindir) is None
