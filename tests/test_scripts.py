"""The launch scripts in scripts/: usage and path checks, and (dry run) the commands they would run."""
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
sys.path.insert(0, str(SCRIPTS))

import msrun_worker  # noqa: E402

TRAIN = str(ROOT / "train.py")
EVAL = str(ROOT / "eval.py")

# script -> positional arguments it takes, in order
POSITIONAL = {
    "run_standalone_train_for_ascend.sh": ["DEVICE_ID", "DATASET_PATH"],
    "run_standalone_train_for_gpu.sh": ["DEVICE_ID", "DATASET_PATH"],
    "run_standalone_train_for_cpu.sh": ["DATASET_PATH"],
    "run_distribute_train_for_ascend.sh": ["RANK_TABLE_FILE", "DATASET_PATH"],
    "run_distribute_train_for_gpu.sh": ["DATASET_PATH"],
    "run_distribute_train_for_cpu.sh": ["WORKER_NUM", "DATASET_PATH"],
    "run_eval_for_ascend.sh": ["DEVICE_ID", "DATASET_PATH", "CHECKPOINT"],
    "run_eval_for_gpu.sh": ["DEVICE_ID", "DATASET_PATH", "CHECKPOINT"],
    "run_eval_for_cpu.sh": ["DATASET_PATH", "CHECKPOINT"],
    "run_distribute_search_for_ascend.sh": ["DEVICE_NUM", "DATASET_PATH"],
    "run_distribute_search_for_gpu.sh": ["DEVICE_NUM", "DATASET_PATH"],
    "run_distribute_search_for_cpu.sh": ["WORKER_NUM", "DATASET_PATH"],
}


@pytest.fixture
def place(tmp_path):
    """A dataset folder, a checkpoint file and a 4-device rank table (devices 4-7 = ranks 0-3)."""
    (tmp_path / "data" / "train").mkdir(parents=True)
    (tmp_path / "data" / "val").mkdir()
    (tmp_path / "net.ckpt").write_bytes(b"")
    devices = [{"device_id": str(4 + i), "device_ip": f"192.168.0.{i}", "rank_id": str(i)} for i in range(4)]
    table = {"version": "1.0", "server_count": "1", "status": "completed",
             "server_list": [{"server_id": "10.0.0.1", "device": devices}]}
    (tmp_path / "hccl_4p.json").write_text(json.dumps(table))
    return tmp_path.resolve()


def run_script(name, *args, cwd, **env):
    """Run scripts/NAME with bash; env values override (None removes) the current environment."""
    full_env = dict(os.environ, PYTHON=sys.executable, OUTPUT_DIR=str(Path(cwd) / "out"))
    full_env.pop("CUDA_VISIBLE_DEVICES", None)
    for key, value in env.items():
        if value is None:
            full_env.pop(key, None)
        else:
            full_env[key] = value
    return subprocess.run(["bash", str(SCRIPTS / name), *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=60)


def valid_args(name, place):
    values = {"DEVICE_ID": "3", "DATASET_PATH": "data", "CHECKPOINT": "net.ckpt",
              "RANK_TABLE_FILE": "hccl_4p.json", "WORKER_NUM": "2",
              "DEVICE_NUM": "2"}
    return [values[p] for p in POSITIONAL[name]]


def commands(result):
    """The dry-run command lines, split into words (redirections included)."""
    assert result.returncode == 0, result.stderr
    return [shlex.split(line) for line in result.stdout.splitlines() if line.strip()]


def env_and_argv(words):
    """Split leading NAME=value words from a command line."""
    env = {}
    while words and "=" in words[0] and not words[0].startswith("-") and "/" not in words[0].split("=")[0]:
        key, value = words[0].split("=", 1)
        env[key] = value
        words = words[1:]
    return env, words


def option(argv, key):
    values = [argv[i + 1] for i, w in enumerate(argv[:-1]) if w == key]
    assert values, f"{key} not in {argv}"
    return values[-1]


# ---------------------------------------------------------------------------
# Usage and path checks (all scripts)
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(POSITIONAL))
def test_wrong_argument_count_prints_usage_and_exits_2(name, place):
    args = valid_args(name, place)
    for wrong in (args[:-1], args + ["extra"]):
        result = run_script(name, *wrong, cwd=place, DRY_RUN="1")
        assert result.returncode == 2, (wrong, result.stdout, result.stderr)
        assert "Usage: bash " + name in result.stderr
        assert result.stdout == ""


@pytest.mark.parametrize("name", sorted(POSITIONAL))
def test_help_prints_usage_and_exits_0(name, place):
    result = run_script(name, "--help", cwd=place)
    assert result.returncode == 0 and "Usage: bash " + name in result.stdout


@pytest.mark.parametrize("name", sorted(POSITIONAL))
def test_missing_paths_are_named_before_anything_runs(name, place):
    for i, param in enumerate(POSITIONAL[name]):
        if param not in ("DATASET_PATH", "CHECKPOINT", "RANK_TABLE_FILE"):
            continue
        args = valid_args(name, place)
        args[i] = "no/such/path"
        result = run_script(name, *args, cwd=place)  # not a dry run: it must stop before launching
        assert result.returncode == 2, result.stderr
        assert f"{param}=no/such/path" in result.stderr
        assert not (place / "out").exists()


@pytest.mark.parametrize("name", ["run_standalone_train_for_ascend.sh", "run_eval_for_gpu.sh"])
def test_a_device_id_must_be_a_number(name, place):
    args = valid_args(name, place)
    args[0] = "gpu0"
    result = run_script(name, *args, cwd=place, DRY_RUN="1")
    assert result.returncode == 2 and "DEVICE_ID=gpu0" in result.stderr


@pytest.mark.parametrize("name,param", [("run_distribute_train_for_cpu.sh", "WORKER_NUM"),
                                        ("run_distribute_search_for_cpu.sh", "WORKER_NUM"),
                                        ("run_distribute_search_for_gpu.sh", "DEVICE_NUM"),
                                        ("run_distribute_search_for_ascend.sh", "DEVICE_NUM")])
def test_a_worker_count_must_be_positive(name, param, place):
    result = run_script(name, "0", "data", cwd=place, DRY_RUN="1")
    assert result.returncode == 2 and f"{param}=0" in result.stderr


def test_an_unknown_launcher_is_rejected(place):
    result = run_script("run_distribute_train_for_gpu.sh", "data", cwd=place, DRY_RUN="1", LAUNCHER="horovod")
    assert result.returncode == 2 and "LAUNCHER=horovod" in result.stderr


# ---------------------------------------------------------------------------
# Single-device commands
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("name,target", [("run_standalone_train_for_ascend.sh", "Ascend"),
                                         ("run_standalone_train_for_gpu.sh", "GPU")])
def test_standalone_train_command(name, target, place):
    result = run_script(name, "3", "data", "--epoch_size", "2", "--lr_init=0.05", cwd=place, DRY_RUN="1",
                        RUN_NAME="r1")
    [line] = commands(result)
    env, argv = env_and_argv(line)
    assert env == {}  # in particular no CUDA_VISIBLE_DEVICES=3 beside --device_id 3 (the seed's bug)
    assert argv[:2] == [sys.executable, TRAIN]
    assert option(argv, "--device_target") == target and option(argv, "--device_id") == "3"
    # relative paths are made absolute against the caller's directory
    assert option(argv, "--dataset_path") == str((place / "data").resolve())
    assert option(argv, "--save_ckpt_path") == str(place / "out") and option(argv, "--run_name") == "r1"
    # pass-through options come last, unchanged, so they win
    assert argv[-6:] == ["--epoch_size", "2", "--lr_init=0.05", ">", str(place / "out" / "logs" / "r1" / "train.log"),
                         "2>&1"]
    assert "logs: " + str(place / "out" / "logs" / "r1") in result.stderr
    assert "run folder: " + str(place / "out" / "r1") in result.stderr
    assert not (place / "out").exists()  # a dry run creates nothing


def test_standalone_cpu_command(place):
    [line] = commands(run_script("run_standalone_train_for_cpu.sh", "data", "--epoch_size", "1", cwd=place,
                                 DRY_RUN="1"))
    _, argv = env_and_argv(line)
    assert argv[:2] == [sys.executable, TRAIN] and option(argv, "--device_target") == "CPU"
    assert "--device_id" not in argv and "--run_distribute" not in argv
    assert option(argv, "--epoch_size") == "1"


@pytest.mark.parametrize("name,target", [("run_eval_for_ascend.sh", "Ascend"), ("run_eval_for_gpu.sh", "GPU")])
def test_eval_command_takes_device_dataset_and_checkpoint(name, target, place):
    [line] = commands(run_script(name, "5", "data", "net.ckpt", "--val_batch_size", "50", cwd=place,
                                 DRY_RUN="1", RUN_NAME="e1"))
    env, argv = env_and_argv(line)
    assert env == {} and argv[:2] == [sys.executable, EVAL]
    assert option(argv, "--device_target") == target and option(argv, "--device_id") == "5"
    assert option(argv, "--checkpoint_path") == str((place / "net.ckpt").resolve())
    assert option(argv, "--val_batch_size") == "50"
    assert argv[-2:] == [str(place / "out" / "logs" / "e1" / "eval.log"), "2>&1"]


def test_eval_accepts_a_checkpoint_folder(place):
    [line] = commands(run_script("run_eval_for_cpu.sh", "data", ".", cwd=place, DRY_RUN="1"))
    _, argv = env_and_argv(line)
    assert option(argv, "--checkpoint_path") == str(place.resolve())
    assert option(argv, "--device_target") == "CPU"


def test_user_run_name_and_output_folder_are_honoured(place):
    result = run_script("run_standalone_train_for_cpu.sh", "data", "--save_ckpt_path", "runs", "--run_name", "mine",
                        cwd=place, DRY_RUN="1")
    [line] = commands(result)
    assert line[-2:] == [str(place / "runs" / "logs" / "mine" / "train.log"), "2>&1"]
    assert "run folder: " + str(place / "runs" / "mine") in result.stderr


# ---------------------------------------------------------------------------
# Distributed commands
# ---------------------------------------------------------------------------
def test_ascend_rank_table_starts_one_process_per_device(place):
    result = run_script("run_distribute_train_for_ascend.sh", "hccl_4p.json", "data", "--epoch_size", "3",
                        cwd=place, DRY_RUN="1", RUN_NAME="d1")
    lines = commands(result)
    assert len(lines) == 4
    for rank, line in enumerate(lines):
        env, argv = env_and_argv(line)
        assert env["RANK_ID"] == str(rank) and env["DEVICE_ID"] == str(4 + rank)
        assert env["RANK_SIZE"] == "4" and env["RANK_TABLE_FILE"] == str((place / "hccl_4p.json").resolve())
        assert env["HCCL_CONNECT_TIMEOUT"] == "600"
        assert argv[:2] == [sys.executable, TRAIN]
        assert option(argv, "--device_target") == "Ascend" and option(argv, "--run_distribute") == "true"
        assert option(argv, "--run_name") == "d1" and option(argv, "--epoch_size") == "3"
        assert argv[-3:] == [str(place / "out" / "logs" / "d1" / f"rank_{rank}.log"), "2>&1", "&"]


def test_ascend_rank_table_with_several_servers_needs_server_id(place):
    table = json.loads((place / "hccl_4p.json").read_text())
    second = {"server_id": "10.0.0.2",
              "device": [{"device_id": str(i), "device_ip": "x", "rank_id": str(4 + i)} for i in range(4)]}
    table["server_list"].append(second)
    (place / "hccl_8p.json").write_text(json.dumps(table))
    result = run_script("run_distribute_train_for_ascend.sh", "hccl_8p.json", "data", cwd=place, DRY_RUN="1")
    assert result.returncode == 2 and "SERVER_ID" in result.stderr and "10.0.0.2" in result.stderr
    lines = commands(run_script("run_distribute_train_for_ascend.sh", "hccl_8p.json", "data", cwd=place,
                                DRY_RUN="1", SERVER_ID="10.0.0.2"))
    envs = [env_and_argv(line)[0] for line in lines]
    assert [(e["RANK_ID"], e["DEVICE_ID"], e["RANK_SIZE"]) for e in envs] == \
        [(str(4 + i), str(i), "8") for i in range(4)]


def test_a_broken_rank_table_is_rejected(place):
    (place / "bad.json").write_text("{not json")
    result = run_script("run_distribute_train_for_ascend.sh", "bad.json", "data", cwd=place, DRY_RUN="1")
    assert result.returncode == 2 and "RANK_TABLE_FILE=" in result.stderr


@pytest.mark.parametrize("name,first,env", [
    ("run_distribute_train_for_cpu.sh", "2", {}),
    ("run_distribute_train_for_gpu.sh", None, {"LAUNCHER": "mpirun"}),
    ("run_distribute_train_for_ascend.sh", "hccl_4p.json", {}),
    ("run_distribute_train_for_ascend.sh", "4", {"LAUNCHER": "msrun"}),
    ("run_distribute_search_for_cpu.sh", "2", {}),
    ("run_distribute_search_for_gpu.sh", "2", {}),
])
def test_distributed_launch_refuses_a_used_run_folder(name, first, env, place):
    # Checked once by the launcher: train.py's own check, made by rank 0 after init(), can see the shard
    # lists the other ranks already wrote.  So the ranks themselves get --overwrite true.
    (place / "out" / "taken").mkdir(parents=True)
    (place / "out" / "taken" / "metrics.jsonl").write_text("{}\n")
    args = [a for a in (first, "data") if a]
    result = run_script(name, *args, cwd=place, DRY_RUN="1", RUN_NAME="taken", MSRUN="msrun", **env)
    assert result.returncode == 2 and f"run folder {place / 'out' / 'taken'} already exists" in result.stderr
    for extra in (["--overwrite", "true"], ["--resume", "x.ckpt"]):
        result = run_script(name, *args, *extra, cwd=place, DRY_RUN="1", RUN_NAME="taken", MSRUN="msrun", **env)
        assert result.returncode == 0, result.stderr
    result = run_script(name, *args, cwd=place, DRY_RUN="1", RUN_NAME="fresh", MSRUN="msrun", **env)
    for line in commands(result):
        assert "--overwrite true" in " ".join(line)


def msrun_line(result):
    [line] = commands(result)
    env, argv = env_and_argv(line)
    flags = {w.split("=", 1)[0]: w.split("=", 1)[1] for w in argv if w.startswith("--") and "=" in w
             and argv.index(w) < argv.index(str(SCRIPTS / "msrun_worker.py"))}
    task = argv[argv.index(str(SCRIPTS / "msrun_worker.py")) + 1:]
    return env, argv, flags, task


def test_ascend_msrun_command(place):
    result = run_script("run_distribute_train_for_ascend.sh", "8", "data", "--epoch_size", "3", cwd=place,
                        DRY_RUN="1", LAUNCHER="msrun", RUN_NAME="m1", MSRUN="msrun", MASTER_PORT="9123")
    env, argv, flags, task = msrun_line(result)
    assert argv[0] == "msrun"
    assert flags["--worker_num"] == "8" and flags["--local_worker_num"] == "8"
    assert flags["--master_port"] == "9123" and flags["--join"] == "True"
    assert flags["--log_dir"] == str(place / "out" / "logs" / "m1") and "--node_rank" not in flags
    assert env["WORKER_STATUS_DIR"] == str(place / "out" / "logs" / "m1" / "status")
    assert task[0] == TRAIN and option(task, "--device_target") == "Ascend"
    assert option(task, "--run_distribute") == "true" and option(task, "--epoch_size") == "3"


def test_gpu_msrun_command_uses_the_visible_devices(place):
    env, argv, flags, task = msrun_line(run_script(
        "run_distribute_train_for_gpu.sh", "data", "--train_batch_size", "64", cwd=place, DRY_RUN="1",
        MSRUN="msrun", CUDA_VISIBLE_DEVICES="0,1,2,3"))
    assert flags["--worker_num"] == "4" and flags["--local_worker_num"] == "4"
    assert 1024 <= int(flags["--master_port"]) <= 65535  # a free port when one node
    assert option(task, "--device_target") == "GPU" and option(task, "--train_batch_size") == "64"
    assert "CUDA_VISIBLE_DEVICES" not in env


def test_gpu_msrun_multi_node(place):
    # node 1 may start after node 0's rank 0 created the (shared) run folder: only node 0 checks it
    (place / "out" / "big").mkdir(parents=True)
    (place / "out" / "big" / "train.log").write_text("started\n")
    env, argv, flags, task = msrun_line(run_script(
        "run_distribute_train_for_gpu.sh", "data", cwd=place, DRY_RUN="1", MSRUN="msrun", DEVICE_NUM="8",
        WORKER_NUM="16", NODE_RANK="1", MASTER_ADDR="10.0.0.1", MASTER_PORT="8200", RUN_NAME="big"))
    assert flags == {"--worker_num": "16", "--local_worker_num": "8", "--master_addr": "10.0.0.1",
                     "--master_port": "8200", "--node_rank": "1", "--log_dir": str(place / "out" / "logs" / "big"),
                     "--join": "True", "--tail_worker_log": "8"}
    # a node without its rank or the master's address is refused
    for missing in ("NODE_RANK", "MASTER_ADDR"):
        node = {"DEVICE_NUM": "8", "WORKER_NUM": "16", "NODE_RANK": "1", "MASTER_ADDR": "10.0.0.1", missing: None}
        result = run_script("run_distribute_train_for_gpu.sh", "data", cwd=place, DRY_RUN="1", **node)
        assert result.returncode == 2 and missing in result.stderr


def test_gpu_mpirun_command(place):
    [line] = commands(run_script("run_distribute_train_for_gpu.sh", "data", "--epoch_size", "1", cwd=place,
                                 DRY_RUN="1", LAUNCHER="mpirun", DEVICE_NUM="4", RUN_NAME="p1"))
    _, argv = env_and_argv(line)
    assert argv[:3] == ["mpirun", "-n", "4"]
    assert option(argv, "--output-filename") == str(place / "out" / "logs" / "p1")
    train = argv[argv.index(sys.executable):]
    assert train[1] == TRAIN and option(train, "--run_distribute") == "true"
    assert option(train, "--device_target") == "GPU" and option(train, "--epoch_size") == "1"


def test_cpu_msrun_command(place):
    env, argv, flags, task = msrun_line(run_script(
        "run_distribute_train_for_cpu.sh", "3", "data", "--steps_per_epoch", "2", cwd=place, DRY_RUN="1",
        MSRUN="msrun"))
    assert flags["--worker_num"] == "3" and flags["--local_worker_num"] == "3"
    assert option(task, "--device_target") == "CPU" and option(task, "--run_distribute") == "true"
    assert option(task, "--steps_per_epoch") == "2"


# ---------------------------------------------------------------------------
# scripts/msrun_worker.py: per-rank exit status for the launcher
# ---------------------------------------------------------------------------
def test_msrun_worker_records_the_exit_code(tmp_path):
    script = tmp_path / "job.py"
    script.write_text("import sys\nassert sys.argv[1:] == ['--x', '1']\nsys.exit(3)\n")
    status = tmp_path / "status"
    status.mkdir()
    env = dict(os.environ, WORKER_STATUS_DIR=str(status), RANK_ID="5", MS_ROLE="MS_WORKER")
    result = subprocess.run([sys.executable, str(SCRIPTS / "msrun_worker.py"), str(script), "--x", "1"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 3, result.stderr
    assert (status / "rank_5.exit").read_text().strip() == "3"
    assert (status / "rank_5.pid").read_text().strip().isdigit()
    assert msrun_worker.failed_worker(str(status)) == "rank 5 exited with code 3"


def test_failed_worker_sees_a_killed_rank(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "rank_0.pid").write_text(f"{os.getpid()}\n")
    assert msrun_worker.failed_worker(str(tmp_path)) == ""
    (tmp_path / "rank_1.pid").write_text(f"{dead.pid}\n")
    (tmp_path / "rank_2.pid").write_text(f"{dead.pid}\n")
    (tmp_path / "rank_2.exit").write_text("0\n")
    assert msrun_worker.failed_worker(str(tmp_path)).startswith("rank 1 ")


# ---------------------------------------------------------------------------
# Rank-table launch for real, with a stand-in interpreter (no Ascend needed)
# ---------------------------------------------------------------------------
def fake_python(place, body):
    """A PYTHON that runs BODY for the training ranks (RANK_ID set) and is the real python otherwise."""
    shim = place / "fake_python"
    shim.write_text(f'#!/bin/sh\nif [ -z "${{RANK_ID:-}}" ]; then exec "{sys.executable}" "$@"; fi\n{body}\n')
    shim.chmod(0o755)
    return str(shim)


def test_rank_table_launch_waits_for_every_rank(place):
    python = fake_python(place, 'echo "rank $RANK_ID device $DEVICE_ID of $RANK_SIZE: $*"; exit 0')
    result = run_script("run_distribute_train_for_ascend.sh", "hccl_4p.json", "data", "--epoch_size", "1",
                        cwd=place, PYTHON=python, RUN_NAME="ok")
    assert result.returncode == 0, result.stderr
    assert "all 4 ranks finished" in result.stderr
    for rank in range(4):
        log = (place / "out" / "logs" / "ok" / f"rank_{rank}.log").read_text()
        assert log.startswith(f"rank {rank} device {4 + rank} of 4: {TRAIN} --device_target Ascend")
        assert log.rstrip().endswith("--epoch_size 1")


def test_rank_table_launch_names_the_failed_rank_and_stops_the_others(place):
    python = fake_python(place, 'if [ "$RANK_ID" = 2 ]; then echo boom; exit 3; fi\nexec sleep 60')
    result = run_script("run_distribute_train_for_ascend.sh", "hccl_4p.json", "data", cwd=place, PYTHON=python,
                        RUN_NAME="bad")
    log = place / "out" / "logs" / "bad" / "rank_2.log"
    assert result.returncode == 1
    assert f"FAILED: rank 2 (device 6) exited with code 3; log: {log}" in result.stderr
    assert log.read_text().strip() == "boom"
    assert "stopping process" in result.stderr  # the sleeping ranks were ended, not left behind


@pytest.mark.parametrize("name,target", [("run_distribute_search_for_cpu.sh", "CPU"),
                                         ("run_distribute_search_for_gpu.sh", "GPU"),
                                         ("run_distribute_search_for_ascend.sh", "Ascend")])
def test_search_msrun_command(name, target, place):
    """One body (scripts/common.sh distribute_search) for the three search scripts: search.py on TARGET, the
    dataset and run folder, the user's options last; CPU counts all nodes' workers, GPU/Ascend this node's."""
    env, argv, flags, task = msrun_line(run_script(name, "3", "data", "--lr_init", "0.1", cwd=place, DRY_RUN="1",
                                                   MSRUN="msrun", RUN_NAME="s1", MASTER_PORT="9124"))
    assert flags["--worker_num"] == "3" and flags["--local_worker_num"] == "3" and flags["--master_port"] == "9124"
    assert task[0] == str(ROOT / "search.py") and option(task, "--device_target") == target
    assert option(task, "--dataset_path") == str(place / "data") and option(task, "--run_name") == "s1"
    assert option(task, "--save_ckpt_path") == str(place / "out") and option(task, "--run_distribute") == "true"
    assert task[task.index(">") - 2:task.index(">")] == ["--lr_init", "0.1"]  # last: the user's options win
    many = {"WORKER_NUM": "6", "LOCAL_WORKER_NUM": "2", "NODE_RANK": "1", "MASTER_ADDR": "10.0.0.1"}
    env, argv, flags, task = msrun_line(run_script(name, "3", "data", cwd=place, DRY_RUN="1", MSRUN="msrun",
                                                   RUN_NAME="s2", MASTER_PORT="9124", **many))
    if target == "CPU":  # the count is the total: 3 workers, 2 of them here
        assert (flags["--worker_num"], flags["--local_worker_num"], flags["--node_rank"]) == ("3", "2", "1")
    else:  # the count is this node's devices, WORKER_NUM the total
        assert (flags["--worker_num"], flags["--local_worker_num"], flags["--node_rank"]) == ("6", "3", "1")
