"""The training loop: data, network, recipe, evaluation, checkpoints, resume, interruption.

Its parts live beside it: the run folder (src/run_dir.py), metrics.jsonl (src/metrics.py), the EMA of the
weights (src/ema.py), the step line and ETA (src/progress.py) and the train step itself (src/train_step.py).
"""
from __future__ import annotations

import json
import logging
import logging.handlers
import math
import os
import re
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import yaml

import mindspore as ms

from src.checkpoint import load_weights, read_checkpoint, save_checkpoint_atomic
from src.dataset import (bad_image_message, check_images, create_dataset, fill_to, scan_training_set, shard,
                         val_folder, val_split)
from src.description import checkpoint_entry, describe
from src.ema import EMA
from src.inference import inference_form
from src.errors import UserError
from src.evaluate import evaluate, format_result
from src.lr_generator import get_lr, recipe_lr_init, scale_lr
from src.metrics import MetricsLog, weights_digest
from src.model_utils.device import init_context
from src.progress import Progress, format_seconds, log_due
from src.proxylessnas_mobile import create_model
from src.run_dir import arch_tag, open_run_dir, remake_run_dir, resolve_run_dir, write_run_config
from src.signals import StopRequest
from src.train_step import build_train_step

_LOG = logging.getLogger(__name__)


class TrainingStopped(UserError):
    """Training cannot go on (non-finite loss); the message names the step and the learning rate."""


# Options that shape the weights, the data stream or the lr schedule: a resume that changes one of them is not
# the continuation of the run it resumes, so it needs --resume_allow_changes true (and is recorded).
RESUME_FIXED_KEYS = ("arch", "num_classes", "image_size", "train_batch_size", "epoch_size", "warmup_epochs",
                     "lr_init", "lr_end", "lr_restart_epoch", "momentum", "nesterov", "weight_decay",
                     "label_smoothing", "loss_scale", "amp_level", "ema_decay", "dropout_rate", "random_seed",
                     "steps_per_epoch", "min_crop_scale", "random_flip", "color_jitter", "auto_augment", "cutout",
                     "cutout_length")


# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------
class Trainer:
    """One training run, configured from the resolved config."""

    def __init__(self, config):
        self.config = config
        self.info = init_context(config)
        ms.set_seed(config.random_seed)
        ms.dataset.config.set_seed(config.random_seed)
        self.run_dir = resolve_run_dir(config, self.info)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.lock = None  # taken when the folder is opened (_open_run_dir)
        self.resume_changes = self._check_resume_options() if config.resume and self.info.is_main else {}
        self.metrics = MetricsLog(self.run_dir / "metrics.jsonl", self.info.is_main, self._recreate_run_dir)
        self.log_handler = None
        # the log is kept in memory until the run folder exists (_open_run_dir), then written to train.log
        self.early_log = logging.handlers.MemoryHandler(capacity=1 << 20, flushLevel=logging.CRITICAL + 1)
        logging.getLogger().addHandler(self.early_log)
        self.stop = StopRequest()  # SIGINT/SIGTERM: stop after the current step
        self._wakeup = None
        self.best_top1 = -1.0
        # epoch checkpoints already in the folder (a resumed run) count towards keep_checkpoint_max
        pattern = re.compile(rf"{re.escape(arch_tag(config.arch))}-(\d+)_\d+\.ckpt$")
        found = [(int(m.group(1)), p) for p in self.ckpt_dir.glob("*.ckpt") if (m := pattern.match(p.name))]
        self.saved: List[Path] = [p for _, p in sorted(found)]
        self.last_good: Optional[Path] = None  # the newest epoch checkpoint of this run
        self.overflow_skipped = 0

    # -- run folder -----------------------------------------------------------
    def _check_resume_options(self) -> Dict[str, List[Any]]:
        """Options that differ from the resumed run's config.yaml: refused, or with permission recorded."""
        c = self.config
        original = Path(c.resume).resolve().parent.parent / "config.yaml"
        if not original.is_file():
            _LOG.warning("no config.yaml beside %s: the options of the resumed run cannot be compared", c.resume)
            return {}
        try:
            before = yaml.safe_load(original.read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise UserError(f"cannot read {original} ({err}): the resumed run's options are unknown") from None
        changes = {k: [before[k], c[k]] for k in RESUME_FIXED_KEYS if k in before and before[k] != c[k]}
        if changes and not c.resume_allow_changes:
            listed = ", ".join(f"--{k} {old} -> {new}" for k, (old, new) in changes.items())
            raise UserError(f"--resume with other options than the run it continues ({listed}): that is not an exact "
                            f"continuation; pass the run's values (see {original}), or --resume_allow_changes true "
                            "to continue anyway (recorded in the run folder)")
        return changes

    def _record_resume(self, changes: Dict[str, List[Any]]) -> None:
        """Append this resume (and any changed options allowed) to the run's resumes.jsonl."""
        record = {"time": time.strftime("%Y-%m-%d %H:%M:%S"), "resume": str(self.config.resume), "changes": changes}
        with open(self.run_dir / "resumes.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if changes:
            _LOG.warning("resuming with changed options (allowed by --resume_allow_changes, recorded in %s): %s",
                         self.run_dir / "resumes.jsonl", changes)

    def _recreate_run_dir(self) -> None:
        """The run folder was removed while training: make it again (what was in it is gone) or stop."""
        if self.ckpt_dir.is_dir() and self.run_dir.is_dir():
            return
        try:
            self.lock = remake_run_dir(self.run_dir, self.config)
        except (OSError, UserError) as err:
            # keep the trained weights somewhere that exists before stopping
            epoch_num, step_num = self.done
            rescue = (Path(tempfile.gettempdir()) / f"proxylessnas-rescue-{os.getpid()}" /
                      f"{arch_tag(self.config.arch)}-{epoch_num}_{step_num}.ckpt")
            save_checkpoint_atomic(self._state(), str(rescue), append_dict=self._progress_entries(epoch_num, step_num))
            raise UserError(f"the run folder {self.run_dir} was removed during training and cannot be made again "
                            f"({getattr(err, 'strerror', None) or err}): the weights were saved to {rescue}; resume "
                            f"with --resume {rescue} --run_name NEW_NAME") from None
        if self.log_handler is not None:
            self.log_handler.close()  # the next record reopens train.log in the new folder
        _LOG.warning("the run folder %s was removed during training: made it again (its earlier contents are lost; "
                     "the run goes on)", self.run_dir)

    # -- data ---------------------------------------------------------------
    def _data(self) -> None:
        c, info = self.config, self.info
        train_all = scan_training_set(c)
        self.class_names = train_all.classes
        mine = shard(train_all, info.rank, info.group_size, c.random_seed)
        per_rank = len(mine)
        if c.check_images:
            _LOG.info("checking %d training images (decode test)...", per_rank)
            mine = fill_to(check_images(mine, c.skip_bad_images, c.work_nums), per_rank)
        _LOG.info("data shard: rank %d of %d: %d of %d training images", info.rank, info.group_size,
                  len(mine), len(train_all))
        self.shard_samples = mine.samples
        self.steps_per_epoch = len(mine) // c.train_batch_size
        if self.steps_per_epoch == 0:
            raise UserError(f"{len(mine)} training images per device are fewer than --train_batch_size "
                            f"{c.train_batch_size}: lower the batch size")
        if c.steps_per_epoch:
            self.steps_per_epoch = min(self.steps_per_epoch, c.steps_per_epoch)
        self.train_set = create_dataset(mine, c, training=True, batch_size=c.train_batch_size)
        self.val_set = None
        if c.eval_interval and info.is_main:
            val_dir = val_folder(c.dataset_path, c.val_dir, c.train_dir)
            if not val_dir.is_dir():
                _LOG.info("no validation folder %s: evaluation during training is off", val_dir)
                return
            val = val_split(c, train_all.classes)
            if c.check_images:
                val = check_images(val, c.skip_bad_images, c.work_nums)
            self.val_set = create_dataset(val, c, training=False, batch_size=c.val_batch_size)
            _LOG.info("validation: %d images", len(val))

    # -- model ----------------------------------------------------------------
    def _model(self) -> None:
        c = self.config
        net = create_model(c.arch, c.num_classes, dropout_rate=c.dropout_rate)
        if c.pretrained and not c.resume:
            load_weights(net, c.pretrained, allow_new_classifier=True)
            _LOG.info("weights from %s", c.pretrained)
        lr_init, lr_note = scale_lr(c.lr_init, self.batch_global, c.lr_scale, c.lr_base_batch, recipe_lr_init())
        _LOG.info(lr_note)
        self.lr = get_lr(lr_init, c.epoch_size, self.steps_per_epoch, c.warmup_epochs, c.lr_end, c.lr_restart_epoch)
        step = build_train_step(c, self.lr, net)
        self.net, self.optimizer, self.train_net = step.net, step.optimizer, step.train_net
        self.amp_level, self.native_depthwise = step.amp_level, step.native_depthwise
        self.ema = EMA(self.net) if c.ema_decay > 0 else None
        # the EMA weights are copied in at every evaluation: BatchNorm stays unfolded
        self.ema_net = (inference_form(create_model(c.arch, c.num_classes), False, c.depthwise_kernel,
                                       c.device_target) if self.ema is not None else None)
        self.global_step = 0
        self.start_epoch, self.start_step = 0, 0
        self.done = (0, 0)  # (epoch, step) of the state the weights are in
        if c.resume:
            self._resume(c.resume)
            self.done = (self.start_epoch, self.start_step)
        _LOG.info("%s: %d parameters, amp %s, depthwise convs %s, %d steps/epoch x %d epochs, global batch %d",
                  arch_tag(c.arch), sum(int(np.prod(p.shape)) for p in self.net.trainable_params()),
                  self.amp_level, "native" if self.native_depthwise else "builtin", self.steps_per_epoch,
                  c.epoch_size, self.batch_global)

    @property
    def batch_global(self) -> int:
        """Images per step over all devices."""
        return self.config.train_batch_size * self.info.group_size

    def _open_run_dir(self) -> None:
        """Create the run folder once the inputs are valid: lock, train.log (with the lines so far), config, shards."""
        c = self.config
        self.lock, self.log_handler, moved = open_run_dir(self.run_dir, self.info, c.overwrite, bool(c.resume),
                                                          "train.log", early=self.early_log)
        if moved is not None:
            self.saved = []  # the earlier run's checkpoints went with it
        shard_dir = self.run_dir / "shards"
        shard_dir.mkdir(parents=True, exist_ok=True)
        # bytes: a file name need not be valid UTF-8 (os keeps such bytes as surrogates)
        (shard_dir / f"rank_{self.info.rank}.txt").write_bytes(
            b"".join(os.fsencode(p) + b"\n" for p, _ in self.shard_samples))
        if not self.info.is_main:
            return
        config_file = self.run_dir / "config.yaml"
        if c.resume:
            self._record_resume(self.resume_changes)
        if c.resume and config_file.is_file():
            _LOG.info("%s kept as the run's original options (resumes are recorded in resumes.jsonl)", config_file)
        else:
            write_run_config(self.run_dir, c)
        _LOG.info("run folder: %s", self.run_dir)

    def _state(self) -> List[Dict[str, Any]]:
        """Everything a resume needs: weights, BN statistics, momenta, step, loss scale, EMA."""
        params = list(self.net.get_parameters()) + list(self.optimizer.moments) + [self.optimizer.global_step]
        scale = getattr(self.train_net, "scale_sense", None)
        if isinstance(scale, ms.Parameter):
            params.append(scale)
        if self.ema is not None:
            params += list(self.ema.shadow)
        return [{"name": p.name, "data": p} for p in params]

    def _resume(self, path: str) -> None:
        entries = read_checkpoint(path)
        if not any(k.startswith("moments.") for k in entries) or "epoch_num" not in entries:
            raise UserError(f"checkpoint {path} has no optimizer state (written by another tool, or weights only): "
                            f"it cannot be resumed exactly; use --pretrained {path} to start from its weights")
        saved_steps = int(entries["steps_per_epoch"].asnumpy())
        if saved_steps != self.steps_per_epoch:
            raise UserError(f"checkpoint {path} was trained with {saved_steps} steps per epoch, this run has "
                            f"{self.steps_per_epoch}: resume with the same dataset, batch size and device count")
        load_weights(self.net, path)
        own = {p.name: p for p in list(self.optimizer.moments) + [self.optimizer.global_step]}
        scale = getattr(self.train_net, "scale_sense", None)
        if isinstance(scale, ms.Parameter):
            own[scale.name] = scale
        if self.ema is not None:
            own.update({p.name: p for p in self.ema.shadow})
        for name, param in own.items():
            if name in entries:
                param.set_data(ms.Tensor(entries[name].asnumpy(), param.dtype))
            elif not name.startswith("ema."):
                raise UserError(f"checkpoint {path} lacks {name}: it cannot be resumed exactly")
        self.start_epoch = int(entries["epoch_num"].asnumpy())
        self.start_step = int(entries["step_num"].asnumpy())
        self.global_step = int(self.optimizer.global_step.asnumpy().reshape(-1)[0])
        if "best_top1" in entries:
            self.best_top1 = float(entries["best_top1"].asnumpy())
        expected = self.start_epoch * self.steps_per_epoch + self.start_step
        if self.global_step != expected:
            raise UserError(f"checkpoint {path} is inconsistent: global step {self.global_step} but epoch "
                            f"{self.start_epoch} step {self.start_step} means {expected}")
        if self.start_epoch >= self.config.epoch_size:
            raise UserError(f"nothing left to train: checkpoint {path} ends epoch {self.start_epoch} and --epoch_size "
                            f"is {self.config.epoch_size}; to train longer pass a larger --epoch_size together with "
                            "--resume_allow_changes true")
        if self.info.is_main:
            self._set_aside_later_checkpoints()
        _LOG.info("resumed from %s at epoch %d step %d (global step %d, lr %.6g)", path, self.start_epoch + 1,
                  self.start_step, self.global_step, self.lr[min(self.global_step, len(self.lr) - 1)])

    def _set_aside_later_checkpoints(self) -> None:
        """Epoch checkpoints after the resume point belong to the abandoned continuation: moved, not overwritten."""
        later = [p for p in self.saved if int(re.search(r"-(\d+)_\d+\.ckpt$", p.name).group(1)) > self.start_epoch]
        if not later:
            return
        aside = self.ckpt_dir / f"superseded-{time.strftime('%Y%m%d-%H%M%S')}"
        aside.mkdir(exist_ok=True)
        for old in later:
            for f in (old, old.with_name(old.stem + "-ema.ckpt")):
                if f.exists():
                    os.rename(f, aside / f.name)
            self.saved.remove(old)
        _LOG.warning("resuming at epoch %d: moved %d later checkpoint(s) of this run to %s", self.start_epoch,
                     len(later), aside)

    # -- checkpoints ----------------------------------------------------------
    def _description(self) -> Dict[str, str]:
        """The checkpoint entry that says what the network is (src/description.py)."""
        c = self.config
        return checkpoint_entry(describe(c.arch, c.num_classes, c.image_size, c.crop_pct, self.class_names))

    def _progress_entries(self, epoch_num: int, step_num: int) -> Dict[str, Any]:
        """What a checkpoint stores beside the state: progress for resume, and the network's description."""
        return {"epoch_num": epoch_num, "step_num": step_num, "steps_per_epoch": self.steps_per_epoch,
                "best_top1": float(self.best_top1), "num_classes": self.config.num_classes, **self._description()}

    def _save(self, name: str, epoch_num: int, step_num: int, rotate: bool = False) -> Optional[Path]:
        if not self.info.is_main:
            return None
        path = self.ckpt_dir / name
        self.done = (epoch_num, step_num)
        self._recreate_run_dir()
        save_checkpoint_atomic(self._state(), str(path), append_dict=self._progress_entries(epoch_num, step_num))
        if self.ema is not None:
            save_checkpoint_atomic(self.ema.weights(), str(path.with_name(path.stem + "-ema.ckpt")),
                                   append_dict=self._description())
        if rotate:
            if path in self.saved:  # rewritten under the same name: it is the newest now, not the oldest
                self.saved.remove(path)
            self.saved.append(path)
            while len(self.saved) > self.config.keep_checkpoint_max:
                old = self.saved.pop(0)
                for f in (old, old.with_name(old.stem + "-ema.ckpt")):
                    if f.exists():
                        f.unlink()
        return path

    # -- data errors, blocked reads ---------------------------------------------
    def _pipeline_error(self, err: Exception, split: str) -> Exception:
        """A data-pipeline failure as one line naming the image (and the rank), when an image caused it."""
        message = bad_image_message(err)
        if message is None:
            return err
        rank = f" (rank {self.info.rank})" if self.info.group_size > 1 else ""
        return UserError(f"{message}{rank}, while reading the {split} data: fix or remove it, or pass "
                         "--skip_bad_images true to skip undecodable images")

    def _next_batch(self, data, epoch: int, step: int):
        """The next training batch; a bad image becomes one line naming it."""
        self._waiting_since = (time.time(), epoch, step)  # for the watchdog: a read that blocks is not a step
        try:
            return next(data)
        except RuntimeError as err:
            raise self._pipeline_error(err, "training") from None
        finally:
            self._waiting_since = None

    def _start_signal_watchdog(self) -> None:
        """Act on SIGINT/SIGTERM even while the main thread is blocked in a data read.

        Python runs signal handlers only between bytecodes of the main thread, so a read stuck in a
        data worker (a FIFO, a stalled network file system) would delay them for ever. The interpreter's
        C-level handler still writes the signal number to the wakeup fd: a thread waits on it, and when
        the main thread has been waiting for data for a while it saves the state of the last completed
        step and ends the process. The number is the one delivered, so Ctrl-C is told from SIGTERM.
        """
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        previous = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        self._wakeup = (previous, read_fd, write_fd)  # undone by close()
        self._waiting_since = None

        def watch() -> None:
            while True:
                try:
                    got = os.read(read_fd, 1)
                except OSError:
                    got = b""
                if not got:  # close() closed the writing end: the run is over
                    os.close(read_fd)
                    return
                if got[0] not in (signal.SIGINT, signal.SIGTERM):
                    continue
                name = signal.Signals(got[0]).name
                self.stop.name = self.stop.name or name
                time.sleep(2.0)  # give the main thread the chance to stop at the end of its step
                waiting = self._waiting_since
                if waiting is None or time.time() - waiting[0] < 2.0 or not self.info.is_main:
                    continue
                _, epoch, step = waiting
                _LOG.warning("%s received while a data read is blocked: saving the last completed step", name)
                path = self._save(f"{arch_tag(self.config.arch)}-interrupted.ckpt", epoch, step)
                print(f"stopped by {name} at epoch {epoch + 1} step {step} while waiting for data (a data read is "
                      f"blocked); resume with: python train.py --resume {path} (plus the same options as this run)",
                      flush=True)
                logging.shutdown()
                # the blocked data worker would keep the interpreter from exiting
                os._exit(0)

        threading.Thread(target=watch, name="signal-watchdog", daemon=True).start()

    # -- evaluation -------------------------------------------------------------
    def _evaluate(self, epoch: int) -> None:
        try:
            result = evaluate(self.net, self.val_set)
        except RuntimeError as err:
            raise self._pipeline_error(err, "validation") from None
        record = {"type": "eval", "epoch": epoch, **{k: result[k] for k in ("top1", "top5", "loss")}}
        _LOG.info(format_result(f"eval epoch {epoch}", result))
        if self.ema is not None:
            ema_result = evaluate(self.ema.copy_to(self.ema_net), self.val_set)
            record.update({f"ema_{k}": ema_result[k] for k in ("top1", "top5", "loss")})
            _LOG.info(format_result(f"eval epoch {epoch} (EMA weights)", ema_result))
        self.metrics.write(record)
        if result["top1"] > self.best_top1:
            self.best_top1 = result["top1"]
            self._save(f"{arch_tag(self.config.arch)}-best.ckpt", epoch, 0)
            _LOG.info("new best top-1 %.2f%% at epoch %d", 100 * self.best_top1, epoch)

    def close(self) -> None:
        """Leave nothing of the run attached to the process: signal handlers, wakeup fd, log handlers, lock."""
        self.stop.restore()
        if self._wakeup is not None:
            previous, read_fd, write_fd = self._wakeup
            signal.set_wakeup_fd(previous)
            os.close(write_fd)  # the watchdog thread reads end-of-file and returns
            self._wakeup = None
        root = logging.getLogger()
        root.removeHandler(self.early_log)
        if self.log_handler is not None:
            root.removeHandler(self.log_handler)
            self.log_handler.close()
            self.log_handler = None
        if self.lock is not None:
            self.lock.close()
            self.lock = None

    # -- loop -------------------------------------------------------------------
    def run(self) -> int:
        c = self.config
        self._data()
        self._model()
        self._open_run_dir()
        data = self.train_set.repeat().create_tuple_iterator(num_epochs=1)
        self.stop.install()  # after the iterator: the data pipeline installs handlers of its own
        self._start_signal_watchdog()
        progress = Progress(self.batch_global, c.epoch_size * self.steps_per_epoch, c.epoch_size, self.steps_per_epoch)
        run_start = time.time()
        for epoch in range(self.start_epoch, c.epoch_size):
            epoch_start = time.time()
            losses = self._train_epoch(epoch, self.start_step if epoch == self.start_epoch else 0, data, progress)
            if losses is None:
                return 0  # stopped by a signal; the state was saved
            self._end_epoch(epoch, losses, time.time() - epoch_start)
        _LOG.info("final weights sha1: %s", weights_digest(self.net))
        if self.info.is_main:
            self._plot()
            best = f"best top-1 {100 * self.best_top1:.2f}%" if self.best_top1 >= 0 else "no evaluation"
            print(f"training done: {c.epoch_size} epochs in {format_seconds(time.time() - run_start)}, {best}; "
                  f"checkpoints in {self.ckpt_dir}")
        return 0

    def _train_epoch(self, epoch: int, first: int, data, progress: Progress) -> Optional[List[float]]:
        """The steps of one epoch from step ``first``: their losses, or None when a signal stopped the run."""
        progress.new_window()
        losses = []
        for step in range(first, self.steps_per_epoch):
            images, labels = self._next_batch(data, epoch, step)
            lr = float(self.lr[self.global_step])
            losses.append(self._train_step(images, labels, epoch, step, lr, progress))
            if log_due(step, self.steps_per_epoch, self.config.log_interval):
                self.metrics.write(progress.report(epoch + 1, step + 1, self.global_step, losses[-1], lr))
            if self.stop.name:
                path = self._save(f"{arch_tag(self.config.arch)}-interrupted.ckpt", *self.done)
                print(f"stopped by {self.stop.name} at epoch {epoch + 1} step {step + 1}; resume with: "
                      f"python train.py --resume {path} (plus the same options as this run)")
                return None
        return losses

    def _train_step(self, images, labels, epoch: int, step: int, lr: float, progress: Progress) -> float:
        """One optimiser step (and EMA update); a non-finite loss stops the run, a loss-scale overflow is counted."""
        start = time.time()
        out = self.train_net(images, labels)
        loss_t, overflow = (out[0], bool(out[1].asnumpy())) if isinstance(out, tuple) else (out, False)
        loss = float(loss_t.asnumpy())
        if self.ema is not None:
            self.ema.update(self.config.ema_decay, self.global_step)
        self.global_step += 1
        self.done = (epoch + 1, 0) if step + 1 == self.steps_per_epoch else (epoch, step + 1)
        if overflow:
            self.overflow_skipped += 1
            _LOG.warning("loss scale overflow at epoch %d step %d: update skipped (%d so far)", epoch + 1, step + 1,
                         self.overflow_skipped)
        elif not math.isfinite(loss):
            where = f"epoch {epoch + 1} step {step + 1} (global step {self.global_step}, lr {lr:.6g})"
            keep = f"the last good checkpoint is {self.last_good}" if self.last_good else "no checkpoint was written yet"
            raise TrainingStopped(f"loss became {loss} at {where}: training stopped; {keep}. "
                                  "Lower --lr_init or check the data")
        seconds = time.time() - start
        first_of_run = self.global_step <= 1 + self.start_epoch * self.steps_per_epoch + self.start_step
        if first_of_run:
            _LOG.info("first step (graph compile included): %.1f s", seconds)
            self.stop.install()  # the compiled runtime may have replaced them
        progress.step_done(seconds, timed=not first_of_run)
        return loss

    def _end_epoch(self, epoch: int, losses: List[float], seconds: float) -> None:
        """Epoch record, evaluation and checkpoint after the last step of epoch ``epoch`` (0-based)."""
        c = self.config
        mean_loss = float(np.mean(losses)) if losses else float("nan")
        _LOG.info("epoch %d/%d done: mean loss %.4f, %s, %.1f img/s", epoch + 1, c.epoch_size, mean_loss,
                  format_seconds(seconds), self.batch_global * len(losses) / max(seconds, 1e-9))
        self.metrics.write({"type": "epoch", "epoch": epoch + 1, "loss": mean_loss, "seconds": seconds,
                            "lr": float(self.lr[self.global_step - 1]), "overflow_skipped": self.overflow_skipped})
        last_epoch = epoch + 1 == c.epoch_size
        if self.val_set is not None and ((epoch + 1) % c.eval_interval == 0 or last_epoch):
            try:
                self._evaluate(epoch + 1)
            except UserError as err:
                # the epoch's training is done: keep it before stopping
                saved = self._save_epoch(epoch + 1)
                raise UserError(f"{err} (the checkpoint of epoch {epoch + 1} was saved: {saved})") from None
        if (epoch + 1) % c.save_checkpoint_epochs == 0 or last_epoch:
            self.last_good = self._save_epoch(epoch + 1) or self.last_good

    def _save_epoch(self, epochs_done: int) -> Optional[Path]:
        """The checkpoint after ``epochs_done`` epochs (kept up to keep_checkpoint_max of them)."""
        name = f"{arch_tag(self.config.arch)}-{epochs_done}_{self.steps_per_epoch}.ckpt"
        return self._save(name, epochs_done, 0, rotate=True)

    def _plot(self) -> None:
        try:
            from src.plotting import plot_metrics
            plot_metrics(self.run_dir / "metrics.jsonl", self.run_dir / "metrics.png")
        except ImportError:
            _LOG.info("matplotlib not installed: no metrics.png (pip install matplotlib)")


def train(config) -> int:
    """train.py: run one training job from the resolved config."""
    trainer = Trainer(config)
    try:
        return trainer.run()
    finally:
        trainer.close()

