"""Checkpoints: strict loading with named errors, atomic writes that survive kill -9."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import mindspore as ms

from conftest import ROOT
from src import create_model
from src.checkpoint import load_weights, read_checkpoint, save_checkpoint_atomic
from src.errors import UserError


@pytest.fixture(scope="module")
def mobile_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ck") / "mobile.ckpt"
    ms.save_checkpoint(create_model("proxylessnas_mobile", num_classes=10), str(path))
    return path


def test_missing_file():
    with pytest.raises(UserError, match="checkpoint not found: /no/such.ckpt"):
        load_weights(create_model("proxylessnas_mobile", num_classes=10), "/no/such.ckpt")


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_truncated_or_corrupt_file(mobile_ckpt, tmp_path, damage):
    bad = tmp_path / f"{damage}.ckpt"
    data = mobile_ckpt.read_bytes()
    bad.write_bytes({"truncate": data[: len(data) // 3], "garbage": os.urandom(5000), "empty": b""}[damage])
    with pytest.raises(UserError, match=f"checkpoint {bad} (cannot be read|is empty)") as err:
        read_checkpoint(str(bad))
    assert "\n" not in str(err.value)


def test_checkpoint_of_another_variant(mobile_ckpt):
    with pytest.raises(UserError, match=r"does not fit this network \(\d+ parameters missing.*; \d+ unexpected.*another --arch"):
        load_weights(create_model("proxylessnas_gpu", num_classes=10), str(mobile_ckpt))


def test_checkpoint_with_other_num_classes(mobile_ckpt):
    net = create_model("proxylessnas_mobile", num_classes=5)
    with pytest.raises(UserError, match="has a classifier for 10 classes but the network has 5: pass --num_classes 10"):
        load_weights(net, str(mobile_ckpt))
    before = net.output.weight.asnumpy().copy()
    load_weights(net, str(mobile_ckpt), allow_new_classifier=True)  # fine-tuning keeps the fresh classifier
    np.testing.assert_array_equal(net.output.weight.asnumpy(), before)


def test_wrapped_names_load(tmp_path):
    # checkpoints saved from a training wrapper carry prefixes; the weights still load
    net = create_model("proxylessnas_mobile", num_classes=3)
    path = tmp_path / "wrapped.ckpt"
    ms.save_checkpoint([{"name": "network._backbone." + p.name, "data": p} for p in net.get_parameters()], str(path))
    other = create_model("proxylessnas_mobile", num_classes=3)
    load_weights(other, str(path))
    np.testing.assert_array_equal(other.output.weight.asnumpy(), net.output.weight.asnumpy())


def test_atomic_save_replaces_whole_files_only(tmp_path):
    path = tmp_path / "a.ckpt"
    save_checkpoint_atomic([{"name": "w", "data": ms.Tensor(np.ones(3, np.float32))}], str(path))
    save_checkpoint_atomic([{"name": "w", "data": ms.Tensor(np.full(3, 2, np.float32))}], str(path))
    assert read_checkpoint(str(path))["w"].asnumpy().tolist() == [2, 2, 2]
    assert sorted(os.listdir(tmp_path)) == ["a.ckpt"]  # no temporary files left


SAVER = """
import os, sys
os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")
sys.path.insert(0, {root!r})
import numpy as np, mindspore as ms
from src.checkpoint import save_checkpoint_atomic
path = sys.argv[1]
big = [{{"name": f"w{{i}}", "data": ms.Tensor(np.full((512, 1024), i, np.float32))}} for i in range(24)]
round_ = 0
while True:
    round_ += 1
    save_checkpoint_atomic(big + [{{"name": "round", "data": ms.Tensor(np.array(round_, np.int32))}}], path)
    print(round_, flush=True)
"""


def test_kill_during_save_leaves_previous_checkpoint_intact(tmp_path):
    path = tmp_path / "model.ckpt"
    script = tmp_path / "saver.py"
    script.write_text(SAVER.format(root=str(ROOT)))
    rng = np.random.default_rng(0)
    for attempt in range(4):
        proc = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True)
        proc.stdout.readline()  # one complete checkpoint exists
        time.sleep(float(rng.uniform(0.05, 0.6)))  # then kill somewhere inside a later save
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        entries = read_checkpoint(str(path))
        assert len(entries) == 25 and entries["w23"].asnumpy()[0, 0] == 23, attempt
        assert int(entries["round"].asnumpy()) >= 1


# ---------------------------------------------------------------------------
# ModelZoo checkpoints: saved from a real training cell, optimizer state and all (tests/modelzoo_checkpoint.py)
# ---------------------------------------------------------------------------
from modelzoo_checkpoint import KINDS, save_modelzoo_checkpoint  # noqa: E402

TRAINING_STATE = {"momentum": ["momentum", "learning_rate", "global_step", "moments."],
                  "sgd": ["momentum", "learning_rate", "global_step", "accum.", "stat."],
                  "loss_scale": ["momentum", "learning_rate", "global_step", "moments.", "scale_sense"],
                  "model_train": ["momentum", "learning_rate", "global_step", "accum.", "stat."]}


@pytest.fixture(scope="module")
def modelzoo_ckpts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("modelzoo")
    return {kind: save_modelzoo_checkpoint(folder / kind, kind, seed=3) for kind in KINDS}


@pytest.mark.parametrize("kind", KINDS)
def test_modelzoo_training_cell_checkpoint_loads(modelzoo_ckpts, kind):
    entries = read_checkpoint(str(modelzoo_ckpts[kind]))
    for key in TRAINING_STATE[kind]:  # the fixture really holds what a training cell saves
        assert any(name == key or (key.endswith(".") and name.startswith(key)) for name in entries), key
    net = create_model("proxylessnas_mobile", num_classes=3)
    load_weights(net, str(modelzoo_ckpts[kind]))
    for p in net.get_parameters():  # every weight and BN statistic comes from the file (the step changed them)
        np.testing.assert_array_equal(p.asnumpy(), entries[p.name].asnumpy())


def test_modelzoo_checkpoint_with_a_foreign_entry_is_refused_naming_it(modelzoo_ckpts, tmp_path):
    entries = read_checkpoint(str(modelzoo_ckpts["momentum"]))
    path = tmp_path / "extra.ckpt"
    ms.save_checkpoint([{"name": k, "data": v} for k, v in entries.items()]
                       + [{"name": "head2.weight", "data": ms.Tensor(np.zeros((3, 4), np.float32))}], str(path))
    with pytest.raises(UserError, match=r"0 parameters missing; 1 unexpected: head2.weight\)"):
        load_weights(create_model("proxylessnas_mobile", num_classes=3), str(path))


@pytest.fixture(scope="module")
def three_classes(tmp_path_factory):
    from conftest import make_image_folder
    return make_image_folder(tmp_path_factory.mktemp("three"), classes=("a", "b", "c"), n_train=2, n_val=2)


def test_eval_py_reads_a_model_train_checkpoint(modelzoo_ckpts, three_classes, tmp_path):
    from conftest import run_script
    out = tmp_path / "eval.json"
    proc = run_script(["eval.py", "--device_target", "CPU", "--dataset_path", three_classes, "--num_classes", "3",
                       "--image_size", "32", "--checkpoint_path", modelzoo_ckpts["model_train"],
                       "--eval_output", out, "--work_nums", "1"])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "top-1" in proc.stdout and json.loads(out.read_text())["results"][str(modelzoo_ckpts["model_train"])]["count"] == 6


def test_export_predict_and_pretrained_read_a_modelzoo_checkpoint(modelzoo_ckpts, three_classes, tmp_path):
    from conftest import run_script
    ckpt = modelzoo_ckpts["sgd"]
    proc = run_script(["export.py", "--device_target", "CPU", "--checkpoint", ckpt, "--num_classes", "3",
                       "--image_size", "32", "--file_name", tmp_path / "zoo", "--file_format", "MINDIR"])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (tmp_path / "zoo.mindir").stat().st_size > 100_000
    proc = run_script(["predict.py", three_classes / "val" / "a", "--model", ckpt, "--image_size", "32",
                       "--topk", "2", "--json"])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert len(json.loads(proc.stdout)) == 2
    proc = run_script(["train.py", "--device_target", "CPU", "--dataset_path", three_classes, "--num_classes", "3",
                       "--image_size", "32", "--train_batch_size", "2", "--epoch_size", "1", "--warmup_epochs", "0",
                       "--work_nums", "1", "--eval_interval", "0", "--pretrained", ckpt,
                       "--save_ckpt_path", tmp_path / "runs", "--run_name", "ft"])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert f"weights from {ckpt}" in proc.stdout
