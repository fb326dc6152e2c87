"""Per-step learning-rate schedules: linear warm-up, cosine decay, optional second cosine phase."""
from __future__ import annotations

import math

import numpy as np

from src.errors import UserError


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
