"""Per-step learning-rate schedules: linear warm-up, cosine decay, optional second cosine phase."""
from __future__ import annotations

import logging
import math
from typing import Optional, Tuple

import numpy as np

from src.errors import UserError

_LOG = logging.getLogger(__name__)
LR_SCALE_RULES = ("auto", "linear", "none")


def recipe_lr_init() -> float:
    """``lr_init`` as written in default_config.yaml: the recipe's rate for ``lr_base_batch`` images."""
    from src.model_utils.config import DEFAULT_CONFIG, load_yaml

    return float(load_yaml(DEFAULT_CONFIG)[0]["lr_init"])


def scale_lr(lr_init: float, global_batch: int, rule: str = "auto", base_batch: int = 1048,
             default_lr: Optional[float] = None) -> Tuple[float, str]:
    """The peak learning rate for this run's global batch, and one log line saying how it was obtained.

    ``linear``: ``lr_init * global_batch / base_batch`` (``lr_init`` is the rate for ``base_batch`` images,
    like timm's ``lr_base`` / ``lr_base_size``).  ``none``: ``lr_init`` as given.  ``auto``: ``linear`` when
    ``lr_init`` is the recipe's own value (``default_lr``, from default_config.yaml), ``none`` when it was set to
    another value (on the command line or in a YAML): a learning rate chosen by hand is taken as meant.
    """
    if rule not in LR_SCALE_RULES:
        raise UserError(f"--lr_scale: {rule!r} is not one of {', '.join(LR_SCALE_RULES)}")
    if base_batch <= 0:
        raise UserError(f"--lr_base_batch: must be > 0, got {base_batch!r}")
    applied = rule
    if rule == "auto":
        applied = "linear" if default_lr is not None and math.isclose(lr_init, default_lr) else "none"
    if applied == "linear":
        lr = lr_init * global_batch / base_batch
        return lr, (f"learning rate {lr:.6g} = lr_init {lr_init:g} x global batch {global_batch} / lr_base_batch "
                    f"{base_batch} (lr_scale {rule}: scaled linearly; --lr_scale none uses lr_init as given)")
    why = "lr_init set explicitly, " if rule == "auto" else ""
    return lr_init, (f"learning rate {lr_init:g} as given, for global batch {global_batch} (lr_scale {rule}: {why}"
                     f"not scaled; --lr_scale linear scales it from lr_base_batch {base_batch})")


def get_lr(lr_init: float, total_epochs: int, steps_per_epoch: int, warmup_epochs: float = 0,
           lr_end: float = 0.0, restart_epoch: int = 0) -> np.ndarray:
    """Learning rate of every training step (float32, length total_epochs * steps_per_epoch).

    Steps in the first ``warmup_epochs`` rise linearly to ``lr_init``; then a cosine decays to
    ``lr_end``.  With ``restart_epoch`` > 0 the first cosine ends at that epoch and a second
    one runs from ``lr_init / 10`` down to ``lr_end`` (the seed's two-phase schedule, whose
    code restarted from the *last* rate / 10 instead, so its last 60 epochs barely trained).
    """
    if steps_per_epoch < 1 or total_epochs < 1:
        raise UserError(f"schedule needs at least one epoch and one step, got {total_epochs} epochs x {steps_per_epoch} steps")
    if restart_epoch and not warmup_epochs < restart_epoch < total_epochs:
        raise UserError(f"--lr_restart_epoch {restart_epoch} must lie between warmup_epochs ({warmup_epochs}) "
                        f"and epoch_size ({total_epochs}), or be 0")
    if warmup_epochs >= total_epochs:
        # warned, not refused: short smoke runs with the default warm-up are common and harmless
        _LOG.warning("warmup_epochs %s >= epoch_size %s: the learning rate only rises and never decays; "
                     "pass --warmup_epochs below --epoch_size (e.g. 0 for a short run)", warmup_epochs, total_epochs)
    total = total_epochs * steps_per_epoch
    warmup = min(int(round(warmup_epochs * steps_per_epoch)), total)
    first_end = restart_epoch * steps_per_epoch if restart_epoch else total
    lrs = np.empty(total, dtype=np.float64)
    for i in range(total):
        if i < warmup:
            lrs[i] = lr_init * (i + 1) / warmup
        elif i < first_end:
            progress = (i - warmup) / max(1, first_end - warmup)
            lrs[i] = lr_end + 0.5 * (lr_init - lr_end) * (1 + math.cos(math.pi * progress))
        else:
            progress = (i - first_end) / max(1, total - first_end)
            lrs[i] = lr_end + 0.5 * (lr_init / 10 - lr_end) * (1 + math.cos(math.pi * progress))
    return lrs.astype(np.float32)
