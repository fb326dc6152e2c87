"""The search loop behind search.py: warm-up (weights only), joint epochs (weights + architecture), outputs.

Run folder ``SAVE_CKPT_PATH/RUN_NAME/``: ``net.config`` (the argmax network, official JSON) and
``init.ckpt`` (its weights from the supernet), rewritten after every epoch; ``metrics.jsonl`` (steps and
epochs), ``arch.jsonl`` (probabilities per epoch), ``search.png``, ``search.log``, ``config.yaml`` and
``checkpoints/search-last.ckpt`` (everything a resume needs).

Every random draw of an epoch (path sampling, data order, augmentation) is seeded from (seed, epoch), so a
run resumed from an epoch checkpoint continues exactly, and all ranks of a data-parallel run sample the
same paths. SIGINT/SIGTERM stop the search after the current step (on every rank at the same step) with a
checkpoint that also holds the sampler's random state and the step reached; a resume from it skips the
batches already used and continues that epoch exactly.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

import mindspore as ms
from mindspore import ops

from src.arch import spec_to_config
from src.checkpoint import read_checkpoint, save_checkpoint_atomic
from src.description import checkpoint_entry, describe
from src.dataset import ImageList, create_dataset, scan_training_set, shard
from src.errors import UserError
from src.loss import CrossEntropySmooth
from src.lr_generator import get_lr
from src.model_utils.device import ParallelInfo, init_context
from src.nas.cost import CostModel, check_target, flops_model, latency_model, softmax_np
from src.nas.optim import ArchAdam, PathSGD
from src.latency import build_command, candidate_names, default_space, parse_candidates
from src.nas.steps import (ArchObjective, Reinforce, arch_step_full_v2, arch_step_two, sample_pairs, sample_paths,
                           weight_step)
from src.nas.supernet import SuperNet
from src.signals import StopRequest
from src.metrics import MetricsLog, weights_digest
from src.native_depthwise import apply_choice
from src.progress import Progress, format_seconds, log_due
from src.run_dir import open_run_dir, resolve_run_dir, write_run_config

_LOG = logging.getLogger(__name__)
CHECKPOINT = "search-last.ckpt"


def split_validation(images: ImageList, per_class: int, max_fraction: float, seed: int) -> Tuple[ImageList, ImageList]:
    """Hold out min(per_class, floor(max_fraction * class size)) images of every class (fixed seed)."""
    rng = np.random.default_rng(seed)
    by_class: Dict[int, List[int]] = {}
    for i, (_, label) in enumerate(images.samples):
        by_class.setdefault(label, []).append(i)
    valid: List[int] = []
    for label in sorted(by_class):
        members = by_class[label]
        count = min(per_class, int(math.floor(max_fraction * len(members))))
        if count < 1:
            raise UserError(f"class {images.classes[label]!r} has {len(members)} training image(s): too few for the "
                            f"validation split (at most {max_fraction:g} of a class is held out, so it needs "
                            f"{math.ceil(1 / max_fraction)}); add images or raise --valid_fraction")
        valid += list(rng.choice(members, size=count, replace=False))
    held = set(valid)
    train = [s for i, s in enumerate(images.samples) if i not in held]
    return (ImageList(train, images.classes, images.root),
            ImageList([images.samples[i] for i in sorted(held)], images.classes, images.root))


def argmax_top1(net: SuperNet, batches) -> float:
    """Top-1 of the argmax network over (images, labels) batches, BN in train mode (batch statistics) as the
    official ``validate`` (``use_train_mode=True``): a supernet's BN running statistics mix every sampled path
    (shared layers) or a handful of steps (an op), so they are not the argmax network's. Like the official
    code, this also moves the argmax path's running statistics towards the validation batches'."""
    net.set_single(net.argmax())
    net.set_train(True)
    correct = total = 0
    for images, labels in batches:
        pred = net(images).argmax(1)
        correct += int((pred == labels).sum().asnumpy())
        total += int(labels.shape[0])
    return correct / max(total, 1)


def entropy(alphas: List[np.ndarray]) -> float:
    """Mean entropy (nats) of the edges' softmax(alpha)."""
    return float(np.mean([-(p * np.log(p)).sum() for p in map(softmax_np, alphas)]))


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


class Search:
    """One architecture search run, configured from the resolved search config."""

    def __init__(self, config):
        c = config
        c.mode = "PYNATIVE"  # each step runs another network (README: why not GRAPH)
        if not c.run_name:
            c.run_name = f"search-{time.strftime('%Y%m%d-%H%M%S')}"
        self.config = c
        self._check_config()
        self.space = default_space(c.image_size, c.width_mult, c.num_classes, parse_candidates(c.conv_candidates))
        self.cost, self.target = self._cost_model()  # a table without the needed keys fails before any output
        self.info: ParallelInfo = init_context(c)
        ms.set_seed(c.random_seed)
        self.run_dir = resolve_run_dir(c, self.info)
        self.metrics = MetricsLog(self.run_dir / "metrics.jsonl", self.info.is_main)
        self.arch_log = MetricsLog(self.run_dir / "arch.jsonl", self.info.is_main)
        self.lock, self.log_handler = None, None  # made with the run folder, once the inputs are valid (_open_run_dir)
        self.reduce = self._reducer()

    # -- setup ------------------------------------------------------------------
    def _check_config(self) -> None:
        c = self.config
        if c.target == "latency":
            check_target("target_latency", c.target_latency)
            if not c.latency_table and (c.latency_loss != "none" or c.arch_algo == "rl"):
                raise UserError("--latency_table is needed for a latency target (measure one with "
                                f"`{build_command(c.image_size, output='TABLE.yaml')}`), or pass --latency_loss none")
        else:
            check_target("target_flops", c.target_flops)

    def _cost_model(self) -> Tuple[Optional[CostModel], float]:
        c = self.config
        if c.target == "flops":
            return flops_model(self.space), float(c.target_flops)
        if not c.latency_table:
            return None, float(c.target_latency)
        return latency_model(self.space, c.latency_table), float(c.target_latency)

    def _reducer(self):
        if self.info.group_size <= 1:
            return lambda t: t
        all_reduce, size = ops.AllReduce(), float(self.info.group_size)
        return lambda t: all_reduce(t) / size

    def _data(self) -> None:
        c, info = self.config, self.info
        everything = scan_training_set(c)
        train, valid = split_validation(everything, c.valid_per_class, c.valid_fraction, c.valid_seed)
        self.train_images = shard(train, info.rank, info.group_size, c.random_seed)
        self.valid_images = shard(valid, info.rank, info.group_size, c.random_seed)
        self.steps_per_epoch = len(self.train_images) // c.train_batch_size
        if self.steps_per_epoch == 0:
            raise UserError(f"{len(self.train_images)} training images per device (after holding out "
                            f"{len(valid)} for validation) are fewer than --train_batch_size {c.train_batch_size}: "
                            "lower the batch size")
        if c.steps_per_epoch:
            self.steps_per_epoch = min(self.steps_per_epoch, c.steps_per_epoch)
        self.valid_batch = min(c.valid_batch_size, len(self.valid_images))
        _LOG.info("data: %d training / %d validation images (held out from train, seed %d), %d classes; "
                  "%d steps per epoch", len(train), len(valid), c.valid_seed, c.num_classes, self.steps_per_epoch)

    def _model(self) -> None:
        c = self.config
        self.net = SuperNet(self.space, seed=c.random_seed, alpha_std=c.alpha_init_std)
        # the project's CPU depthwise kernel (forward and both gradients), as training uses: 2.7x faster steps
        self.native_depthwise = apply_choice(self.net, c.depthwise_kernel, c.device_target)
        self.weight_opt = PathSGD(self.net.weights(), c.momentum, c.weight_decay, c.nesterov)
        self.arch_opt = ArchAdam([e.num_ops for e in self.net.edges], c.arch_lr,
                                 (c.arch_adam_beta1, c.arch_adam_beta2), c.arch_adam_eps, c.arch_weight_decay)
        self.objective = ArchObjective(c.num_classes, self.cost, self.target, c.latency_loss)
        self.rl = Reinforce(c.rl_samples)
        self.loss_fn = CrossEntropySmooth(c.num_classes, c.label_smoothing)
        warm = get_lr(c.warmup_lr, c.warmup_epochs, self.steps_per_epoch, 0, c.lr_end) if c.warmup_epochs else []
        joint = get_lr(c.lr_init, c.epoch_size, self.steps_per_epoch, 0, c.lr_end)
        self.lr = np.concatenate([np.asarray(warm, np.float32), joint])
        self.start_epoch, self.start_step = 0, 0
        self.partial: Optional[Dict[str, Any]] = None  # a mid-epoch resume: sampler state, losses so far
        self.stop = StopRequest()  # SIGINT/SIGTERM: stop after the current step
        if c.resume:
            self._resume(c.resume)

    # -- checkpoints --------------------------------------------------------------
    def _state(self) -> List[Dict[str, Any]]:
        params = list(self.net.get_parameters()) + self.weight_opt.state()
        extra = [{"name": k, "data": ms.Tensor(v)} for k, v in self.arch_opt.state_arrays().items()]
        return [{"name": p.name, "data": p} for p in params] + extra

    def _description(self, spec, kind: str = "network") -> Dict[str, str]:
        """The checkpoint entry saying what ``spec``'s weights are (src/description.py)."""
        c = self.config
        return checkpoint_entry(describe(spec_to_config(spec, c.num_classes), c.num_classes, c.image_size, c.crop_pct,
                                         self.train_images.classes, kind))

    def _save(self, epochs_done: int, partial: Optional[Dict[str, Any]] = None) -> Path:
        """The resume checkpoint after ``epochs_done`` epochs, or inside epoch ``epochs_done`` (0-based) with
        ``partial`` = {"step": steps done in it, "rng": the sampler's state, "losses", "arch": its records}."""
        path = self.run_dir / "checkpoints" / CHECKPOINT
        if not self.info.is_main:
            return path
        extra = {"epoch_num": epochs_done, "steps_per_epoch": self.steps_per_epoch, "num_classes": self.config.num_classes,
                 "rl_baseline": repr(self.rl.baseline), "conv_candidates": self._candidates(),
                 "step_num": partial["step"] if partial else 0}
        if partial:
            extra["partial_epoch"] = json.dumps(partial)
        extra.update(self._description(self.net.spec(self.net.argmax()), "supernet"))
        save_checkpoint_atomic(self._state(), str(path), append_dict=extra)
        return path

    def _candidates(self) -> str:
        return ",".join(candidate_names(self.space.cells[0].candidates))

    def _resume(self, path: str) -> None:
        entries = read_checkpoint(path)
        if "arch_adam.steps" not in entries:
            raise UserError(f"checkpoint {path} is not a search checkpoint (no architecture optimiser state): "
                            "resume from RUN/checkpoints/search-last.ckpt")
        saved = str(entries.get("conv_candidates", ",".join(candidate_names())))
        if saved != self._candidates():
            raise UserError(f"checkpoint {path} was searched with --conv_candidates {saved}, this run has "
                            f"{self._candidates()}: resume with the same candidates")
        if int(entries["steps_per_epoch"].asnumpy()) != self.steps_per_epoch:
            raise UserError(f"checkpoint {path} was written with {int(entries['steps_per_epoch'].asnumpy())} steps per "
                            f"epoch, this run has {self.steps_per_epoch}: resume with the same data, batch size "
                            "and device count")
        own = {p.name: p for p in list(self.net.get_parameters()) + self.weight_opt.state()}
        missing = sorted(set(own) - set(entries))
        if missing:
            raise UserError(f"checkpoint {path} lacks {missing[0]} ({len(missing)} missing): it was written for "
                            "another search space (--image_size, --width_mult, --num_classes, --conv_candidates)")
        for name, param in own.items():
            if tuple(entries[name].shape) != tuple(param.shape):
                raise UserError(f"checkpoint {path}: {name} has shape {tuple(entries[name].shape)}, this run's "
                                f"{tuple(param.shape)}: it was written for another search space (--image_size, "
                                "--width_mult, --num_classes, --conv_candidates)")
            param.set_data(ms.Tensor(entries[name].asnumpy(), param.dtype))
        self.arch_opt.load_state_arrays({k: entries[k].asnumpy() for k in entries if k.startswith("arch_adam.")})
        baseline = entries.get("rl_baseline", "None")
        self.rl.baseline = None if baseline == "None" else float(baseline)
        self.start_epoch = int(entries["epoch_num"].asnumpy())
        self.start_step = int(entries["step_num"].asnumpy()) if "step_num" in entries else 0
        if self.start_step:
            self.partial = json.loads(str(entries["partial_epoch"]))
            _LOG.info("resumed from %s in epoch %d after step %d", path, self.start_epoch + 1, self.start_step)
        else:
            _LOG.info("resumed from %s after epoch %d", path, self.start_epoch)

    def _write_result(self) -> Dict[str, Any]:
        """net.config and init.ckpt of the current argmax network; its predicted cost."""
        choices = self.net.argmax()
        spec = self.net.spec(choices)
        predicted = self.cost.of_choices(choices) if self.cost else None
        if self.info.is_main:
            write_text_atomic(self.run_dir / "net.config", json.dumps(spec_to_config(spec, self.config.num_classes),
                                                                      indent=4) + "\n")
            weights = self.net.chosen_weights(choices)
            save_checkpoint_atomic([{"name": k, "data": v} for k, v in weights.items()],
                                   str(self.run_dir / "init.ckpt"),
                                   append_dict={"num_classes": self.config.num_classes, **self._description(spec)})
        return {"choices": choices, "predicted": predicted}

    # -- evaluation -------------------------------------------------------------
    def _validate(self, epoch: int) -> float:
        """Top-1 of the current argmax network on the validation split (see :func:`argmax_top1`)."""
        data = create_dataset(self.valid_images, self.config, training=False, batch_size=self.config.val_batch_size,
                              shuffle=False, drop_remainder=False)
        return argmax_top1(self.net, data.create_tuple_iterator(num_epochs=1))

    # -- loop -------------------------------------------------------------------------
    def _open_run_dir(self) -> None:
        """Create the run folder (as training does: an earlier run moved aside with --overwrite), lock, search.log."""
        c = self.config
        self.lock, self.log_handler, _ = open_run_dir(self.run_dir, self.info, c.overwrite, bool(c.resume),
                                                      "search.log", records=("metrics.jsonl", "arch.jsonl"))

    def _close_run_dir(self) -> None:
        """Release search.log and the lock (the process may go on: tests call search.main in-process)."""
        if self.log_handler is not None:
            logging.getLogger().removeHandler(self.log_handler)
            self.log_handler.close()
        if self.lock is not None:
            self.lock.close()

    def run(self) -> int:
        """Validate the data and model, open the run folder, search, write the result."""
        self._data()
        self._model()
        self._open_run_dir()
        try:
            return self._run()
        finally:
            self._close_run_dir()

    def _run(self) -> int:
        c = self.config
        if self.info.is_main:
            write_run_config(self.run_dir, c)
        total_epochs = c.warmup_epochs + c.epoch_size
        unit = self.cost.unit if self.cost else ""
        _LOG.info("search space: %d mixed edges, %d architecture parameters; %s target %s %s; %s/%s; %d warm-up + "
                  "%d joint epochs x %d steps; depthwise convs: %s; run folder %s", len(self.net.edges),
                  sum(e.num_ops for e in self.net.edges), c.target, self.target, unit, c.arch_algo, c.binary_mode,
                  c.warmup_epochs, c.epoch_size, self.steps_per_epoch,
                  "native kernel" if self.native_depthwise else "MindSpore Conv2D", self.run_dir)
        progress = Progress(c.train_batch_size * self.info.group_size, total_epochs * self.steps_per_epoch,
                            total_epochs, self.steps_per_epoch)
        run_start = time.time()
        last = total_epochs
        if c.max_epochs_this_run:
            last = min(total_epochs, self.start_epoch + c.max_epochs_this_run)
        self.stop.install()
        try:
            for epoch in range(self.start_epoch, last):
                if not self._epoch(epoch, progress):
                    return 0  # stopped by a signal; the state was saved
        finally:
            self.stop.restore()
        if last < total_epochs:
            _LOG.info("weights sha1: %s; alphas sha1: %s", weights_digest(self.net), _alpha_digest(self.net.alpha_arrays()))
            print(f"stopped after epoch {last} of {total_epochs} (--max_epochs_this_run); continue with: python "
                  f"search.py --resume {self.run_dir / 'checkpoints' / CHECKPOINT} (plus the same options)")
            return 0
        _LOG.info("final weights sha1: %s; alphas sha1: %s", weights_digest(self.net),
                  _alpha_digest(self.net.alpha_arrays()))
        result = self._write_result()
        if self.info.is_main:
            self._plot()
            cost = (f", predicted {result['predicted']:.3f} {unit}" if result["predicted"] is not None else "")
            print(f"search done: {total_epochs} epochs in {format_seconds(time.time() - run_start)}{cost}; "
                  f"train the result with: python train.py --arch {self.run_dir / 'net.config'} "
                  f"--pretrained {self.run_dir / 'init.ckpt'} --num_classes {c.num_classes}")
        return 0

    def _epoch(self, epoch: int, progress: Progress) -> bool:
        """One epoch (or its remainder after a mid-epoch resume); False when a signal stopped it (state saved)."""
        c, total_epochs = self.config, progress.epochs
        joint = epoch >= c.warmup_epochs
        arch_on = joint and epoch > c.warmup_epochs  # none in the first joint epoch (official)
        rng = np.random.default_rng([c.random_seed, epoch])
        ms.dataset.config.set_seed(c.random_seed * 1000 + epoch)
        train = create_dataset(self.train_images, c, training=True, batch_size=c.train_batch_size)
        data = train.create_tuple_iterator(num_epochs=1)
        valid = None
        if arch_on:
            valid_set = create_dataset(self.valid_images, c, training=False, batch_size=self.valid_batch,
                                       shuffle=True, drop_remainder=True)
            valid = valid_set.repeat().create_tuple_iterator(num_epochs=1)
        losses, arch_records = [], []
        first = self.start_step if epoch == self.start_epoch else 0
        if first:
            # continue the interrupted epoch exactly: the sampler's state, and past the batches already used
            rng.bit_generator.state = self.partial["rng"]
            losses, arch_records = list(self.partial["losses"]), list(self.partial["arch"])
            _LOG.info("epoch %d: skipping the %d training batches (and %d validation batches) used before the stop",
                      epoch + 1, first, len(arch_records) if valid is not None else 0)
            for _ in range(first):
                next(data)
            for _ in range(len(arch_records) if valid is not None else 0):
                next(valid)
        epoch_start = time.time()
        progress.new_window()
        phase = "joint" if joint else "warm-up"
        for step in range(first, self.steps_per_epoch):
            images, labels = next(data)
            global_step = epoch * self.steps_per_epoch + step
            lr = float(self.lr[global_step])
            start = time.time()
            choices = sample_paths(rng, self.net.alpha_arrays())
            loss = weight_step(self.net, self.weight_opt, self.loss_fn, images, labels, choices, lr, self.reduce)
            if not math.isfinite(loss):
                raise UserError(f"loss became {loss} at epoch {epoch + 1} step {step + 1} (lr {lr:.6g}): search "
                                "stopped; lower --lr_init/--warmup_lr or check the data")
            losses.append(loss)
            if valid is not None and (step + 1) % c.arch_update_every == 0:
                v_images, v_labels = next(valid)
                arch_records.append(self._arch_step(rng, v_images, v_labels))
            progress.step_done(time.time() - start, timed=global_step > 0)
            if log_due(step, self.steps_per_epoch, c.log_interval):
                self.metrics.write(progress.report(epoch + 1, step + 1, global_step + 1, loss, lr, phase))
            if self._stop_agreed() and step + 1 < self.steps_per_epoch:
                self._announce_stop(f"at epoch {epoch + 1} step {step + 1}", self._save(
                    epoch, {"step": step + 1, "rng": rng.bit_generator.state, "losses": losses, "arch": arch_records}))
                return False
        alphas = self.net.alpha_arrays()
        top1 = self._validate(epoch)
        result = self._write_result()
        record = {"type": "epoch", "epoch": epoch + 1, "phase": phase, "loss": float(np.mean(losses)),
                  "valid_top1": top1, "entropy": entropy(alphas), "seconds": time.time() - epoch_start,
                  "arch_steps": len(arch_records), "predicted_cost": result["predicted"],
                  "expected_cost": self.cost.expected_np(alphas) if self.cost else None,
                  "cost_unit": self.cost.unit if self.cost else None}
        for key in ("arch_loss", "arch_ce", "reward"):
            values = [r[key] for r in arch_records if key in r]
            if values:
                record[key] = float(np.mean(values))
        self.metrics.write(record)
        self.arch_log.write({"epoch": epoch + 1, "argmax": result["choices"],
                             "op_names": [e.cell.op_names for e in self.net.edges],
                             "probs": [softmax_np(a).round(6).tolist() for a in alphas]})
        cost = ""
        if self.cost:
            cost = (f", expected {record['expected_cost']:.3f} {self.cost.unit}, argmax net "
                    f"{record['predicted_cost']:.3f} {self.cost.unit} (target {self.target:g})")
        arch = f", arch loss {record['arch_loss']:.4f}" if "arch_loss" in record else ""
        _LOG.info("epoch %d/%d (%s) done: loss %.4f%s, argmax top-1 %.2f%% on the validation split%s, "
                  "alpha entropy %.4f, %s", epoch + 1, total_epochs, phase, record["loss"], arch, 100 * top1, cost,
                  record["entropy"], format_seconds(record["seconds"]))
        path = self._save(epoch + 1)
        if self._stop_agreed() and epoch + 1 < total_epochs:
            self._announce_stop(f"after epoch {epoch + 1}", path)
            return False
        return True

    def _arch_step(self, rng: np.random.Generator, images, labels) -> Dict[str, float]:
        c = self.config
        if c.arch_algo == "rl":
            return self.rl.step(self.net, self.arch_opt, rng, images, labels, self.cost, self.target, self.reduce)
        alphas = self.net.alpha_arrays()
        if c.binary_mode == "two":
            return arch_step_two(self.net, self.arch_opt, self.objective, images, labels, sample_pairs(rng, alphas),
                                 self.reduce)
        return arch_step_full_v2(self.net, self.arch_opt, self.objective, images, labels, sample_paths(rng, alphas),
                                 self.reduce)

    # -- stopping on a signal --------------------------------------------------------
    def _announce_stop(self, where: str, path: Path) -> None:
        if self.info.is_main:
            print(f"stopped by {self.stop.name or 'a signal on another rank'} {where}; resume with: python search.py "
                  f"--resume {path} (plus the same options as this run)", flush=True)

    def _stop_agreed(self) -> bool:
        """Whether to stop now; with several ranks all stop at the same step when any got a signal (a rank
        leaving alone would leave the others waiting in the next gradient all-reduce)."""
        stop = self.stop.name is not None
        if self.info.group_size <= 1:
            return stop
        flag = self.reduce(ms.Tensor(np.array([1.0 if stop else 0.0], np.float32)))
        return float(flag.asnumpy()[0]) > 0

    def _plot(self) -> None:
        try:
            from src.nas.plot import plot_search
            plot_search(self.run_dir)
        except ImportError:
            _LOG.info("matplotlib not installed: no search.png (pip install matplotlib)")


def _alpha_digest(alphas: List[np.ndarray]) -> str:
    import hashlib

    h = hashlib.sha1()
    for a in alphas:
        h.update(np.asarray(a, np.float32).tobytes())
    return h.hexdigest()


def search(config) -> int:
    """search.py: run one architecture search from the resolved config."""
    return Search(config).run()
