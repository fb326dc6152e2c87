"""The config system: YAML + typed --key value overrides, errors that name the key."""
import subprocess
import sys

import pytest

from src.errors import UserError
from src.model_utils.config import DEFAULT_CONFIG, get_config, load_yaml


def test_defaults_come_from_default_config_yaml():
    cfg = get_config([])
    values, helps, choices = load_yaml(DEFAULT_CONFIG)
    assert cfg.arch == "proxylessnas_mobile" and cfg.lr_init == pytest.approx(0.2)
    assert cfg.train_batch_size == 131 and cfg.cutout_length == 56 and cfg.cutout is True
    # every key is documented
    assert set(values) <= set(helps), sorted(set(values) - set(helps))
    assert set(choices) <= set(values)


def test_overrides_take_the_type_of_the_default():
    cfg = get_config(["--lr_init", "0.05", "--epoch_size=3", "--cutout", "FALSE", "--nesterov", "1",
                      "--device_target", "CPU", "--arch", "proxylessnas_gpu", "--warmup_epochs", "2"])
    assert cfg.lr_init == pytest.approx(0.05) and isinstance(cfg.lr_init, float)
    assert cfg.epoch_size == 3 and isinstance(cfg.epoch_size, int)
    assert cfg.cutout is False and cfg.nesterov is True
    assert cfg.device_target == "CPU" and cfg.arch == "proxylessnas_gpu"
    assert isinstance(cfg.warmup_epochs, int)


@pytest.mark.parametrize("text,value", [("true", True), ("True", True), ("1", True), ("yes", True),
                                        ("false", False), ("FaLsE", False), ("0", False), ("no", False)])
def test_booleans(text, value):
    assert get_config(["--cutout", text]).cutout is value


@pytest.mark.parametrize("argv,message", [
    (["--lr_iinit", "0.1"], "unknown option --lr_iinit (did you mean --lr_init?)"),
    (["--coutout_length", "56"], "did you mean --cutout_length?"),
    (["--epoch_size", "ten"], "--epoch_size: expected int, got 'ten'"),
    (["--epoch_size", "1.5"], "--epoch_size: expected int, got '1.5'"),
    (["--lr_init", "fast"], "--lr_init: expected float, got 'fast'"),
    (["--cutout", "maybe"], "--cutout: expected bool (true/false/1/0), got 'maybe'"),
    (["--device_target", "TPU"], "--device_target: 'TPU' is not one of auto, Ascend, GPU, CPU"),
    (["--file_format", "PB"], "--file_format: 'PB' is not one of MINDIR, ONNX, AIR"),
    (["--train_batch_size", "0"], "--train_batch_size: must be > 0, got 0"),
    (["--epoch_size", "-1"], "--epoch_size: must be > 0, got -1"),
    (["--lr_init", "0"], "--lr_init: must be > 0, got 0.0"),
    (["--image_size", "100"], "--image_size: must be a multiple of 32 and at least 32, got 100 (e.g. 96)"),
    (["--image_size", "16"], "--image_size: must be a multiple of 32 and at least 32"),
    (["--label_smoothing", "1.0"], "--label_smoothing: must be in [0, 1), got 1.0"),
    (["--lr_init"], "--lr_init needs a value"),
    (["lr_init", "0.1"], "unexpected argument 'lr_init'"),
    (["--config_path", "/nonexistent/x.yaml"], "config file not found: /nonexistent/x.yaml"),
])
def test_bad_input_names_key_value_and_fix(argv, message):
    with pytest.raises(UserError) as err:
        get_config(argv)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_custom_yaml_is_partial_and_checked(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text("epoch_size: 4\nlr_init: 1\ndevice_target: CPU\n")
    cfg = get_config(["--config_path", str(path), "--train_batch_size", "8"])
    assert cfg.epoch_size == 4 and cfg.lr_init == 1.0 and isinstance(cfg.lr_init, float)
    assert cfg.train_batch_size == 8 and cfg.val_batch_size == 125  # the rest from the defaults
    path.write_text("epochs: 4\n")
    with pytest.raises(UserError, match="unknown key 'epochs'.*did you mean --epoch_size"):
        get_config(["--config_path", str(path)])
    path.write_text("device_target: [CPU\n")
    with pytest.raises(UserError, match="not valid YAML"):
        get_config(["--config_path", str(path)])


def test_extra_defaults_add_keys_that_a_custom_yaml_and_the_command_line_may_set(tmp_path):
    extra = tmp_path / "tool.yaml"
    extra.write_text("depth: 3\nepoch_size: 7\n---\ndepth: 'Blocks.'\n---\ndepth: [3, 4, 5]\n")
    cfg = get_config(["--depth", "5"], extra_defaults=extra)
    assert cfg.depth == 5 and cfg.epoch_size == 7 and cfg.val_batch_size == 125
    assert cfg.config_path == str(extra)
    user = tmp_path / "user.yaml"
    user.write_text("depth: 4\nlr_init: 2\n")
    cfg = get_config(["--config_path", str(user)], extra_defaults=extra)
    assert (cfg.depth, cfg.epoch_size, cfg.lr_init) == (4, 7, 2.0) and cfg.config_path == str(user)
    user.write_text("deph: 4\n")
    with pytest.raises(UserError, match="unknown key 'deph'.*did you mean --depth"):
        get_config(["--config_path", str(user)], extra_defaults=extra)
    with pytest.raises(UserError, match="--depth: 9 is not one of 3, 4, 5"):
        get_config(["--depth", "9"], extra_defaults=extra)
    with pytest.raises(UserError, match="unknown option --depth"):
        get_config(["--depth", "5"])  # without extra_defaults the key is unknown


def test_importing_config_parses_nothing():
    # argv full of garbage must not matter at import time
    code = "import sys; sys.argv=['x','--nonsense']; import src.model_utils.config, src; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(DEFAULT_CONFIG.parent))
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
    assert "mindspore" not in out.stderr


def test_script_error_is_one_line_and_exit_2():
    out = subprocess.run([sys.executable, "train.py", "--epoch_sise", "3"], capture_output=True, text=True,
                         cwd=str(DEFAULT_CONFIG.parent))
    assert out.returncode == 2
    assert out.stderr.strip() == "error: unknown option --epoch_sise (did you mean --epoch_size?); run with --help for the list"


def test_moxing_wrapper_is_a_pass_through_without_moxing():
    import importlib.util
    from src.model_utils.moxing_adapter import moxing_wrapper
    assert importlib.util.find_spec("moxing") is None  # the point: it runs without ModelArts' package
    cfg = get_config([])
    calls = []

    @moxing_wrapper(cfg, pre_process=lambda: calls.append("pre"))
    def job(x):
        calls.append(x)
        return x * 2

    assert job(21) == 42 and calls == [21]  # pre_process only runs on ModelArts
    cfg.enable_modelarts = True
    cfg.data_url = "obs://bucket/data"
    with pytest.raises(ModuleNotFoundError, match="moxing"):
        job(1)


def test_device_adapter_reads_launcher_environment(monkeypatch):
    from src.model_utils import device_adapter
    monkeypatch.setenv("RANK_SIZE", "8")
    monkeypatch.setenv("RANK_ID", "3")
    monkeypatch.setenv("DEVICE_ID", "5")
    monkeypatch.delenv("MS_WORKER_NUM", raising=False)
    monkeypatch.delenv("MS_NODE_ID", raising=False)
    assert (device_adapter.get_device_num(), device_adapter.get_rank_id(), device_adapter.get_device_id()) == (8, 3, 5)
    monkeypatch.setenv("MS_WORKER_NUM", "2")
    monkeypatch.setenv("MS_NODE_ID", "1")
    assert (device_adapter.get_device_num(), device_adapter.get_rank_id()) == (2, 1)


def test_cpu_sets_onednn_isa_unless_user_did(monkeypatch):
    from src.model_utils.device import configure_environment
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    configure_environment("Ascend")
    import os
    assert "ONEDNN_MAX_CPU_ISA" not in os.environ
    configure_environment("CPU")
    assert os.environ["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE")
    configure_environment("CPU")
    assert os.environ["ONEDNN_MAX_CPU_ISA"] == "AVX512_CORE"


def test_device_target_auto_resolves_to_cpu_here_and_says_so(caplog):
    import logging
    import mindspore as ms
    from src.model_utils.device import resolve_device_target
    assert get_config([]).device_target == "auto"  # the default
    assert not ms.hal.is_available("Ascend") and not ms.hal.is_available("GPU")  # what this machine is
    with caplog.at_level(logging.INFO, logger="src.model_utils.device"):
        assert resolve_device_target("auto") == "CPU"
    ours = [r.getMessage() for r in caplog.records if r.name == "src.model_utils.device"]
    assert ours == ["device_target auto: CPU (this MindSpore finds no Ascend or GPU backend; "
                    "pass --device_target Ascend or GPU to insist)"]
    assert resolve_device_target("GPU") == "GPU"  # an explicit target is kept


def test_entry_point_without_device_target_runs_on_cpu(tmp_path):
    from conftest import make_image_folder, run_script
    make_image_folder(tmp_path / "d", n_train=0, n_val=2)
    proc = run_script(["eval.py", "--dataset_path", tmp_path / "d", "--num_classes", "2", "--image_size", "32",
                       "--checkpoint_path", tmp_path / "absent.ckpt"])
    # the config resolved and the device was chosen before the checkpoint was looked for
    assert "device_target auto: CPU" in proc.stdout
    assert proc.returncode == 2 and proc.stderr.strip() == f"error: checkpoint not found: {tmp_path / 'absent.ckpt'}"


def test_modelzoo_seed_recipe_resolves_to_the_seed_numbers():
    from src.lr_generator import get_lr, recipe_lr_init, scale_lr
    from src.model_utils.config import ROOT
    cfg = get_config(["--config_path", str(ROOT / "configs" / "modelzoo_seed.yaml")])
    seed = {"device_target": "Ascend", "train_batch_size": 131, "val_batch_size": 125, "epoch_size": 360,
            "lr_restart_epoch": 300, "warmup_epochs": 5, "lr_init": 0.2, "momentum": 0.9, "weight_decay": 1e-4,
            "label_smoothing": 0.1, "amp_level": "O3", "cutout": True, "cutout_length": 56, "color_jitter": 0.4,
            "keep_checkpoint_max": 80, "save_ckpt_path": "./", "random_seed": 1, "work_nums": 8}
    assert {k: cfg[k] for k in seed} == seed
    # 8 devices x 131 = 1048: the seed's lr exactly; 300 + 60 epochs, the second phase from lr_init / 10
    lr, _ = scale_lr(cfg.lr_init, cfg.train_batch_size * 8, cfg.lr_scale, cfg.lr_base_batch, recipe_lr_init())
    assert lr == pytest.approx(0.2)
    steps = 1223  # 1,281,167 ImageNet images / 1048 per step, as in the seed's checkpoint names (..._1223.ckpt)
    schedule = get_lr(lr, cfg.epoch_size, steps, cfg.warmup_epochs, cfg.lr_end, cfg.lr_restart_epoch)
    assert len(schedule) == 360 * steps
    assert schedule[5 * steps] == pytest.approx(0.2, rel=1e-6)  # end of warm-up: the peak
    assert schedule[300 * steps - 1] < 1e-5 and schedule[300 * steps] == pytest.approx(0.02, rel=1e-6)
    assert schedule[-1] < 1e-6
