"""Bad data and faults reproduced as they happen in the field (issue 13): cut-off JPEGs, a full disk, a removed
run folder, non-UTF-8 file names, symlink loops, empty classes, --overwrite, resume options and locks, torn
metrics, signals while a data read is blocked."""
import io
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, make_image_folder, run_script
from src.errors import UserError

TINY = ["--device_target", "CPU", "--num_classes", "2", "--image_size", "32", "--train_batch_size", "2",
        "--val_batch_size", "3", "--work_nums", "1", "--warmup_epochs", "1", "--lr_init", "0.05", "--log_interval", "1",
        "--cutout", "false"]


def cut_jpeg(path: Path, seed: int, size=(48, 64), keep: float = 0.5, **save) -> Path:
    """A real colour JPEG (random content, so every byte matters) cut short like an interrupted download."""
    pixels = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=90, **save)
    data = buf.getvalue()
    path.write_bytes(data[:int(len(data) * keep)])
    return path


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def read_metrics(run_dir: Path):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def popen_train(args):
    return subprocess.Popen([sys.executable, "train.py", *map(str, args)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


# ---------------------------------------------------------------- 1/2: truncated images
@pytest.mark.parametrize("keep,save", [(0.5, {}), (0.9, {}), (0.97, {}), (0.6, {"progressive": True}),
                                       (0.8, {"subsampling": 0})])
def test_check_finds_cut_off_colour_jpegs(tmp_path, keep, save):
    from src.dataset import check_images, scan_split
    from src.model_utils.config import get_config
    root = make_image_folder(tmp_path, n_train=3, n_val=0)
    bad = cut_jpeg(root / "train" / "dog" / "dog_1.jpg", seed=3, size=(120, 160), keep=keep, **save)
    config = get_config(["--device_target", "CPU", "--dataset_path", str(root)])
    images = scan_split(config, "train")
    with pytest.raises(UserError, match=rf"cannot decode image {bad} \(OSError: image file is truncated"):
        check_images(images, skip_bad=False)
    kept = check_images(images, skip_bad=True)
    assert len(kept) == 5 and kept.skipped == [str(bad)]


def test_pipeline_source_skips_or_names_a_bad_image(tmp_path):
    from src.dataset import bad_image_message, create_dataset, scan_split
    from src.model_utils.config import get_config
    root = make_image_folder(tmp_path, n_train=3, n_val=0)
    bad = cut_jpeg(root / "train" / "cat" / "cat_1.jpg", seed=1)
    for workers in ("1", "2"):
        args = ["--device_target", "CPU", "--dataset_path", str(root), "--image_size", "32", "--work_nums", workers]
        config = get_config(args)
        pipeline = create_dataset(scan_split(config, "train"), config, training=False, batch_size=1, shuffle=False)
        with pytest.raises(RuntimeError) as info:
            list(pipeline.create_tuple_iterator(num_epochs=1))
        assert bad_image_message(info.value).startswith(f"cannot decode image {bad}: image file is truncated")
        config = get_config([*args, "--skip_bad_images", "true"])
        pipeline = create_dataset(scan_split(config, "train"), config, training=False, batch_size=1, shuffle=False)
        labels = [int(y.asnumpy()[0]) for _, y in pipeline.create_tuple_iterator(num_epochs=1)]
        # the bad cat_1 is replaced by the next sample (cat_2): every position still gives an image
        assert labels == [0, 0, 0, 1, 1, 1], workers


def test_training_with_check_off_stops_with_one_line_naming_the_image(tmp_path):
    root = make_image_folder(tmp_path / "d", n_train=2, n_val=0)
    bad = cut_jpeg(root / "train" / "dog" / "dog_0.jpg", seed=2)
    proc = run_script(["train.py", *TINY, "--dataset_path", root, "--epoch_size", "1", "--check_images", "false",
                       "--save_ckpt_path", tmp_path / "runs", "--run_name", "r"])
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert re.fullmatch(rf"error: cannot decode image {re.escape(str(bad))}: image file is truncated \(\d+ bytes not "
                        r"processed\), while reading the training data: fix or remove it, or pass --skip_bad_images "
                        r"true to skip undecodable images", proc.stderr.strip()), proc.stderr


def test_truncated_validation_image_stops_after_the_epoch_checkpoint(tmp_path):
    root = make_image_folder(tmp_path / "d", n_train=2, n_val=2)
    bad = cut_jpeg(root / "val" / "cat" / "cat_1.jpg", seed=4, keep=0.7)
    proc = run_script(["train.py", *TINY, "--dataset_path", root, "--epoch_size", "2", "--check_images", "false",
                       "--save_ckpt_path", tmp_path / "runs", "--run_name", "r"])
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    ckpt = tmp_path / "runs" / "r" / "checkpoints" / "proxylessnas_mobile-1_2.ckpt"
    line = last_line(proc.stderr)
    assert line.startswith(f"error: cannot decode image {bad}: image file is truncated"), line
    assert "while reading the validation data" in line and f"(the checkpoint of epoch 1 was saved: {ckpt})" in line
    from src.checkpoint import read_checkpoint
    assert int(read_checkpoint(str(ckpt))["epoch_num"].asnumpy()) == 1


def test_two_workers_skip_bad_images_and_read_non_utf8_names(tmp_path):
    root = make_image_folder(tmp_path / "d", n_train=3, n_val=0)
    bad = cut_jpeg(root / "train" / "cat" / "cat_1.jpg", seed=5, keep=0.8)
    # a Latin-1 file name (0xE9 is not UTF-8 on its own), as copied from an old archive
    odd = os.path.join(os.fsencode(root / "train" / "dog"), b"caf\xe9.jpg")
    Image.new("RGB", (40, 52), (200, 60, 100)).save(open(odd, "wb"), "JPEG")
    proc = run_script(["train.py", *TINY, "--dataset_path", root, "--epoch_size", "1", "--check_images", "false",
                       "--skip_bad_images", "true", "--work_nums", "2", "--train_batch_size", "7", "--eval_interval",
                       "0", "--save_ckpt_path", tmp_path / "runs", "--run_name", "r"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"cannot decode image {bad}: image file is truncated" in proc.stdout + proc.stderr
    assert "using the next image instead" in proc.stdout + proc.stderr
    # the Latin-1 name was decoded, not skipped, and nothing failed to print
    assert "caf\\xe9" not in proc.stdout + proc.stderr and "Logging error" not in proc.stderr
    shard = (tmp_path / "runs" / "r" / "shards" / "rank_0.txt").read_bytes().splitlines()
    assert odd in shard and len(shard) == 7
    assert [r["step"] for r in read_metrics(tmp_path / "runs" / "r") if r["type"] == "step"] == [1]


def test_non_utf8_name_in_a_bad_image_message(tmp_path):
    from src.dataset import read_image
    odd = os.path.join(os.fsencode(tmp_path), b"\xff\xfe.jpg")
    with open(odd, "wb") as f:
        f.write(b"not an image")
    with pytest.raises(UserError, match=r"cannot decode image .*\\xff\\xfe\.jpg: cannot identify image file") as info:
        read_image(os.fsdecode(odd))
    str(info.value).encode("utf-8")  # printable as it is


# ---------------------------------------------------------------- 5: full disk
@pytest.fixture
def small_disk(tmp_path):
    """A real 32 MiB file system (tmpfs), if this process may mount one."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {made.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_checkpoint_on_a_full_disk(small_disk):
    import mindspore as ms
    from src.checkpoint import read_checkpoint, save_checkpoint_atomic
    good = small_disk / "good.ckpt"
    save_checkpoint_atomic([{"name": "w", "data": ms.Tensor(np.arange(4, dtype=np.float32))}], str(good))
    (small_disk / "filler").write_bytes(b"\0" * (shutil.disk_usage(small_disk).free - 80 * 2**10))  # 80 KiB left
    # bigger than the space left: refused before writing
    big = [{"name": "w", "data": ms.Tensor(np.zeros(2**16, np.float32))}]
    with pytest.raises(UserError, match=r"cannot save checkpoint .*new\.ckpt: it needs about 0\.2 MiB but .* free"):
        save_checkpoint_atomic(big, str(small_disk / "new.ckpt"))
    # the tensors fit but the file does not (names and framing): the disk fills during the write
    many = [{"name": f"a_rather_long_parameter_name.{i}.weight", "data": ms.Tensor(np.float32(i))} for i in range(3000)]
    with pytest.raises(UserError, match=r"cannot save checkpoint .*new\.ckpt \(No space left on device\)"):
        save_checkpoint_atomic(many, str(small_disk / "new.ckpt"))
    assert sorted(os.listdir(small_disk)) == ["filler", "good.ckpt"]  # no temporary file left
    assert read_checkpoint(str(good))["w"].asnumpy().tolist() == [0, 1, 2, 3]


def test_training_onto_a_full_disk_keeps_the_earlier_checkpoints(small_disk, tmp_path):
    root = make_image_folder(tmp_path / "d", n_train=2, n_val=0)
    # each checkpoint (weights + momenta, 2 classes) is ~20 MiB: the first fits, the second does not
    proc = run_script(["train.py", *TINY, "--dataset_path", root, "--epoch_size", "3", "--eval_interval", "0",
                       "--save_ckpt_path", small_disk, "--run_name", "r"])
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    ckpts = small_disk / "r" / "checkpoints"
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith(f"error: cannot save checkpoint {ckpts}/proxylessnas_mobile-2_2.ckpt"), proc.stderr
    assert "(earlier checkpoints are kept)" in proc.stderr
    assert sorted(os.listdir(ckpts)) == ["proxylessnas_mobile-1_2.ckpt"]
    from src.checkpoint import read_checkpoint
    assert int(read_checkpoint(str(ckpts / "proxylessnas_mobile-1_2.ckpt"))["epoch_num"].asnumpy()) == 1


# ---------------------------------------------------------------- 6: run folder removed
def _train_and_act_at_step(args, marker, act):
    proc = popen_train(args)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if marker in line:
            act()
    return proc.wait(timeout=300), "".join(lines)


def remove(folder: Path, aside: Path) -> None:
    """rm -rf, but at once: the trainer never sees a half-removed folder (rmtree could also race its writes)."""
    os.rename(folder, aside)
    shutil.rmtree(aside)


def test_run_folder_removed_during_training_is_made_again(tmp_path):
    root = make_image_folder(tmp_path / "d", n_train=2, n_val=2)
    run = tmp_path / "runs" / "r"
    code, out = _train_and_act_at_step(["--dataset_path", root, *TINY, "--epoch_size", "2", "--save_ckpt_path",
                                        tmp_path / "runs", "--run_name", "r"], "epoch 1/2 step 1/2",
                                       lambda: remove(run, tmp_path / "gone"))
    assert code == 0, out[-3000:]
    assert f"the run folder {run} was removed during training: made it again" in out
    assert sorted(p.name for p in (run / "checkpoints").glob("*.ckpt")) == [
        "proxylessnas_mobile-1_2.ckpt", "proxylessnas_mobile-2_2.ckpt", "proxylessnas_mobile-best.ckpt"]
    assert (run / "config.yaml").is_file() and (run / "metrics.png").is_file()
    assert "epoch 2/2 step 2/2" in (run / "train.log").read_text()


def test_run_folder_replaced_by_a_file_stops_after_saving_the_weights_elsewhere(tmp_path):
    root = make_image_folder(tmp_path / "d", n_train=2, n_val=0)
    run = tmp_path / "runs" / "r"

    def replace():
        remove(run, tmp_path / "gone")
        # the trainer may make the folder again between the two steps: take it away again until the file is in
        for _ in range(100):
            spare = tmp_path / "spare"
            spare.write_text("not a folder")
            try:
                os.rename(spare, run)  # atomic; refused while a folder is at that path
                return
            except OSError:
                shutil.rmtree(run, ignore_errors=True)
        raise AssertionError(f"could not put a file at {run}")

    code, out = _train_and_act_at_step(["--dataset_path", root, *TINY, "--epoch_size", "2", "--save_ckpt_path",
                                        tmp_path / "runs", "--run_name", "r", "--eval_interval", "0"],
                                       "epoch 1/2 step 1/2", replace)
    assert code == 2, out[-3000:]
    line = last_line(out)
    assert line.startswith(f"error: the run folder {run} was removed during training and cannot be made again"), line
    rescue = Path(line.split("the weights were saved to ")[1].split(";")[0])
    assert f"resume with --resume {rescue}" in line
    # the state after the last completed step (step 1 or 2 of epoch 1, depending on when the removal is seen)
    epoch_num, step_num = map(int, re.fullmatch(r"proxylessnas_mobile-(\d+)_(\d+)\.ckpt", rescue.name).groups())
    from src.checkpoint import read_checkpoint
    entries = read_checkpoint(str(rescue))
    assert (int(entries["epoch_num"].asnumpy()), int(entries["step_num"].asnumpy())) == (epoch_num, step_num)
    assert int(entries["global_step"].asnumpy().reshape(-1)[0]) == 2 * epoch_num + step_num >= 1
    shutil.rmtree(rescue.parent)


# ---------------------------------------------------------------- 9/10: folders
def test_symlink_loops_and_links_out_of_a_class_are_not_followed(tmp_path):
    from src.dataset import scan_split
    from src.model_utils.config import get_config
    root = make_image_folder(tmp_path / "d", classes=("a", "b"), n_train=2, n_val=0)
    train = root / "train"
    (train / "a" / "nested").mkdir()
    Image.new("RGB", (8, 8)).save(train / "a" / "nested" / "n.jpg")
    os.symlink(".", train / "a" / "self_loop")             # a -> a
    os.symlink("..", train / "a" / "parent_loop")          # a -> train (would give b's images label a)
    os.symlink("../b", train / "a" / "to_b")               # another class
    os.symlink("nested", train / "a" / "nested_again")      # the same folder twice
    os.symlink("../../a", train / "a" / "nested" / "up")   # loop through a sub-folder
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    Image.new("RGB", (8, 8)).save(outside / "x.jpg")
    os.symlink(outside, train / "b" / "outside")
    images = scan_split(get_config(["--device_target", "CPU", "--dataset_path", str(root)]), "train")
    got = sorted((os.path.relpath(p, train), label) for p, label in images.samples)
    assert got == [("a/a_0.jpg", 0), ("a/a_1.jpg", 0), ("a/nested/n.jpg", 0), ("b/b_0.jpg", 1), ("b/b_1.jpg", 1)]


def test_a_class_folder_linked_from_elsewhere_is_used(tmp_path):
    # the class folder itself may be a link (data spread over disks): its own contents are listed
    from src.dataset import scan_split
    from src.model_utils.config import get_config
    store = make_image_folder(tmp_path / "store", classes=("a", "b"), n_train=2, n_val=0)
    root = tmp_path / "d" / "train"
    root.mkdir(parents=True)
    for c in ("a", "b"):
        os.symlink(store / "train" / c, root / c)
    images = scan_split(get_config(["--device_target", "CPU", "--dataset_path", str(tmp_path / "d")]), "train")
    assert [label for _, label in images.samples] == [0, 0, 1, 1]


def test_empty_class_folder_and_single_class_are_errors(tmp_path):
    from src.dataset import scan_split
    from src.model_utils.config import get_config
    root = make_image_folder(tmp_path / "d", classes=("a", "b", "c"), n_train=2, n_val=0)
    for f in (root / "train" / "b").iterdir():
        f.unlink()
    (root / "train" / "b" / "notes.txt").write_text("no images here")
    config = get_config(["--device_target", "CPU", "--dataset_path", str(root)])
    with pytest.raises(UserError, match=rf"class folder {root}/train/b has no images \(looked for .jpg"):
        scan_split(config, "train")
    shutil.rmtree(root / "train" / "b")
    shutil.rmtree(root / "train" / "c")
    proc = run_script(["train.py", *TINY, "--num_classes", "1", "--dataset_path", root, "--save_ckpt_path",
                       tmp_path / "runs"])
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"error: {root}/train has a single class folder (a): a classifier needs at least "
                                   "two classes (one would train to loss 0 and 100% accuracy on nothing)")


# ---------------------------------------------------------------- 12/13/14: run folder, resume
@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A finished run of 2 epochs x 2 steps with evaluation: checkpoints 1_2, 2_2, best."""
    tmp = tmp_path_factory.mktemp("rel")
    root = make_image_folder(tmp / "d", n_train=2, n_val=1)
    proc = run_script(["train.py", *TINY, "--dataset_path", root, "--epoch_size", "2", "--save_ckpt_path",
                       tmp / "runs", "--run_name", "base"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return root, tmp / "runs" / "base"


def copy_run(base_run: Path, dest: Path) -> Path:
    shutil.copytree(base_run, dest)
    return dest


def test_overwrite_gives_a_clean_run_folder_and_keeps_the_old_one_aside(base, tmp_path):
    root, base_run = base
    run = copy_run(base_run, tmp_path / "runs" / "r")
    old_metrics = (run / "metrics.jsonl").read_bytes()
    proc = run_script(["train.py", *TINY, "--dataset_path", root, "--epoch_size", "3", "--keep_checkpoint_max", "2",
                       "--save_ckpt_path", tmp_path / "runs", "--run_name", "r", "--overwrite", "true"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "proxylessnas_mobile-2_2.ckpt", "proxylessnas_mobile-3_2.ckpt", "proxylessnas_mobile-best.ckpt"]
    assert [r["global_step"] for r in read_metrics(run) if r["type"] == "step"] == [1, 2, 3, 4, 5, 6]
    backups = list((tmp_path / "runs").glob("r.replaced-*"))
    assert len(backups) == 1 and f"--overwrite: moved the earlier run folder {run} to {backups[0]}" in proc.stdout
    assert (backups[0] / "metrics.jsonl").read_bytes() == old_metrics
    assert sorted(p.name for p in (backups[0] / "checkpoints").iterdir()) == sorted(
        p.name for p in (base_run / "checkpoints").iterdir())


def test_overwrite_leaves_the_earlier_run_s_torn_metrics_untouched(base, tmp_path):
    # the torn last line is dropped on resume only: a fresh --overwrite run moves the earlier run aside as it was
    root, base_run = base
    run = copy_run(base_run, tmp_path / "runs" / "r")
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"type": "step", "epoch": 3, "st')  # what a crash in the middle of a write leaves
    old_metrics = (run / "metrics.jsonl").read_bytes()
    proc = run_script(["train.py", *TINY, "--dataset_path", root, "--epoch_size", "1", "--eval_interval", "0",
                       "--save_ckpt_path", tmp_path / "runs", "--run_name", "r", "--overwrite", "true"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [backup] = (tmp_path / "runs").glob("r.replaced-*")
    assert (backup / "metrics.jsonl").read_bytes() == old_metrics
    assert "partial line" not in proc.stdout + proc.stderr
    assert [r["global_step"] for r in read_metrics(run) if r["type"] == "step"] == [1, 2]


def test_open_run_dir_drops_a_torn_metrics_line_on_resume_only(tmp_path, caplog):
    from src.model_utils.device import ParallelInfo
    from src.run_dir import open_run_dir

    def torn_run(name):
        run = tmp_path / name
        run.mkdir()
        (run / "metrics.jsonl").write_bytes(b'{"a": 1}\n{"a": 2}\n{"a": ')
        (run / "arch.jsonl").write_bytes(b'{"b": 1}\n{"b"')
        return run

    def opened(run, **kw):
        lock, handler, moved = open_run_dir(run, ParallelInfo(), log_name="x.log", **kw)
        lock.close()
        logging.getLogger().removeHandler(handler)
        handler.close()
        return moved

    run = torn_run("fresh")
    moved = opened(run, overwrite=True, resume=False)
    assert (moved / "metrics.jsonl").read_bytes() == b'{"a": 1}\n{"a": 2}\n{"a": '
    assert sorted(p.name for p in run.iterdir()) == [".lock", "checkpoints", "x.log"]
    run = torn_run("resumed")
    with caplog.at_level(logging.WARNING):
        assert opened(run, overwrite=False, resume=True, records=("metrics.jsonl", "arch.jsonl")) is None
    assert (run / "metrics.jsonl").read_bytes() == b'{"a": 1}\n{"a": 2}\n'
    assert (run / "arch.jsonl").read_bytes() == b'{"b": 1}\n'
    assert f"{run / 'metrics.jsonl'} ended in a partial line (6 bytes, left by a crash): dropped it" in caplog.text


def test_resume_refuses_changed_options_unless_allowed_and_records_them(base, tmp_path):
    root, base_run = base
    run = copy_run(base_run, tmp_path / "r")
    config_before = (run / "config.yaml").read_bytes()
    ckpt = run / "checkpoints" / "proxylessnas_mobile-1_2.ckpt"
    for change in (["--lr_init", "0.1"], ["--epoch_size", "1"], ["--train_batch_size", "1"],
                   ["--arch", "proxylessnas_cpu"], ["--cutout", "true"]):
        proc = run_script(["train.py", *TINY, "--dataset_path", root, "--epoch_size", "2", *change, "--resume", ckpt])
        assert proc.returncode == 2, change
        key, value = change[0][2:], change[1]
        assert proc.stderr.startswith("error: --resume with other options than the run it continues (--"), proc.stderr
        assert f"--{key} " in proc.stderr and f"-> {value}" in proc.stderr.replace("True", "true")
        assert "or --resume_allow_changes true" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert (run / "config.yaml").read_bytes() == config_before
    proc = run_script(["train.py", *TINY, "--dataset_path", root, "--epoch_size", "3", "--resume", ckpt,
                       "--resume_allow_changes", "true"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (run / "config.yaml").read_bytes() == config_before  # the original options stay
    record = [json.loads(line) for line in (run / "resumes.jsonl").read_text().splitlines()]
    assert record[-1]["changes"] == {"epoch_size": [2, 3]} and record[-1]["resume"] == str(ckpt)
    # the epoch-2 checkpoint of the first continuation was moved aside, not overwritten
    aside = list((run / "checkpoints").glob("superseded-*/proxylessnas_mobile-2_2.ckpt"))
    assert len(aside) == 1
    assert (aside[0].read_bytes() == (base_run / "checkpoints" / "proxylessnas_mobile-2_2.ckpt").read_bytes())


def test_resume_with_nothing_left_to_train(base, tmp_path):
    root, base_run = base
    run = copy_run(base_run, tmp_path / "r")
    ckpt = run / "checkpoints" / "proxylessnas_mobile-2_2.ckpt"
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    proc = run_script(["train.py", *TINY, "--dataset_path", root, "--epoch_size", "2", "--resume", ckpt])
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"error: nothing left to train: checkpoint {ckpt} ends epoch 2 and --epoch_size is "
                                   "2; to train longer pass a larger --epoch_size together with --resume_allow_changes true")
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before
    assert "training done" not in proc.stdout


LOCKER = """
import sys, time
sys.path.insert(0, {root!r})
from pathlib import Path
from src.run_dir import lock_run_dir
lock = lock_run_dir(Path(sys.argv[1]))
print("locked", flush=True)
time.sleep(120)
"""


def test_a_run_folder_in_use_is_refused_and_a_stale_lock_taken_over(base, tmp_path):
    root, base_run = base
    run = copy_run(base_run, tmp_path / "r")
    ckpt = run / "checkpoints" / "proxylessnas_mobile-1_2.ckpt"
    holder = subprocess.Popen([sys.executable, "-c", LOCKER.format(root=str(ROOT)), str(run)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        for extra in (["--resume", ckpt], ["--save_ckpt_path", tmp_path, "--run_name", "r", "--overwrite", "true"]):
            proc = run_script(["train.py", *TINY, "--dataset_path", root, "--epoch_size", "2", *extra])
            assert proc.returncode == 2, extra
            assert proc.stderr.strip() == (f"error: run folder {run} is in use by process {holder.pid} on "
                                           f"{os.uname().nodename} (lock {run}/.lock): wait for that run to end, or "
                                           "pick another --run_name")
    finally:
        holder.kill()
        holder.wait()
    assert not list(tmp_path.glob("r.replaced-*"))
    # the holder is gone (as after a crash): its lock file is left, its lock is not
    proc = run_script(["train.py", *TINY, "--dataset_path", root, "--epoch_size", "2", "--resume", ckpt])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"taking over the lock of process {holder.pid}" in proc.stdout


def test_torn_last_metrics_line_is_dropped_with_a_warning(base, tmp_path, caplog):
    root, base_run = base
    run = copy_run(base_run, tmp_path / "r")
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"type": "step", "epoch": 2, "st')  # what a crash in the middle of a write leaves
    from src.plotting import read_metrics as read
    with caplog.at_level(logging.WARNING):
        records = read(run / "metrics.jsonl")
    assert len(records) == len(read_metrics(base_run)) and "dropped the partial last line" in caplog.text
    proc = run_script(["train.py", *TINY, "--dataset_path", root, "--epoch_size", "2", "--resume",
                       run / "checkpoints" / "proxylessnas_mobile-1_2.ckpt"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "metrics.jsonl ended in a partial line (32 bytes, left by a crash): dropped it" in proc.stdout
    records = read_metrics(run)  # every line is JSON again
    assert [r["global_step"] for r in records if r["type"] == "step"][-2:] == [3, 4]


# ---------------------------------------------------------------- 15: signals while a read is blocked
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_a_run_whose_data_read_is_blocked(tmp_path, sig):
    root = make_image_folder(tmp_path / "d", n_train=2, n_val=0)
    for c in ("cat", "dog"):  # every image a FIFO nobody writes to: the first read blocks for ever
        for f in (root / "train" / c).iterdir():
            f.unlink()
            os.mkfifo(f)
    proc = popen_train(["--dataset_path", root, *TINY, "--epoch_size", "1", "--check_images", "false",
                        "--save_ckpt_path", tmp_path, "--run_name", "r"])
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "run folder:" in line:
            break
    time.sleep(3)  # now waiting for the first batch
    proc.send_signal(sig)
    try:
        rest, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the run ignored " + sig.name + ":\n" + "".join(lines)[-2000:])
    out = "".join(lines) + rest
    assert proc.returncode == 0, out[-3000:]
    assert f"{sig.name} received while a data read is blocked: saving the last completed step" in out
    ckpt = tmp_path / "r" / "checkpoints" / "proxylessnas_mobile-interrupted.ckpt"
    assert (f"stopped by {sig.name} at epoch 1 step 0 while waiting for data (a data read is blocked); resume with: "
            f"python train.py --resume {ckpt}") in out
    assert ckpt.is_file()


def test_eval_with_check_off_stops_with_one_line_naming_the_image(tmp_path):
    """eval.py meets a cut-off validation JPEG its check did not look at: one line naming it, exit 2."""
    from src import create_model
    from src.checkpoint import save_checkpoint_atomic, params_list
    root = make_image_folder(tmp_path / "d", n_train=2, n_val=2)
    bad = cut_jpeg(root / "val" / "dog" / "dog_1.jpg", seed=6, keep=0.6)
    ckpt = tmp_path / "w.ckpt"
    save_checkpoint_atomic(params_list(create_model("proxylessnas_mobile", num_classes=2)), str(ckpt))
    proc = run_script(["eval.py", "--device_target", "CPU", "--dataset_path", root, "--checkpoint_path", ckpt,
                       "--num_classes", "2", "--image_size", "32", "--val_batch_size", "2", "--work_nums", "1",
                       "--check_images", "false"])
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert re.fullmatch(rf"error: cannot decode image {re.escape(str(bad))}: image file is truncated \(\d+ bytes not "
                        r"processed\), while reading the validation data: fix or remove it, or pass "
                        r"--skip_bad_images true to skip undecodable images", proc.stderr.strip()), proc.stderr
