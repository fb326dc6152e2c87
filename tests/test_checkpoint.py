"""Checkpoints: strict loading with named errors, atomic writes that survive kill -9."""
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
