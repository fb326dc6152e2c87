"""What a trained network is, stored with its weights: architecture, classes, input size, normalisation.

A description is a small dict (JSON-able)::

    {"format": "proxylessnas-description", "version": 1, "kind": "network",
     "arch": "proxylessnas_mobile" | {official ProxylessNASNets JSON},
     "num_classes": 3, "image_size": 64, "crop_pct": 0.875,
     "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],   # on 0..1 pixels, as src/dataset.py
     "class_names": ["cat", "dog", "fox"]}                            # training class folders, index order

Where it is kept:

- a ``.ckpt``: one string entry ``description`` holding the JSON (``ms.load_checkpoint`` returns it as a str;
  weights loading skips it, see :func:`src.checkpoint.is_training_state`);
- an ``.onnx``: one ``metadata_props`` entry with the key ``proxylessnas.description``;
- a ``.mindir``: the file ``X.mindir.json`` beside ``X.mindir`` (MINDIR has no free-form metadata).

eval.py, export.py, predict.py and preprocess.py take the description's values as their defaults
(:func:`take_defaults`); files without one work as before.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Sequence, Union

from src.errors import UserError

_LOG = logging.getLogger(__name__)

KEY = "description"  # the checkpoint entry
ONNX_KEY = "proxylessnas.description"  # the ONNX metadata_props key
FORMAT = "proxylessnas-description"
VERSION = 1
# Options a description gives defaults for, in the order they are reported.
DEFAULTED = ("arch", "num_classes", "image_size", "crop_pct")

Arch = Union[str, Dict[str, Any]]


def arch_value(arch: Arch, num_classes: int) -> Arch:
    """How a description names a network: a released name as is, anything else as its full official JSON."""
    from src.arch import ARCHS, resolve_arch, spec_to_config

    if isinstance(arch, str) and arch in ARCHS:
        return arch
    return spec_to_config(resolve_arch(arch)[0], num_classes)


def shown(value: Any) -> str:
    """An option's value for a log line; a network given as JSON is 'a custom network (official JSON)'."""
    return "a custom network (official ProxylessNASNets JSON)" if isinstance(value, dict) else str(value)


def describe(arch: Arch, num_classes: int, image_size: int, crop_pct: float,
             class_names: Optional[Sequence[str]], kind: str = "network") -> Dict[str, Any]:
    """The description of a network trained (or searched) with these settings.

    ``kind`` is "network" for weights that load into ``arch``, "supernet" for a search's resume checkpoint
    (``arch`` is then the network the search would pick at that point).
    """
    from src.dataset import IMAGENET_MEAN, IMAGENET_STD

    return {"format": FORMAT, "version": VERSION, "kind": kind, "arch": arch_value(arch, num_classes),
            "num_classes": int(num_classes), "image_size": int(image_size), "crop_pct": float(crop_pct),
            "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
            "class_names": list(class_names) if class_names is not None else None}


def encode(description: Dict[str, Any]) -> str:
    """The JSON text stored in files (ASCII only: it survives every container)."""
    return json.dumps(description, sort_keys=True)


def checkpoint_entry(description: Dict[str, Any]) -> Dict[str, str]:
    """The ``append_dict`` entry that stores ``description`` in a checkpoint."""
    return {KEY: encode(description)}


def decode(text: Any, source: str) -> Dict[str, Any]:
    """A stored description, checked; anything else is a UserError naming ``source``."""
    try:
        found = json.loads(text) if isinstance(text, (str, bytes)) else None
    except ValueError:
        found = None
    if not isinstance(found, dict) or found.get("format") != FORMAT:
        raise UserError(f"{source} has a description entry that is not a ProxylessNAS description: "
                        "re-save the file with this project's train.py or export.py")
    if found.get("version") != VERSION:
        raise UserError(f"{source} has a description of version {found.get('version')!r}; this code reads "
                        f"version {VERSION}: update the code or re-export the file")
    return found


def sidecar_path(mindir: Union[str, Path]) -> Path:
    """The description beside a MINDIR: ``X.mindir`` -> ``X.mindir.json``."""
    mindir = Path(mindir)
    return mindir.with_name(mindir.name + ".json")


def read_description(path: Union[str, Path]) -> Optional[Dict[str, Any]]:
    """The description an .onnx or .mindir file or a checkpoint (any other name) carries; None: it has none.

    A checkpoint that cannot be read is a UserError (src/checkpoint.py: read_checkpoint).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        text = _onnx_metadata(path).get(ONNX_KEY)
    elif suffix == ".mindir":
        side = sidecar_path(path)
        text = side.read_text() if side.is_file() else None
    else:
        from src.checkpoint import read_checkpoint

        return checkpoint_description(read_checkpoint(str(path)), str(path))
    return None if text is None else decode(text, str(path))


def checkpoint_description(entries: Dict[str, Any], source: str) -> Optional[Dict[str, Any]]:
    """The description among a checkpoint's entries (as :func:`src.checkpoint.read_checkpoint` returns them)."""
    text = entries.get(KEY)
    return None if text is None else decode(text, source)


def _onnx_metadata(path: Path) -> Dict[str, str]:
    try:
        import onnx
    except ImportError:  # optional (requirements-test.txt): without it a description cannot be read
        _LOG.warning("the onnx package is not installed: the description in %s is not read (pip install onnx)", path)
        return {}
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # protobuf's DecodeError and friends: the loader reports an unreadable file itself
        return {}
    return {p.key: p.value for p in model.metadata_props}


def write_description(path: Union[str, Path], description: Dict[str, Any]) -> Path:
    """Store ``description`` with an exported model (atomically): in an ONNX file, or beside a MINDIR."""
    from src.files import write_text_atomic

    path = Path(path)
    if path.suffix.lower() == ".mindir":
        return write_text_atomic(sidecar_path(path), json.dumps(description, indent=2, sort_keys=True) + "\n",
                                 "model description", "--file_name")
    if path.suffix.lower() != ".onnx":
        raise UserError(f"{path}: descriptions are stored in .onnx files and beside .mindir files only")
    try:
        import onnx
    except ImportError:
        _LOG.warning("the onnx package is not installed: %s carries no description (pip install onnx)", path)
        return path
    model = onnx.load(str(path))
    kept = [p for p in model.metadata_props if p.key != ONNX_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    model.metadata_props.add(key=ONNX_KEY, value=encode(description))
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        onnx.save(model, str(tmp))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def forget_description(path: Union[str, Path]) -> None:
    """An exported model without a description: remove a MINDIR's sidecar left by an earlier export."""
    side = sidecar_path(path)
    if Path(path).suffix.lower() == ".mindir" and side.is_file():
        side.unlink()
        _LOG.info("removed %s: it described the earlier %s, and this checkpoint has no description", side, path)


def same_value(key: str, ours: Any, theirs: Any) -> bool:
    """Whether two values of option ``key`` mean the same (an arch by name, file or JSON: the same network)."""
    if key == "arch" and not (isinstance(ours, str) and isinstance(theirs, str)):
        return arch_value(ours, 1) == arch_value(theirs, 1)
    if key == "crop_pct":
        return abs(float(ours) - float(theirs)) < 1e-9
    return ours == theirs


def take_defaults(values: Dict[str, Any], given: Iterable[str], description: Optional[Dict[str, Any]],
                  source: str) -> Dict[str, Any]:
    """``values`` with the description's where the user gave none (logged); a given value that differs is used.

    Only the keys of :data:`DEFAULTED` present in ``values`` are considered.  A given ``num_classes`` other
    than the weights' cannot work: a UserError naming both.
    """
    if description is None:
        return dict(values)
    given = set(given)
    out = dict(values)
    for key in DEFAULTED:
        if key not in values:
            continue
        theirs = description[key]
        if key not in given:
            out[key] = theirs
            continue
        if same_value(key, values[key], theirs):
            continue
        if key == "num_classes":
            raise UserError(f"--num_classes {values[key]} contradicts {source}, whose weights have {theirs} classes: "
                            f"drop --num_classes (or pass {theirs})")
        _LOG.warning("--%s %s used as given; %s was trained with %s %s", key, shown(values[key]), source, key,
                     shown(theirs))
    taken = [k for k in DEFAULTED if k in values and k not in given]
    if taken:
        _LOG.info("from the description in %s: %s", source,
                  ", ".join(f"{k} {shown(out[k])}" for k in taken))
    return out
