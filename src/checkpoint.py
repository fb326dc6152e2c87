"""Checkpoint reading, strict weight loading and atomic writing."""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

import numpy as np
import mindspore as ms
from mindspore import nn

from src.errors import UserError

_LOG = logging.getLogger(__name__)

# Prefixes that wrappers (WithLossCell, TrainOneStepCell, EMA copies) put before network names.
_WRAPPER_PREFIXES = ("network._backbone.", "_backbone.", "network.", "backbone.", "net.")
# Progress that train.py stores beside the weights (see src/trainer.py); "description" (src/description.py)
# is what the network is.
TRAIN_STATE_KEYS = ("epoch_num", "step_num", "steps_per_epoch", "best_top1", "num_classes")
# What a training cell saves besides the weights (nn.TrainOneStepCell / TrainOneStepWithLossScaleCell with
# nn.Momentum or nn.SGD, Model.train + ModelCheckpoint, and this project's trainer): optimizer hyper-parameters
# and slots, loss scaling, progress.  Recognised and skipped for weights loading; anything else is refused.
_STATE_KEYS = frozenset(("momentum", "learning_rate", "global_step", "weight_decay", "dampening", "loss_scale",
                         "scale_sense", "current_iterator_step", "last_overflow_iterator_step",
                         "beta1_power", "beta2_power", "description") + TRAIN_STATE_KEYS)
# Per-parameter optimizer slots (Momentum: moments, SGD: accum/stat, Adam: moment1/moment2), per-group learning
# rates, and this project's EMA copy.
_STATE_PREFIXES = ("moments.", "accum.", "stat.", "moment1.", "moment2.", "vhat.", "learning_rate_group_",
                   "ema.")
CLASSIFIER = ("output.weight", "output.bias")


def read_checkpoint(path: str) -> Dict[str, ms.Parameter]:
    """All entries of a checkpoint file; a missing or unreadable file is a UserError naming it."""
    p = Path(path)
    if not str(path):
        raise UserError("no checkpoint given: pass a .ckpt file")
    if p.is_dir():
        raise UserError(f"checkpoint {p} is a folder, not a file: pass a .ckpt file inside it")
    if not p.is_file():
        raise UserError(f"checkpoint not found: {p}")
    if p.stat().st_size == 0:
        raise UserError(f"checkpoint {p} is empty (0 bytes): it was not written completely; use an earlier one")
    try:
        return ms.load_checkpoint(str(p))
    except Exception as err:  # MindSpore raises ValueError/RuntimeError with long texts for bad files
        from src.files import describe_content

        content = describe_content(p)
        if content:
            hint = "convert it with tools/convert_weights.py" if "PyTorch" in content else "pass a .ckpt file"
            raise UserError(f"checkpoint {p} is not a MindSpore checkpoint: it holds {content}; {hint}") from None
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"checkpoint {p} cannot be read (truncated or not a MindSpore checkpoint): {first}") from None


def is_training_state(name: str) -> bool:
    """True for checkpoint entries that are optimizer or training state, not network weights."""
    return name in _STATE_KEYS or name.startswith(_STATE_PREFIXES)


def weights_of(entries: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    """The network weights among checkpoint entries, with wrapper prefixes removed.

    ``prefix`` selects another copy stored in the same file (``ema.`` for EMA weights).
    """
    out = {}
    for name, value in entries.items():
        if prefix:
            if not name.startswith(prefix):
                continue
            name = name[len(prefix):]
        elif is_training_state(name):
            continue
        for wrapper in _WRAPPER_PREFIXES:
            if name.startswith(wrapper):
                name = name[len(wrapper):]
                break
        out[name] = value
    return out


def _sample(names: Iterable[str], n: int = 4) -> str:
    names = sorted(names)
    more = f" and {len(names) - n} more" if len(names) > n else ""
    return ", ".join(names[:n]) + more


def _arch_advice(weights: Dict[str, Any]) -> str:
    """Which --arch a checkpoint that does not fit was saved for, found by its shapes."""
    from src.arch import archs_fitting

    fits = archs_fitting({k: tuple(v.shape) for k, v in weights.items()})
    if fits:
        return f"it was saved for another --arch ({' or '.join(fits)}): pass --arch {fits[0]}"
    return ("was it saved for another --arch (or a network .config)? "
            "Convert PyTorch weights with tools/convert_weights.py")


def load_weights(net: nn.Cell, path: str, allow_new_classifier: bool = False, prefix: str = "",
                 entries: Optional[Dict[str, Any]] = None) -> None:
    """Load a checkpoint's weights into ``net`` strictly (every parameter filled, shapes equal).

    With ``allow_new_classifier`` a classifier of another size is left at its fresh
    initialisation (fine-tuning to a new ``num_classes``); otherwise it is an error. ``entries``: the file's
    contents when the caller has read them already (:func:`read_checkpoint`), so it is not read again.
    """
    if entries is None:
        entries = read_checkpoint(path)
    weights = weights_of(entries, prefix)
    own = {p.name: p for p in net.get_parameters()}
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    if missing or unexpected:
        raise UserError(
            f"checkpoint {path} does not fit this network ({len(missing)} parameters missing"
            f"{': ' + _sample(missing) if missing else ''}; {len(unexpected)} unexpected"
            f"{': ' + _sample(unexpected) if unexpected else ''}): {_arch_advice(weights)}")
    head_shape = tuple(weights["output.weight"].shape)
    if head_shape[0] != own["output.weight"].shape[0]:  # other in_features: another --arch, below
        if not allow_new_classifier:
            raise UserError(f"checkpoint {path} has a classifier for {head_shape[0]} classes but the network has "
                            f"{own['output.weight'].shape[0]}: pass --num_classes {head_shape[0]}")
        _LOG.info("classifier re-initialised: checkpoint has %d classes, this run %d",
                  head_shape[0], own["output.weight"].shape[0])
        weights = {k: v for k, v in weights.items() if k not in CLASSIFIER}
    bad_shapes = [f"{k} {tuple(weights[k].shape)} vs {tuple(own[k].shape)}" for k in weights
                  if tuple(weights[k].shape) != tuple(own[k].shape)]
    if bad_shapes:
        raise UserError(f"checkpoint {path} has other shapes than this network ({_sample(bad_shapes, 3)}): "
                        f"{_arch_advice(weights)}")
    for name, value in weights.items():
        own[name].set_data(ms.Tensor(value.asnumpy() if hasattr(value, "asnumpy") else np.asarray(value),
                                     own[name].dtype))


def save_checkpoint_atomic(params: Any, path: str, append_dict: Optional[Dict[str, Any]] = None) -> str:
    """Write a checkpoint under a temporary name, then rename it: a crash never leaves half a file at ``path``."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp{os.getpid()}")
    need = _checkpoint_bytes(params, append_dict)
    free = shutil.disk_usage(final.parent).free
    if need > free:
        raise UserError(f"cannot save checkpoint {final}: it needs about {need / 2**20:.1f} MiB but "
                        f"{final.parent} has {free / 2**20:.1f} MiB free; free some space (earlier checkpoints "
                        "are kept)")
    try:
        ms.save_checkpoint(params, str(tmp), append_dict=append_dict)
        # MindSpore appends .ckpt to names that lack it
        written = tmp if tmp.exists() else tmp.with_name(tmp.name + ".ckpt")
        os.replace(written, final)
    except OSError as err:
        raise UserError(f"cannot save checkpoint {final} ({err.strerror or err}): free space on, or fix the "
                        f"permissions of, {final.parent} (earlier checkpoints are kept)") from None
    finally:
        # MindSpore writes <name>.tmp first (and appends .ckpt to names that lack it): remove whatever is left
        for leftover in final.parent.glob(f"{tmp.name}*"):
            try:
                leftover.unlink()
            except OSError:
                pass
    return str(final)


def _checkpoint_bytes(params: Any, append_dict: Optional[Dict[str, Any]]) -> int:
    """A lower bound of a checkpoint's size: the tensors' bytes (names and protobuf framing come on top)."""
    if isinstance(params, nn.Cell):
        params = params_list(params)
    total = 0
    for item in params:
        data = item["data"] if isinstance(item, dict) else item
        nbytes = getattr(data, "nbytes", None)
        total += int(nbytes) if nbytes is not None else np.asarray(data).nbytes
    return total + 64 * len(append_dict or {})


def params_list(net: nn.Cell, names: Optional[List[str]] = None) -> List[Dict[str, Any]]:
    """A network's parameters as the list form ``ms.save_checkpoint`` accepts."""
    return [{"name": p.name if names is None else names[i], "data": p}
            for i, p in enumerate(net.get_parameters())]
