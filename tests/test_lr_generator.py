"""Learning-rate schedule values at the points that matter."""
import math

import numpy as np
import pytest

from src.errors import UserError
from src.lr_generator import get_lr


def test_warmup_then_cosine():
    lr = get_lr(0.2, total_epochs=10, steps_per_epoch=100, warmup_epochs=2, lr_end=0.0)
    assert len(lr) == 1000 and lr.dtype == np.float32
    assert lr[0] == pytest.approx(0.2 / 200)           # first step already moves
    assert lr[199] == pytest.approx(0.2)                # warm-up ends at the peak
    mid = 200 + (1000 - 200) // 2
    assert lr[mid] == pytest.approx(0.1, rel=1e-6)     # cosine midpoint: half the peak
    assert lr[-1] == pytest.approx(0.5 * 0.2 * (1 + math.cos(math.pi * 799 / 800)), rel=1e-5)
    assert lr[-1] < 1e-5
    assert (np.diff(lr[:200]) > 0).all() and (np.diff(lr[200:]) <= 0).all()


def test_lr_end_is_the_floor():
    lr = get_lr(0.1, 4, 10, warmup_epochs=0, lr_end=0.01)
    assert lr[0] == pytest.approx(0.1) and lr.min() >= 0.01 - 1e-7


def test_second_phase_restarts_from_a_tenth_of_lr_init():
    # the seed's schedule: 300 + 60 epochs; its code restarted from the last lr / 10 (~5e-7)
    lr = get_lr(0.2, total_epochs=36, steps_per_epoch=10, warmup_epochs=1, restart_epoch=30)
    assert lr[299] < 1e-3
    assert lr[300] == pytest.approx(0.02)
    assert lr[300 + 30] == pytest.approx(0.01, rel=1e-6)
    assert lr[-1] < 0.0001


@pytest.mark.parametrize("kwargs,match", [
    (dict(lr_init=0.1, total_epochs=10, steps_per_epoch=0), "at least one epoch and one step"),
    (dict(lr_init=0.1, total_epochs=10, steps_per_epoch=5, restart_epoch=12), "--lr_restart_epoch 12"),
])
def test_bad_schedule(kwargs, match):
    with pytest.raises(UserError, match=match):
        get_lr(**kwargs)


def test_lr_scale_rules():
    from src.lr_generator import recipe_lr_init, scale_lr
    assert recipe_lr_init() == pytest.approx(0.2)  # default_config.yaml's lr_init, the seed's rate for 1048 images
    lr, note = scale_lr(0.2, 16, "auto", 1048, default_lr=0.2)  # the default: scaled to the global batch
    assert lr == pytest.approx(0.2 * 16 / 1048) and "lr_scale auto: scaled linearly" in note
    lr, note = scale_lr(0.05, 16, "auto", 1048, default_lr=0.2)  # set by the user: as given
    assert lr == 0.05 and "lr_init set explicitly, not scaled" in note
    assert scale_lr(0.05, 2096, "linear", 1048, default_lr=0.2)[0] == pytest.approx(0.1)
    assert scale_lr(0.2, 16, "none", 1048, default_lr=0.2)[0] == 0.2
    assert scale_lr(0.2, 1048, "auto", 1048, default_lr=0.2)[0] == pytest.approx(0.2)  # the seed's own batch
    with pytest.raises(UserError, match="--lr_base_batch: must be > 0, got 0"):
        scale_lr(0.2, 16, "auto", 0)


def test_demo_config_keeps_its_learning_rate():
    from src.lr_generator import recipe_lr_init, scale_lr
    from src.model_utils.config import ROOT, get_config
    cfg = get_config(["--config_path", str(ROOT / "configs" / "demo_digits.yaml")])
    lr, note = scale_lr(cfg.lr_init, cfg.train_batch_size, cfg.lr_scale, cfg.lr_base_batch, recipe_lr_init())
    assert lr == pytest.approx(0.02) and "as given" in note


def test_warmup_as_long_as_the_run_is_warned(caplog):
    import logging
    with caplog.at_level(logging.WARNING, logger="src.lr_generator"):
        lr = get_lr(0.1, total_epochs=3, steps_per_epoch=4, warmup_epochs=5)
    assert np.all(np.diff(lr) > 0)  # what the warning is about: it only rises
    assert caplog.messages == ["warmup_epochs 5 >= epoch_size 3: the learning rate only rises and never decays; "
                               "pass --warmup_epochs below --epoch_size (e.g. 0 for a short run)"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="src.lr_generator"):
        get_lr(0.1, total_epochs=6, steps_per_epoch=4, warmup_epochs=5)
    assert caplog.messages == []
