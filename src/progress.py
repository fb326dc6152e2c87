"""Progress of a training loop: the step line (loss, lr, img/s, ETA) and its metrics record, elapsed times."""
from __future__ import annotations

import logging
import time
from typing import Any, Dict

_LOG = logging.getLogger(__name__)


def format_seconds(seconds: float) -> str:
    """``H:MM:SS``."""
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def log_due(step: int, steps_per_epoch: int, interval: int) -> bool:
    """Whether step ``step`` (0-based) of an epoch is reported: every ``interval`` steps and the epoch's last."""
    return (step + 1) % interval == 0 or step + 1 == steps_per_epoch


class Progress:
    """Throughput over the steps since the last report, ETA from the mean time of the timed steps.

    The caller leaves a run's first step (the graph compile) untimed, so it does not inflate the ETA.
    """

    def __init__(self, batch_global: int, total_steps: int, epochs: int, steps_per_epoch: int):
        self.batch_global, self.total_steps = batch_global, total_steps
        self.epochs, self.steps_per_epoch = epochs, steps_per_epoch
        self.timed_steps, self.timed_seconds = 0, 0.0
        self.new_window()

    def new_window(self) -> None:
        """Start counting throughput afresh (at the start of an epoch, and after each report)."""
        self.window_start, self.window_steps = time.time(), 0

    def step_done(self, seconds: float, timed: bool = True) -> None:
        self.window_steps += 1
        if timed:
            self.timed_steps += 1
            self.timed_seconds += seconds

    def report(self, epoch: int, step: int, global_step: int, loss: float, lr: float,
               phase: str = "") -> Dict[str, Any]:
        """Log the step line and return its metrics record (``epoch``, ``step`` and ``global_step`` 1-based)."""
        elapsed = time.time() - self.window_start
        per_step = self.timed_seconds / self.timed_steps if self.timed_steps else elapsed / max(self.window_steps, 1)
        record = {"type": "step", "epoch": epoch, "step": step, "global_step": global_step, "loss": loss, "lr": lr,
                  "img_s": self.batch_global * self.window_steps / max(elapsed, 1e-9),
                  "eta_s": per_step * (self.total_steps - global_step)}
        _LOG.info("epoch %d/%d%s step %d/%d loss %.4f lr %.6f %.1f img/s eta %s", epoch, self.epochs,
                  f" ({phase})" if phase else "", step, self.steps_per_epoch, loss, lr, record["img_s"],
                  format_seconds(record["eta_s"]))
        self.new_window()
        return record
