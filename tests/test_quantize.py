"""src/quantize.py via export.py --quantize int8: the INT8 ONNX model of a network trained on real data
(scikit-learn's digits, as tools/demo.py) keeps top-1 within 1 point of FP32 on the held-out images, runs
in predict.py and the CPU 310 runner, and bad input gets one clear line."""
import json
import re
import sys

import numpy as np
import pytest

from conftest import ROOT, run_script

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

sys.path.insert(0, str(ROOT))
from tools.demo import CONFIG, build_digits_folder  # noqa: E402


def export_error(*args):
    """export.py's exit code and its error lines for ``args``."""
    proc = run_script(["export.py", *map(str, args)], timeout=300)
    return proc.returncode, [line for line in proc.stderr.splitlines() if line.startswith("error:")]


def test_bad_quantize_input_is_one_clear_line(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    from PIL import Image
    Image.new("RGB", (8, 8)).save(tmp_path / "one.png")
    ckpt = tmp_path / "missing.ckpt"  # the quantize options are checked before anything is loaded
    cases = [
        (("--file_format", "ONNX", "--quantize", "int8"),
         "error: --quantize int8 needs calibration images: pass --calibration_path DIR"),
        (("--file_format", "ONNX", "--quantize", "int8", "--calibration_path", empty),
         f"error: --calibration_path {empty} holds no image files"),
        (("--file_format", "ONNX", "--quantize", "int8", "--calibration_path", tmp_path / "nowhere"),
         f"error: --calibration_path {tmp_path / 'nowhere'} is not a folder of images"),
        (("--file_format", "MINDIR", "--quantize", "int8", "--calibration_path", empty),
         "error: --quantize int8 writes an ONNX Runtime model, not MINDIR: pass --file_format ONNX"),
        (("--file_format", "ONNX", "--quantize", "int8", "--calibration_path", tmp_path,
          "--eval_dataset_path", tmp_path / "nowhere"),
         f"error: --eval_dataset_path {tmp_path / 'nowhere'} is not a folder of class sub-folders"),
        (("--file_format", "ONNX", "--quantize", "int4"), "error: "),
    ]
    for args, message in cases:
        code, errors = export_error("--checkpoint", ckpt, "--file_name", tmp_path / "m", *args)
        assert code == 2 and len(errors) == 1 and errors[0].startswith(message), (args, errors)
    assert "quantize" in export_error("--checkpoint", ckpt, "--quantize", "int4")[1][0]
    assert not list(tmp_path.glob("m*"))  # nothing written


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    """ProxylessNAS-Mobile trained briefly on the digits (the demo's config, 4 epochs), its last checkpoint."""
    out = tmp_path_factory.mktemp("digits")
    data = out / "digits"
    build_digits_folder(data, 32)
    proc = run_script(["train.py", "--config_path", CONFIG, "--image_size", "32", "--dataset_path", data,
                       "--save_ckpt_path", out, "--run_name", "run", "--epoch_size", "4", "--eval_interval", "0"],
                      timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    final = sorted((out / "run" / "checkpoints").glob("proxylessnas_mobile-*_*.ckpt"),
                   key=lambda p: int(p.stem.rsplit("-", 1)[1].split("_")[0]))[-1]
    return out, data, final


@pytest.mark.slow
def test_int8_export_keeps_top1_within_one_point_and_runs_everywhere(digits_model, tmp_path):
    out, data, ckpt = digits_model
    proc = run_script(["export.py", "--config_path", CONFIG, "--image_size", "32", "--checkpoint", ckpt,
                       "--file_format", "ONNX", "--file_name", tmp_path / "digits", "--quantize", "int8",
                       "--calibration_path", data / "train", "--calibration_images", "200",
                       "--eval_dataset_path", data], timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = proc.stdout.strip().splitlines()[-1]
    int8 = tmp_path / "digits.int8.onnx"
    assert f"INT8 {int8} (QDQ, per-channel weights, calibrated on 200 images)" in line
    found = re.search(r"top-1 on (\d+) labelled images: FP32 ([\d.]+)%, INT8 ([\d.]+)%", line)
    assert found, line
    count, fp32, q8 = int(found[1]), float(found[2]), float(found[3])
    assert count == 359  # every held-out digit
    assert fp32 >= 50.0, "the briefly trained network should have learnt something"
    assert abs(fp32 - q8) <= 1.0, line
    # the file really is integer: int8 weights in QDQ form, and smaller than the float32 file
    import onnx
    model = onnx.load(str(int8))
    assert any(init.data_type == onnx.TensorProto.INT8 for init in model.graph.initializer)
    assert int8.stat().st_size < 0.5 * (tmp_path / "digits.onnx").stat().st_size

    # predict.py takes the INT8 file as any ONNX model
    sample = sorted((data / "val" / "3").glob("*.png"))[0]
    pred = run_script(["predict.py", "--model", int8, "--image_size", "32", "--crop_pct", "1.0",
                       "--class_names_from", data / "train", "--json", sample])
    assert pred.returncode == 0, pred.stderr[-2000:]
    assert json.loads(pred.stdout)[0]["top"][0]["name"] in {str(d) for d in range(10)}

    # the CPU 310 runner (INFER_BACKEND=python) runs it on preprocessed .bin inputs
    from src.dataset import preprocess_image
    bins = tmp_path / "bins"
    bins.mkdir()
    x = preprocess_image(str(sample), 32, 1.0)
    x.astype(np.float32).tofile(bins / "img0.bin")
    runner = run_script(["-m", "src.infer_runner", "--mindir_path", int8, "--input_path", bins,
                         "--result_path", tmp_path / "res", "--time_path", tmp_path / "time"])
    assert runner.returncode == 0, runner.stderr[-2000:]
    logits = np.fromfile(tmp_path / "res" / "img0_0.bin", dtype=np.float32)
    import onnxruntime as ort
    session = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"])
    expected = session.run(None, {session.get_inputs()[0].name: x[None].astype(np.float32)})[0].ravel()
    np.testing.assert_allclose(logits, expected, rtol=1e-6, atol=1e-6)

    # the same through the launch script: INFER_BACKEND=python bash scripts/run_infer_310.sh MODEL.int8.onnx ...
    import subprocess
    work = tmp_path / "work310"
    work.mkdir()
    # no IMAGE_SIZE: the script reads 32 from the ONNX file's input
    env = dict(__import__("os").environ, INFER_BACKEND="python", PYTHON=sys.executable)
    env.pop("IMAGE_SIZE", None)
    script = subprocess.run(["bash", str(ROOT / "scripts" / "run_infer_310.sh"), str(int8), "imagenet2012",
                             str(data / "val"), "y", "0"], cwd=work, env=env, capture_output=True, text=True,
                            timeout=900)
    assert script.returncode == 0, script.stdout[-2000:] + script.stderr[-2000:]
    assert "image size: 32" in script.stdout
    top1_line = (work / "acc.log").read_text().splitlines()[0]
    assert top1_line.startswith("Top1 acc:") and float(top1_line.split()[-1]) >= 0.5, top1_line
    assert len(list((work / "result_Files").iterdir())) == 359
