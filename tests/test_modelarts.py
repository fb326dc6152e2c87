"""ModelArts: train.py, eval.py and export.py with --enable_modelarts true, against a stand-in ``moxing``.

The stand-in is a real importable package put on the subprocess' PYTHONPATH whose ``mox.file.copy_parallel``
copies local folders, so "OBS" here is a local folder; everything else is the code that runs on ModelArts.
"""
import json
from pathlib import Path

import pytest

from conftest import make_image_folder, run_script

MOXING = {
    "__init__.py": "from . import file  # noqa: F401\n",
    "file.py": ("import json, os, shutil\n"
                "def copy_parallel(src_url, dst_url):\n"
                "    shutil.copytree(src_url, dst_url, dirs_exist_ok=True)\n"
                "    with open(os.environ['MOX_CALLS'], 'a') as f:\n"
                "        f.write(json.dumps([src_url, dst_url]) + '\\n')\n"),
}
TINY = ["--device_target", "CPU", "--num_classes", "2", "--image_size", "32", "--work_nums", "1",
        "--enable_modelarts", "true"]


@pytest.fixture(scope="module")
def modelarts(tmp_path_factory):
    root = tmp_path_factory.mktemp("modelarts")
    for name, text in MOXING.items():
        (root / "site" / "moxing").mkdir(parents=True, exist_ok=True)
        (root / "site" / "moxing" / name).write_text(text)
    make_image_folder(root / "obs" / "data", n_train=4, n_val=2)
    env = {"PYTHONPATH": str(root / "site"), "MOX_CALLS": str(root / "mox_calls.jsonl"), "JOB_ID": root.name}
    return root, env


def calls(root: Path):
    return [json.loads(line) for line in (root / "mox_calls.jsonl").read_text().splitlines()]


def test_train_eval_export_copy_in_and_out(modelarts):
    root, env = modelarts
    obs, cache = root / "obs", root / "cache"
    train = run_script(["train.py", *TINY, "--data_url", obs / "data", "--train_url", obs / "train_out",
                        "--data_path", cache / "data", "--output_path", cache / "train", "--train_batch_size", "2",
                        "--epoch_size", "1", "--warmup_epochs", "0", "--run_name", "job"], env=env)
    assert train.returncode == 0, train.stdout[-3000:] + train.stderr[-3000:]
    # the data came in through moxing, the run was written under output_path and went out to train_url
    assert calls(root) == [[str(obs / "data"), str(cache / "data")], [str(cache / "train"), str(obs / "train_out")]]
    assert sorted((cache / "data" / "train").iterdir()) == [cache / "data" / "train" / "cat",
                                                           cache / "data" / "train" / "dog"]
    ckpt = obs / "train_out" / "output" / "job" / "checkpoints" / "proxylessnas_mobile-1_4.ckpt"
    assert ckpt.is_file() and (obs / "train_out" / "output" / "job" / "train.log").is_file()
    assert "data shard: rank 0 of 1: 8 of 8 training images" in train.stdout
    assert str(cache / "data") in (obs / "train_out" / "output" / "job" / "config.yaml").read_text()

    evaluation = run_script(["eval.py", *TINY, "--data_url", obs / "data", "--train_url", obs / "eval_out",
                             "--data_path", cache / "data_eval", "--output_path", cache / "eval",
                             "--checkpoint_url", ckpt.parent, "--load_path", cache / "ckpt",
                             "--checkpoint_path", ckpt.name], env=env)
    assert evaluation.returncode == 0, evaluation.stdout[-3000:] + evaluation.stderr[-3000:]
    result = json.loads((obs / "eval_out" / "eval_results.json").read_text())
    assert result["best"] == str(cache / "ckpt" / ckpt.name) and result["results"][result["best"]]["count"] == 4

    export = run_script(["export.py", *TINY, "--train_url", obs / "export_out", "--output_path", cache / "export",
                         "--checkpoint_url", ckpt.parent, "--load_path", cache / "ckpt_export",
                         "--checkpoint", ckpt.name, "--file_name", "tiny"], env=env)
    assert export.returncode == 0, export.stdout[-3000:] + export.stderr[-3000:]
    assert (obs / "export_out" / "tiny.mindir").stat().st_size > 100_000
    assert calls(root)[-2:] == [[str(ckpt.parent), str(cache / "ckpt_export")],
                                [str(cache / "export"), str(obs / "export_out")]]


def test_localise_paths_rules():
    from easydict import EasyDict
    from src.model_utils.moxing_adapter import localise_paths
    cfg = EasyDict(data_url="obs://d", checkpoint_url="obs://c", train_url="obs://t", data_path="/cache/data",
                   load_path="/cache/ckpt", output_path="/cache/train", dataset_path="", pretrained="a.ckpt",
                   resume="", save_ckpt_path="./output")
    localise_paths(cfg, "train")
    assert (cfg.dataset_path, cfg.pretrained, cfg.resume, cfg.save_ckpt_path) == (
        "/cache/data", "/cache/ckpt/a.ckpt", "", "/cache/train/./output")
    cfg = EasyDict(data_url="obs://d", checkpoint_url="", train_url="", data_path="/cache/data", load_path="/l",
                   output_path="/o", dataset_path="/abs/imagenet", checkpoint_path="/abs/x.ckpt", checkpoint="",
                   eval_output="")
    localise_paths(cfg, "eval")
    assert (cfg.dataset_path, cfg.checkpoint_path, cfg.eval_output) == ("/abs/imagenet", "/abs/x.ckpt",
                                                                        "/o/eval_results.json")


def test_data_is_copied_once_per_server(monkeypatch, tmp_path):
    import sys
    import types
    from src.model_utils import moxing_adapter
    copies = []
    mox = types.ModuleType("moxing")
    mox.file = types.SimpleNamespace(copy_parallel=lambda src, dst: copies.append((src, dst)))
    monkeypatch.setitem(sys.modules, "moxing", mox)
    monkeypatch.setenv("JOB_ID", f"once-{tmp_path.name}")
    monkeypatch.setenv("RANK_SIZE", "8")
    monkeypatch.delenv("MS_WORKER_NUM", raising=False)
    monkeypatch.setenv("DEVICE_ID", "3")
    moxing_adapter._lock_file("obs://d", str(tmp_path / "d")).unlink(missing_ok=True)
    waiter_done = []

    import threading
    waiter = threading.Thread(target=lambda: (moxing_adapter.sync_data("obs://d", str(tmp_path / "d")),
                                              waiter_done.append(True)))
    waiter.start()  # device 3 waits for the server's first device
    waiter.join(timeout=1.5)
    assert waiter.is_alive() and copies == []
    monkeypatch.setenv("DEVICE_ID", "0")
    moxing_adapter.sync_data("obs://d", str(tmp_path / "d"))  # device 0 copies
    waiter.join(timeout=5)
    assert waiter_done == [True] and copies == [("obs://d", str(tmp_path / "d"))]
    moxing_adapter.sync_data("obs://d", str(tmp_path / "d"))  # already there for this job: not copied again
    assert len(copies) == 1
