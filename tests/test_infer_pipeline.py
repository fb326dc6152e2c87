"""Ascend 310 pipeline: preprocess.py -> inference (Python backend) -> postprocess.py, and the C++ compile check."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT

SIZE = 32
CLASSES = ["cat", "dog", "fox"]
SCRIPT = ROOT / "scripts" / "run_infer_310.sh"


def make_image_folder(root: Path, per_class: int = 3) -> Path:
    """val/<class>/<image> with images of different sizes, colours and formats."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(CLASSES):
        folder = root / "val" / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            h, w = 36 + 8 * i, 48 + 4 * c
            pixels = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
            pixels[..., c] = 255 - 40 * i  # a class-dependent colour cast
            ext = ".png" if i == 2 else ".jpg"
            Image.fromarray(pixels).save(folder / f"{name}_{i:04d}{ext}")
    return root


def write_results(folder: Path, logits: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, values in logits.items():
        np.asarray(values, dtype=np.float32).tofile(folder / f"{name}_0.bin")


# ---------------------------------------------------------------------------
# postprocess on hand-made result files (no MindSpore)
# ---------------------------------------------------------------------------
HAND_LOGITS = {  # 6 classes
    "a": [9, 1, 0, 0, 0, 0],   # label 0: top-1 right
    "b": [0, 9, 8, 7, 6, 5],   # label 5: 5th best, top-5 right only
    "c": [0, 1, 2, 3, 4, 9],   # label 0: lowest, both wrong
    "d": [1, 2, 9, 3, 0, 0],   # label 2: top-1 right
}
HAND_LABELS = {"a": 0, "b": 5, "c": 0, "d": 2}


def test_postprocess_numbers_on_hand_made_results(tmp_path):
    write_results(tmp_path / "result_Files", HAND_LOGITS)
    pre = tmp_path / "preprocess_Result"
    pre.mkdir()
    (pre / "imagenet_label.json").write_text(json.dumps(HAND_LABELS))
    run = subprocess.run([sys.executable, str(ROOT / "postprocess.py"), "--device_target", "CPU"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    expected = "Top1 acc:  0.5\nTop5 acc:  0.75\n"
    assert run.stdout.endswith(expected)
    assert (tmp_path / "acc.log").read_text() == expected


def test_postprocess_ties_and_few_classes():
    from src.infer_310 import accuracy

    # 3 classes: top-5 means all of them; a tie resolves to the lower index, as argmax does
    acc = accuracy({"x": np.array([1, 1, 0], np.float32), "y": np.array([0, 2, 2], np.float32)}, {"x": 0, "y": 2})
    assert (acc.top1, acc.top5, acc.count) == (0.5, 1.0, 2)
    assert acc.lines() == ["Top1 acc:  0.5", "Top5 acc:  1.0"]


def test_postprocess_errors_name_the_problem(tmp_path):
    from src.errors import UserError
    from src.infer_310 import postprocess

    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps(HAND_LABELS))
    results = tmp_path / "result_Files"
    with pytest.raises(UserError, match=f"result folder not found: {results}"):
        postprocess(str(results), str(labels))
    results.mkdir()
    (results / "notes.txt").write_text("x")
    with pytest.raises(UserError, match=f"result folder {results} is empty"):
        postprocess(str(results), str(labels))
    write_results(results, {k: v for k, v in HAND_LOGITS.items() if k != "c"})
    with pytest.raises(UserError, match=r"1 labelled image\(s\) have no result .*\(c\)"):
        postprocess(str(results), str(labels))
    write_results(results, {**HAND_LOGITS, "stray": [0] * 6})
    with pytest.raises(UserError, match=r"1 result\(s\) in .* have no label \(stray\)"):
        postprocess(str(results), str(labels))
    (results / "stray_0.bin").unlink()
    write_results(results, {"a": [1, 2, 3]})
    with pytest.raises(UserError, match="different numbers of logits"):
        postprocess(str(results), str(labels))
    with pytest.raises(UserError, match="label file not found"):
        postprocess(str(results), str(tmp_path / "none.json"))


# ---------------------------------------------------------------------------
# preprocess
# ---------------------------------------------------------------------------
def test_preprocess_writes_the_eval_transform_and_labels(tmp_path):
    pytest.importorskip("mindspore")
    from src.dataset import preprocess_image, resolve_val_split as scan_val
    from src.infer_310 import preprocess_folder

    make_image_folder(tmp_path / "data", per_class=2)
    images = scan_val(str(tmp_path / "data"))  # a dataset root: its val/ is used
    out = preprocess_folder(images, str(tmp_path / "pre"), image_size=SIZE)
    labels = json.loads((out / "imagenet_label.json").read_text())
    assert labels == {f"{c}_{i:04d}": k for k, c in enumerate(CLASSES) for i in range(2)}
    for path, _ in images.samples:
        data = np.fromfile(out / "img_data" / f"{Path(path).stem}.bin", dtype=np.float32)
        np.testing.assert_array_equal(data, preprocess_image(path, SIZE).ravel())


def test_preprocess_flat_layout_with_synset_labels_and_repeated_names(tmp_path):
    pytest.importorskip("mindspore")
    from src.dataset import imagenet_synsets, resolve_val_split as scan_val
    from src.infer_310 import sample_names

    val = tmp_path / "val"
    val.mkdir()
    for name in ("ILSVRC2012_val_00000002.JPEG", "ILSVRC2012_val_00000001.JPEG"):
        Image.new("RGB", (40, 40), (10, 20, 30)).save(val / name, format="JPEG")
    synsets = imagenet_synsets()
    labels = tmp_path / "labels.txt"
    labels.write_text(f"{synsets[281]}\n7\n")  # sorted file order: ..01 is a tabby cat, ..02 class 7
    images = scan_val(str(val), "flat", str(labels))
    assert [(Path(p).name, y) for p, y in images.samples] == [("ILSVRC2012_val_00000001.JPEG", 281),
                                                              ("ILSVRC2012_val_00000002.JPEG", 7)]
    folder = make_image_folder(tmp_path / "same", per_class=1)
    for c in CLASSES:  # the same file name in every class
        (folder / "val" / c / f"{c}_0000.jpg").rename(folder / "val" / c / "img.jpg")
    assert sample_names(scan_val(str(folder / "val"))) == [f"{c}_img" for c in CLASSES]


# ---------------------------------------------------------------------------
# run_infer_310.sh
# ---------------------------------------------------------------------------
def _run_script(args, cwd, **env):
    full_env = {**os.environ, "PYTHON": sys.executable, **{k: str(v) for k, v in env.items()}}
    return subprocess.run(["bash", str(SCRIPT), *map(str, args)], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=600)


def test_script_usage_and_argument_errors(tmp_path):
    run = _run_script(["only", "two"], tmp_path)
    assert run.returncode == 2 and run.stderr.startswith("usage: bash scripts/run_infer_310.sh MINDIR_PATH")
    model = tmp_path / "m.mindir"
    model.write_bytes(b"x")
    run = _run_script([model, "imagenet2012", tmp_path, "maybe"], tmp_path)
    assert run.returncode == 2 and "NEED_PREPROCESS must be y or n, got 'maybe'" in run.stderr
    run = _run_script([model, "cifar10", tmp_path, "y"], tmp_path)
    assert run.returncode == 2 and "DATASET_NAME must be imagenet2012" in run.stderr
    run = _run_script([tmp_path / "none.mindir", "imagenet2012", tmp_path, "y"], tmp_path)
    assert run.returncode == 2 and "none.mindir not found" in run.stderr
    run = _run_script([model, "imagenet2012", tmp_path, "y", "0"], tmp_path, ASCEND_HOME=tmp_path / "no_ascend")
    assert run.returncode == 2 and "INFER_BACKEND=python" in run.stderr
    run = _run_script([model, "imagenet2012", tmp_path, "n"], tmp_path, INFER_BACKEND="python")
    assert run.returncode == 2 and "run once with y" in run.stderr
    onnx_model = tmp_path / "m_int8.onnx"
    onnx_model.write_bytes(b"x")
    run = _run_script([onnx_model, "imagenet2012", tmp_path, "y"], tmp_path)
    assert run.returncode == 2 and run.stderr.strip() == (
        f"error: the Ascend 310 app runs MINDIR files, not ONNX ({onnx_model}): export with --file_format MINDIR, "
        "or run the ONNX file with INFER_BACKEND=python (ONNX Runtime on CPU)")


@pytest.mark.slow
def test_full_pipeline_python_backend_reproduces_the_accuracy(tmp_path):
    ms = pytest.importorskip("mindspore")
    from src import create_model
    from src.checkpoint import params_list, save_checkpoint_atomic
    from src.dataset import preprocess_image, resolve_val_split as scan_val
    from src.export import export_network

    from src.model_utils.device import set_device
    set_device("CPU")
    data = make_image_folder(tmp_path / "data")
    # a network whose predictions differ between images: unit-scale logits from the pooled features
    net = create_model("proxylessnas_mobile", num_classes=len(CLASSES))
    net.set_train(False)
    images = scan_val(str(data / "val"))
    batch = np.stack([preprocess_image(p, SIZE) for p, _ in images.samples])
    features = net.forward_features(ms.Tensor(batch)).asnumpy()
    centred = features - features.mean(axis=0)
    weight = np.random.default_rng(3).standard_normal((len(CLASSES), features.shape[1])) / max(centred.std(), 1e-30)
    net.output.weight.set_data(ms.Tensor(weight.astype(np.float32)))
    net.output.bias.set_data(ms.Tensor((-weight @ features.mean(axis=0)).astype(np.float32)))
    ckpt = save_checkpoint_atomic(params_list(net), str(tmp_path / "net.ckpt"))
    mindir = export_network(net, str(tmp_path / "net"), "MINDIR", image_size=SIZE).path

    # the accuracy computed independently: network forward on each image's evaluation transform
    logits = net(ms.Tensor(batch)).asnumpy()
    labels = np.array([y for _, y in images.samples])
    order = np.argsort(-logits, axis=1, kind="stable")
    top1 = float(np.mean(order[:, 0] == labels))
    top5 = float(np.mean(np.any(order[:, :5] == labels[:, None], axis=1)))
    assert len(set(order[:, 0])) > 1, "the test network should not predict one class for every image"

    work = tmp_path / "work"
    work.mkdir()
    run = _run_script([mindir, "imagenet2012", data / "val", "y", "0"], work, INFER_BACKEND="python",
                      IMAGE_SIZE=SIZE)
    assert run.returncode == 0, run.stdout + run.stderr
    acc_lines = [f"Top1 acc:  {top1}", f"Top5 acc:  {top5}"]
    assert (work / "acc.log").read_text().splitlines() == acc_lines
    assert run.stdout.splitlines()[-2:] == acc_lines
    results = sorted(p.name for p in (work / "result_Files").iterdir())
    assert results == sorted(f"{Path(p).stem}_0.bin" for p, _ in images.samples)
    assert "NN inference cost average time:" in (work / "time_Result" / "test_perform_static.txt").read_text()

    # NEED_PREPROCESS=n reuses the inputs and gives the same numbers
    shutil.rmtree(work / "result_Files")
    run = _run_script([mindir, "imagenet2012", data / "val", "n"], work, INFER_BACKEND="python", IMAGE_SIZE=SIZE)
    assert run.returncode == 0, run.stdout + run.stderr
    assert (work / "acc.log").read_text().splitlines() == acc_lines

    # eval.py on the same images and checkpoint, where it exists
    if (ROOT / "eval.py").is_file():
        out = tmp_path / "eval.json"
        run = subprocess.run([sys.executable, str(ROOT / "eval.py"), "--device_target", "CPU", "--dataset_path",
                              str(data), "--checkpoint_path", ckpt, "--num_classes", str(len(CLASSES)),
                              "--image_size", str(SIZE), "--eval_output", str(out), "--work_nums", "1",
                              "--val_batch_size", "4"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stdout + run.stderr
        result = json.loads(out.read_text())["results"][ckpt]
        assert (result["top1"], result["top5"]) == pytest.approx((top1, top5))


def test_cpp_app_compiles_against_the_mindspore_headers():
    run = subprocess.run(["bash", str(ROOT / "ascend310_infer" / "check_syntax.sh")], capture_output=True, text=True,
                         timeout=900, env={**os.environ, "PYTHON": sys.executable})
    if run.returncode == 77:
        pytest.skip(run.stdout.strip().splitlines()[-1])
    assert run.returncode == 0, run.stdout + run.stderr
    assert "syntax check passed" in run.stdout


def test_partial_validation_set_is_labelled_by_the_training_classes(tmp_path):
    pytest.importorskip("mindspore")
    from src.errors import UserError
    from src.dataset import resolve_val_split as scan_val
    from src.infer_310 import preprocess_from_config
    from src.model_utils.config import get_config

    data = make_image_folder(tmp_path / "data", per_class=1)
    shutil.copytree(data / "val", data / "train")  # trained on cat, dog, fox
    shutil.rmtree(data / "val" / "cat")  # the validation set lacks the first class
    # preprocess.py's path: labels are training-class indices (dog 1, fox 2), as eval.py numbers them
    cfg = get_config(["--dataset_path", str(data), "--num_classes", "3", "--image_size", str(SIZE),
                      "--pre_result_path", str(tmp_path / "pre")])
    labels = json.loads((preprocess_from_config(cfg) / "imagenet_label.json").read_text())
    assert labels == {"dog_0000": 1, "fox_0000": 2}
    # the validation folder alone plus a class list gives the same
    (tmp_path / "classes.txt").write_text("cat\ndog\nfox\n")
    images = scan_val(str(data / "val"), num_classes=3, train_dir="absent", class_list=str(tmp_path / "classes.txt"))
    assert [(Path(p).name, y) for p, y in images.samples] == [("dog_0000.jpg", 1), ("fox_0000.jpg", 2)]
    # nothing names the training classes and the folders do not add up to num_classes: refused, not guessed
    with pytest.raises(UserError, match=r"has 2 class folders but --num_classes is 3, and nothing names the "
                                        r"training classes: put the train folder beside it or pass --class_list"):
        scan_val(str(data / "val"), num_classes=3, train_dir="absent")
    (data / "val" / "wolf").mkdir()
    shutil.copy(data / "val" / "dog" / "dog_0000.jpg", data / "val" / "wolf" / "wolf_0000.jpg")
    with pytest.raises(UserError, match=r"class folders of .*val are not training classes: wolf"):
        scan_val(str(data), num_classes=3)
