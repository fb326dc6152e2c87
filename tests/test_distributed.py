"""Data-parallel training for real: scripts/run_distribute_train_for_cpu.sh with 2 msrun workers on CPU.

About a minute on two cores (both workers compile the graph); kept in the default run because it is the
only check that ranks really share gradients and split the data.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "run_distribute_train_for_cpu.sh"
TINY = ["--epoch_size", "1", "--steps_per_epoch", "3", "--train_batch_size", "2", "--image_size", "32",
        "--work_nums", "1", "--eval_interval", "0", "--cutout", "false", "--log_interval", "1", "--num_classes", "2"]


@pytest.fixture(scope="module")
def tiny_imagefolder(tmp_path_factory):
    """2 classes x 4 training images (and 1 validation image each) of 40x40 noise."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for split, count in (("train", 4), ("val", 1)):
        for label in ("cat", "dog"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return root.resolve()


def launch(workdir, dataset, run_name, python=sys.executable, timeout=900):
    env = dict(os.environ, PYTHON=python, OUTPUT_DIR=str(workdir / "out"), RUN_NAME=run_name,
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    for key in ("RANK_ID", "RANK_SIZE", "WORKER_NUM", "LOCAL_WORKER_NUM", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT",
                "MSRUN", "DRY_RUN"):
        env.pop(key, None)
    return subprocess.run(["bash", str(SCRIPT), "2", str(dataset), *TINY], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_two_cpu_workers_split_the_data_and_end_with_identical_weights(tmp_path, tiny_imagefolder):
    result = launch(tmp_path, tiny_imagefolder, "dp2")
    logs = tmp_path / "out" / "logs" / "dp2"
    worker_logs = {rank: (logs / f"worker_{rank}.log") for rank in (0, 1)}
    detail = "\n".join(f"--- worker {r}:\n" + (p.read_text()[-3000:] if p.exists() else "(none)")
                       for r, p in worker_logs.items())
    assert result.returncode == 0, result.stderr[-3000:] + detail
    assert f"logs: {logs}" in result.stderr

    # both workers exited 0 (as recorded by scripts/msrun_worker.py)
    assert [(logs / "status" / f"rank_{r}.exit").read_text().strip() for r in (0, 1)] == ["0", "0"]

    # each saw its own half: disjoint manifests whose union is the whole training set
    all_images = {str(p) for p in (tiny_imagefolder / "train").rglob("*.png")}
    shards = [(tmp_path / "out" / "dp2" / "shards" / f"rank_{r}.txt").read_text().split() for r in (0, 1)]
    halves = [{str(Path(p).resolve()) for p in shard} for shard in shards]
    assert all(len(shard) == len(set(shard)) == 4 for shard in shards)
    assert not halves[0] & halves[1]
    assert halves[0] | halves[1] == all_images
    for rank in (0, 1):
        assert f"data shard: rank {rank} of 2: 4 of 8 training images" in worker_logs[rank].read_text()

    # gradients were averaged across the ranks: the trained weights are identical
    digests = [re.findall(r"final weights sha1: ([0-9a-f]{40})", worker_logs[r].read_text()) for r in (0, 1)]
    assert all(len(d) == 1 for d in digests), digests
    assert digests[0] == digests[1]

    # only rank 0 writes the run's outputs
    assert list((tmp_path / "out" / "dp2" / "checkpoints").glob("*.ckpt"))


def test_a_failing_worker_fails_the_launch_and_is_named(tmp_path, tiny_imagefolder):
    # A stand-in "python" (msrun starts workers with the python on PATH) hands worker rank 1 an option
    # train.py rejects, so that rank exits with code 2 while rank 0 waits for it in init().
    shim_dir = tmp_path / "shim"
    shim_dir.mkdir()
    shim = shim_dir / "python"
    shim.write_text("#!/bin/sh\n"
                    'if [ "${RANK_ID:-}" = 1 ] && [ "${MS_ROLE:-}" = MS_WORKER ]; then\n'
                    f'    exec "{sys.executable}" "$@" --no_such_option 1\n'
                    "fi\n"
                    f'exec "{sys.executable}" "$@"\n')
    shim.chmod(0o755)
    result = launch(tmp_path, tiny_imagefolder, "fail2", python=str(shim), timeout=300)
    logs = tmp_path / "out" / "logs" / "fail2"
    assert result.returncode != 0
    assert f"FAILED: rank 1 (exit code 2, log {logs / 'worker_1.log'})" in result.stderr, result.stderr[-3000:]
    assert "no_such_option" in (logs / "worker_1.log").read_text()
    # the cause, from that worker's own log, is shown by the launcher
    assert f"last lines of {logs / 'worker_1.log'}:" in result.stderr
    assert "error: unknown option --no_such_option" in result.stderr
