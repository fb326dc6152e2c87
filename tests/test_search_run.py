"""search.py end to end on a tiny image folder: outputs, train.py on the result, exact resume, bad input."""
import json
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import OFFICIAL_LATENCY_TABLE, make_image_folder, run_script
from test_search import write_table

TINY = ["--device_target", "CPU", "--num_classes", "3", "--image_size", "32", "--width_mult", "0.25",
        "--train_batch_size", "4", "--valid_batch_size", "3", "--val_batch_size", "3", "--warmup_epochs", "1",
        "--epoch_size", "2", "--steps_per_epoch", "2", "--arch_update_every", "1", "--work_nums", "1",
        "--cutout", "false", "--log_interval", "1", "--target_latency", "2.0"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("data"), classes=("a", "b", "c"), n_train=8, n_val=0)


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    from src.latency import default_space

    return write_table(tmp_path_factory.mktemp("table") / "t.yaml", default_space(32, 0.25, 3))


@pytest.fixture(scope="module")
def baseline(data, table, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    proc = run_script(["search.py", *TINY, "--dataset_path", data, "--latency_table", table,
                       "--save_ckpt_path", out, "--run_name", "base"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out / "base", proc


def digests(stdout):
    return re.findall(r"weights sha1: (\w+); alphas sha1: (\w+)", stdout)[-1]


@pytest.mark.slow
def test_search_writes_the_result_and_train_py_trains_it(baseline, data, tmp_path):
    from src.arch import spec_from_config
    from src.checkpoint import load_weights
    from src.proxylessnas_mobile import create_model

    run_dir, proc = baseline
    for name in ("net.config", "init.ckpt", "arch.jsonl", "metrics.jsonl", "search.png", "search.log", "config.yaml",
                 "checkpoints/search-last.ckpt"):
        assert (run_dir / name).is_file(), name
    assert "epoch 2/3 (joint) step 2/2 loss" in proc.stdout and "img/s eta" in proc.stdout
    epochs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in epochs if r["type"] == "epoch"]
    assert [r["arch_steps"] for r in epochs] == [0, 0, 2]  # warm-up, first joint epoch, then every step
    for r in epochs:
        assert {"loss", "valid_top1", "entropy", "expected_cost", "predicted_cost"} <= set(r)
        assert r["cost_unit"] == "ms" and np.isfinite(r["expected_cost"])
    arch = [json.loads(line) for line in (run_dir / "arch.jsonl").read_text().splitlines()]
    assert len(arch) == 3 and len(arch[-1]["probs"]) == 21
    assert all(abs(sum(p) - 1) < 1e-4 for p in arch[-1]["probs"])
    spec, head = spec_from_config(run_dir / "net.config")
    assert head["num_classes"] == 3
    assert [b.zero for b in spec.blocks[1:]] == [o == "Zero" for o in
                                                 (arch[-1]["op_names"][e][c] for e, c in enumerate(arch[-1]["argmax"]))]
    load_weights(create_model(str(run_dir / "net.config"), num_classes=3), str(run_dir / "init.ckpt"))
    # both checkpoints describe themselves (src/description.py): init.ckpt loads with nothing else given
    from src.description import read_description
    from src.inference import load_network

    described = read_description(run_dir / "init.ckpt")
    assert described["arch"] == json.loads((run_dir / "net.config").read_text()) and described["kind"] == "network"
    assert (described["num_classes"], described["image_size"]) == (3, 32)
    assert described["class_names"] == sorted(p.name for p in (Path(data) / "train").iterdir())
    assert load_network(str(run_dir / "init.ckpt"))[0].output.weight.shape == (3, spec.head_channels)
    assert read_description(run_dir / "checkpoints" / "search-last.ckpt")["kind"] == "supernet"
    assert (run_dir / "search.png").stat().st_size > 10_000
    train = run_script(["train.py", "--arch", run_dir / "net.config", "--pretrained", run_dir / "init.ckpt",
                        "--device_target", "CPU", "--num_classes", "3", "--image_size", "32", "--train_batch_size", "4",
                        "--epoch_size", "1", "--steps_per_epoch", "1", "--work_nums", "1", "--eval_interval", "0",
                        "--dataset_path", data, "--save_ckpt_path", tmp_path, "--run_name", "retrain"])
    assert train.returncode == 0, train.stdout[-2000:] + train.stderr[-2000:]
    assert "weights from" in train.stdout and "training done: 1 epochs" in train.stdout


@pytest.mark.slow
def test_resume_continues_exactly(baseline, data, table, tmp_path):
    _, base = baseline
    common = [*TINY, "--dataset_path", data, "--latency_table", table, "--save_ckpt_path", tmp_path, "--run_name", "r"]
    first = run_script(["search.py", *common, "--max_epochs_this_run", "2"])
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    assert "stopped after epoch 2 of 3" in first.stdout
    second = run_script(["search.py", *common, "--resume", tmp_path / "r" / "checkpoints" / "search-last.ckpt"])
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    assert "resumed from" in second.stdout
    assert digests(second.stdout) == digests(base.stdout)


# ---------------------------------------------------------------------------
# Bad input: one line, exit code 2
# ---------------------------------------------------------------------------
def run_main(argv, capsys):
    import search

    code = search.main([str(a) for a in argv])
    return code, capsys.readouterr().err.strip()


@pytest.mark.parametrize("extra, message", [
    (["--latency_table", OFFICIAL_LATENCY_TABLE],
     r"^error: latency table .*mobile_trim.yaml was measured at image size 224, not 32: use --image_size 224, or "
     r"build a table at 32 with `python tools/latency.py build .*--image_size 32"),
    (["--target_latency", "0"], r"^error: --target_latency must be a positive number, got 0.0$"),
    (["--target", "flops", "--target_flops", "-5"], r"^error: --target_flops must be a positive number, got -5.0$"),
    (["--binary_mode", "three"], r"^error: --binary_mode: 'three' is not one of two, full_v2$"),
    (["--latency_loss", "mul#exp"], r"^error: --latency_loss: 'mul#exp' is not one of mul#log, add#linear, none$"),
    (["--latency_loss", "add#linear"], r"^error: --latency_table is needed for a latency target"),
    (["--conv_candidates", "3x3_MBConv6,3x5_MBConv6"],
     r"^error: --conv_candidates: '3x5_MBConv6' is not a candidate name like 3x3_MBConv6 \(odd square kernel, "
     r"expand ratio > 0\); the official ones are 3x3_MBConv3, 3x3_MBConv6, 5x5_MBConv3, 5x5_MBConv6, 7x7_MBConv3, "
     r"7x7_MBConv6$"),
    (["--conv_candidates", "3x3_MBConv6,3x3_MBConv6"], r"^error: --conv_candidates: '3x3_MBConv6' is given twice$"),
    (["--conv_candidates", "4x4_MBConv6"], r"^error: --conv_candidates: '4x4_MBConv6' is not a candidate name"),
])
def test_bad_input_is_one_line(extra, message, data, tmp_path, capsys):
    code, err = run_main([*TINY, "--dataset_path", data, "--save_ckpt_path", tmp_path, *extra], capsys)
    assert code == 2
    assert len(err.splitlines()) == 1 and re.search(message, err), err


def test_dataset_too_small_for_the_validation_split(tmp_path, table, capsys):
    small = make_image_folder(tmp_path / "d", classes=("a", "b", "c"), n_train=4, n_val=0)
    code, err = run_main([*TINY, "--dataset_path", small, "--latency_table", table, "--save_ckpt_path", tmp_path],
                         capsys)
    assert code == 2 and len(err.splitlines()) == 1
    assert re.match(r"^error: class 'a' has 4 training image\(s\): too few for the validation split .*needs 5\)", err)


@pytest.mark.slow
def test_two_cpu_workers_end_with_identical_alphas_and_weights(data, tmp_path):
    """scripts/run_distribute_search_for_cpu.sh with 2 msrun workers: each rank searches on its own half of the
    images; the same sampled paths and averaged gradients leave both with the same weights and alphas."""
    import os
    import subprocess
    import sys

    from conftest import ROOT

    env = dict(os.environ, PYTHON=sys.executable, OUTPUT_DIR=str(tmp_path / "out"), RUN_NAME="dp2",
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    for key in ("RANK_ID", "RANK_SIZE", "WORKER_NUM", "LOCAL_WORKER_NUM", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT",
                "MSRUN", "DRY_RUN"):
        env.pop(key, None)
    options = [a for a in TINY if a not in ("--device_target", "CPU")]
    options[options.index("--train_batch_size") + 1] = "2"
    options[options.index("--valid_batch_size") + 1] = "1"
    result = subprocess.run(["bash", str(ROOT / "scripts" / "run_distribute_search_for_cpu.sh"), "2", str(data),
                             *options, "--latency_loss", "none"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=1200)
    logs = [(tmp_path / "out" / "logs" / "dp2" / f"worker_{r}.log") for r in (0, 1)]
    detail = "\n".join(p.read_text()[-2000:] for p in logs if p.exists())
    assert result.returncode == 0, result.stderr[-2000:] + detail
    found = [digests(p.read_text()) for p in logs]
    assert found[0] == found[1]
    assert "arch loss" in logs[0].read_text()  # the joint phase took architecture steps
    assert (tmp_path / "out" / "dp2" / "net.config").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("mode", [["--binary_mode", "full_v2", "--latency_loss", "add#linear"],
                                  ["--arch_algo", "rl", "--rl_samples", "3"]], ids=["full_v2", "rl"])
def test_full_v2_and_rl_searches_move_alpha_against_a_flops_target(mode, data, tmp_path):
    from src.nas.cost import softmax_np

    proc = run_script(["search.py", *TINY, "--warmup_epochs", "0", "--target", "flops", "--target_flops", "3",
                       *mode, "--dataset_path", data, "--save_ckpt_path", tmp_path, "--run_name", "m"])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    records = [json.loads(line) for line in (tmp_path / "m" / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in records if r["type"] == "epoch"][-1]
    assert last["arch_steps"] == 2 and last["cost_unit"] == "MMACs"
    assert ("reward" in last) == ("rl" in mode)
    arch = [json.loads(line) for line in (tmp_path / "m" / "arch.jsonl").read_text().splitlines()]
    first, final = np.array(sum(arch[0]["probs"], [])), np.array(sum(arch[-1]["probs"], []))
    assert np.abs(final - first).max() > 1e-4  # the architecture steps changed the probabilities
    assert all(abs(sum(p) - 1) < 1e-4 for p in arch[-1]["probs"]) and softmax_np(np.zeros(2)).sum() == 1


def test_conv_candidates_narrow_the_space_and_resume_refuses_other_candidates(data, tmp_path, capsys):
    """--conv_candidates (the official flag): every mixed cell offers only those ops (plus Zero where allowed), the
    table needs only their keys, net.config uses only them; a resume with other candidates is one line."""
    from src.latency import default_space

    narrow = default_space(32, 0.25, 3, candidates=((3, 6),))
    table = write_table(tmp_path / "narrow.yaml", narrow)  # no key of the other five candidates
    common = [*TINY, "--dataset_path", data, "--latency_table", table, "--save_ckpt_path", tmp_path,
              "--conv_candidates", "3x3_MBConv6", "--epoch_size", "1"]
    code, err = run_main([*common, "--run_name", "narrow"], capsys)
    assert code == 0, err
    arch = [json.loads(line) for line in (tmp_path / "narrow" / "arch.jsonl").read_text().splitlines()]
    assert {tuple(names) for names in arch[-1]["op_names"]} == {("3x3_MBConv6",), ("3x3_MBConv6", "Zero")}
    config = json.loads((tmp_path / "narrow" / "net.config").read_text())
    ops = [b["mobile_inverted_conv"] for b in config["blocks"][1:] if b["mobile_inverted_conv"]["name"] != "ZeroLayer"]
    assert ops and all((op["kernel_size"], op["expand_ratio"]) == (3, 6) for op in ops)
    code, err = run_main([*TINY, "--dataset_path", data, "--save_ckpt_path", tmp_path, "--latency_loss", "none",
                          "--epoch_size", "1", "--run_name", "other", "--resume",
                          tmp_path / "narrow" / "checkpoints" / "search-last.ckpt"], capsys)
    assert code == 2 and len(err.splitlines()) == 1
    assert re.match(r"^error: checkpoint .*search-last.ckpt was searched with --conv_candidates 3x3_MBConv6, this "
                    r"run has 3x3_MBConv3,3x3_MBConv6,5x5_MBConv3,5x5_MBConv6,7x7_MBConv3,7x7_MBConv6: resume with "
                    r"the same candidates$", err), err


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_signal_mid_epoch_saves_and_resume_continues_exactly(sig, data, table, tmp_path):
    """SIGTERM (a cluster's preemption) or Ctrl-C in the middle of a joint epoch: the search stops after that
    step with a checkpoint holding the sampler's random state; the resume skips the batches already used and
    ends with exactly the weights and alphas of an uninterrupted run."""
    import signal
    import subprocess
    import sys

    from conftest import ROOT

    common = [*TINY, "--steps_per_epoch", "4", "--dataset_path", data, "--latency_table", table,
              "--save_ckpt_path", tmp_path]
    whole = run_script(["search.py", *common, "--run_name", "whole"])
    assert whole.returncode == 0, whole.stdout[-2000:] + whole.stderr[-2000:]
    proc = subprocess.Popen([sys.executable, "search.py", *map(str, common), "--run_name", "cut"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "epoch 3/3 (joint) step 1/4" in line:
            proc.send_signal(getattr(signal, sig))
    assert proc.wait(timeout=600) == 0, "".join(lines)[-3000:]
    text = "".join(lines)
    assert f"{sig} received: stopping after this step and saving a checkpoint" in text, text[-2000:]
    stopped = re.search(rf"stopped by {sig} at epoch 3 step ([123]); resume with: python search.py --resume (\S+)", text)
    assert stopped, text[-2000:]
    assert "search done" not in text
    second = run_script(["search.py", *common, "--run_name", "cut", "--resume", stopped.group(2)])
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    assert f"in epoch 3 after step {stopped.group(1)}" in second.stdout
    assert digests(second.stdout) == digests(whole.stdout)
    epochs = [json.loads(x) for x in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    reference = [json.loads(x) for x in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    last, expected = ([r for r in rs if r["type"] == "epoch"][-1] for rs in (epochs, reference))
    assert last["arch_steps"] == expected["arch_steps"] == 4
    assert last["loss"] == pytest.approx(expected["loss"], rel=1e-6)


def test_search_demo_refuses_a_bad_candidate_name_before_any_work(tmp_path, capsys):
    from tools import search_demo

    out = tmp_path / "demo"
    assert search_demo.main(["--out", str(out), "--conv_candidates", "2x2_MBConv6"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --conv_candidates: '2x2_MBConv6' is not a candidate name") and len(err.splitlines()) == 1
    assert not out.exists()
