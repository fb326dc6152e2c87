"""YAML configuration with typed ``--key value`` overrides.

The YAML file has up to three documents: values, help text, allowed choices
(the model-zoo convention).  Nothing is parsed at import time: call
:func:`get_config` from an entry script.
"""
from __future__ import annotations

import difflib
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import yaml
from easydict import EasyDict

from src.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = ROOT / "default_config.yaml"

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}

# Keys whose values must be > 0 (int or float) and other range rules, checked after overrides.
_POSITIVE = ("train_batch_size", "val_batch_size", "batch_size", "epoch_size", "lr_init", "num_classes",
             "image_size", "log_interval", "work_nums", "keep_checkpoint_max", "save_checkpoint_epochs",
             "cutout_length", "loss_scale")
_NON_NEGATIVE = ("warmup_epochs", "lr_end", "momentum", "weight_decay", "steps_per_epoch", "eval_interval",
                 "lr_restart_epoch", "color_jitter", "device_id")
_UNIT_INTERVAL = {"dropout_rate": "[0, 1)", "label_smoothing": "[0, 1)", "ema_decay": "[0, 1)",
                  "crop_pct": "(0, 1]", "min_crop_scale": "(0, 1]"}


# The resolved configuration: a dict with attribute access (``config.lr_init``).
Config = EasyDict


def load_yaml(path: Path) -> Tuple[Dict[str, Any], Dict[str, str], Dict[str, List[Any]]]:
    """Read the values, help and choices documents of a config file."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"config file {path} is a folder, not a file: pass a YAML file with --config_path")
    if not path.is_file():
        raise UserError(f"config file not found: {path} (pass an existing YAML with --config_path)")
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        raise UserError(f"config file {path} is not valid YAML{f' (line {where.line + 1})' if where else ''}: "
                        f"{getattr(err, 'problem', err)}") from None
    if not docs or not isinstance(docs[0], dict):
        raise UserError(f"config file {path} has no 'key: value' mapping in its first document")
    values = docs[0]
    helps = docs[1] if len(docs) > 1 and isinstance(docs[1], dict) else {}
    choices = docs[2] if len(docs) > 2 and isinstance(docs[2], dict) else {}
    for key, allowed in choices.items():
        if not isinstance(allowed, list):  # "x in 'CPU'" would test substrings
            raise UserError(f"config file {path}: the choices of {key!r} (third document) must be a list, "
                            f"got {allowed!r}")
    return values, helps, choices


def _type_name(default: Any) -> str:
    if isinstance(default, bool):
        return "bool (true/false/1/0)"
    if default is None:
        return "string"
    return type(default).__name__


def _kind_of(value: Any) -> str:
    """How a YAML value reads to a person: 'a list', 'a mapping', 'nothing (empty value)', ..."""
    if value is None:
        return "nothing (empty value)"
    if isinstance(value, bool):
        return f"{value!r} (a bool)"
    if isinstance(value, list):
        return f"{value!r} (a list)"
    if isinstance(value, dict):
        return f"{value!r} (a mapping)"
    article = {"int": "an int", "float": "a float", "str": "a string"}.get(type(value).__name__, type(value).__name__)
    return f"{value!r} ({article})"


def _convert_yaml(key: str, value: Any, default: Any, source: str) -> Any:
    """A value already typed by YAML: the same kinds the command line accepts, else a UserError."""
    where = f"{key} in {source}"
    if isinstance(value, str):
        return convert_value(key, value, default, source)
    if isinstance(default, bool):
        # YAML reads true/false/yes/no itself; 1 and 0 are ints there but bools on the command line
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(default, list):
        if isinstance(value, list):
            return [_convert_yaml(key, item, default[0], source) for item in value] if default else value
    elif isinstance(default, str):
        if value is None:
            return ""  # an empty value means "not set", as --key "" does
        raise UserError(f"{where}: expected a string (a path or a name), got {_kind_of(value)}; "
                        f"write it in quotes if it is meant as text: {key}: \"{value}\"")
    else:
        return value
    raise UserError(f"{where}: expected {_type_name(default)}, got {_kind_of(value)}")


def convert_value(key: str, text: Any, default: Any, source: str = "") -> Any:
    """Convert ``text`` (command line) or a YAML value to the type of ``default``; raise UserError naming the key.

    ``source`` names the config file a YAML value comes from.
    """
    if not isinstance(text, str):  # already typed (from YAML)
        return _convert_yaml(key, text, default, source or "the config file")
    name = f"{key} in {source}" if source else f"--{key}"
    if isinstance(default, bool):
        low = text.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise UserError(f"{name}: expected bool (true/false/1/0), got {text!r}")
    if isinstance(default, int):
        try:
            return int(text)
        except ValueError:
            raise UserError(f"{name}: expected int, got {text!r}") from None
    if isinstance(default, float):
        try:
            return float(text)
        except ValueError:
            raise UserError(f"{name}: expected float, got {text!r}") from None
    if isinstance(default, list):
        try:
            items = yaml.safe_load(text if text.strip().startswith("[") else f"[{text}]")
        except yaml.YAMLError:
            raise UserError(f"{name}: expected a list like 1,2,3 or [1, 2, 3], got {text!r}") from None
        if default:
            items = [convert_value(key, str(item), default[0], source) for item in items]
        return list(items)
    if default is None and text.strip().lower() in ("none", "null", "~"):
        return None
    return text


def parse_overrides(argv: Sequence[str]) -> Tuple[Optional[str], Dict[str, str], bool]:
    """Split ``--key value`` / ``--key=value`` tokens; returns (config_path, overrides, help)."""
    overrides: Dict[str, str] = {}
    config_path = None
    want_help = False
    i = 0
    argv = list(argv)
    while i < len(argv):
        token = argv[i]
        if token in ("-h", "--help"):
            want_help = True
            i += 1
            continue
        if not token.startswith("--") or token == "--":
            raise UserError(f"unexpected argument {token!r}: options are written --key value")
        key, eq, value = token[2:].partition("=")
        if not eq:
            if i + 1 >= len(argv) or (argv[i + 1].startswith("--") and len(argv[i + 1]) > 2):
                raise UserError(f"--{key} needs a value")
            value = argv[i + 1]
            i += 1
        i += 1
        key = key.replace("-", "_")
        if key == "config_path":
            config_path = value
        else:
            overrides[key] = value
    return config_path, overrides, want_help


def _closest(key: str, keys: Sequence[str]) -> str:
    match = difflib.get_close_matches(key, keys, n=1, cutoff=0.5)
    return f" (did you mean --{match[0]}?)" if match else ""


def validate(cfg: Dict[str, Any], choices: Dict[str, List[Any]]) -> None:
    """Check choices and value ranges; raise UserError naming the first bad key."""
    for key, allowed in choices.items():
        if key in cfg and cfg[key] not in allowed:
            raise UserError(f"--{key}: {cfg[key]!r} is not one of {', '.join(map(str, allowed))}")
    for key in _POSITIVE:
        if key in cfg and not cfg[key] > 0:
            raise UserError(f"--{key}: must be > 0, got {cfg[key]!r}")
    for key in _NON_NEGATIVE:
        if key in cfg and cfg[key] < 0:
            raise UserError(f"--{key}: must be >= 0, got {cfg[key]!r}")
    for key, interval in _UNIT_INTERVAL.items():
        if key not in cfg:
            continue
        value = cfg[key]
        inside = (0 <= value < 1) if interval == "[0, 1)" else (0 < value <= 1)
        if not inside:
            raise UserError(f"--{key}: must be in {interval}, got {value!r}")
    if "image_size" in cfg and (cfg["image_size"] < 32 or cfg["image_size"] % 32):
        raise UserError(f"--image_size: must be a multiple of 32 and at least 32, got {cfg['image_size']!r} "
                        f"(e.g. {max(32, round(cfg['image_size'] / 32) * 32)})")


def format_help(values: Dict[str, Any], helps: Dict[str, str], choices: Dict[str, List[Any]], prog: str) -> str:
    lines = [f"usage: python {prog} [--config_path FILE] [--key value ...]", "", "options (default in brackets):"]
    for key, default in values.items():
        extra = f" one of {choices[key]}" if key in choices else ""
        lines.append(f"  --{key} [{default!r}]  {helps.get(key, '')}{extra}")
    return "\n".join(lines)


def get_config(argv: Optional[Sequence[str]] = None, config_path: Optional[str] = None,
               extra_defaults: Optional[Path] = None) -> Config:
    """Resolve the configuration: default_config.yaml, ``extra_defaults``, the YAML file, ``--key value`` overrides.

    The YAML file is ``--config_path`` (else ``config_path``); it may be partial, and every key it sets must be
    a known one. ``extra_defaults`` is a YAML (values, help, choices) whose keys join the known ones on top of
    default_config.yaml: a tool with options of its own (the search: configs/search_default.yaml).
    """
    argv = sys.argv[1:] if argv is None else argv
    path_arg, overrides, want_help = parse_overrides(argv)
    extra = Path(extra_defaults) if extra_defaults else None
    layers = [DEFAULT_CONFIG] if DEFAULT_CONFIG.is_file() else []
    layers += [extra] if extra else []
    layers += [Path(path_arg or config_path)] if path_arg or config_path else []
    layers = layers or [DEFAULT_CONFIG]  # no default file and nothing else: load_yaml names the missing file
    values: Dict[str, Any] = {}
    given = set(overrides)  # what the user set: --key value, and the keys of the file named by --config_path
    helps: Dict[str, str] = {}
    choices: Dict[str, List[Any]] = {}
    read: List[Path] = []
    for layer in layers:
        if layer.resolve() in read:  # --config_path default_config.yaml
            continue
        read.append(layer.resolve())
        more, more_help, more_choices = load_yaml(layer)
        if path_arg and layer == Path(path_arg):
            given |= set(more)
        if values:  # a later file may be partial: keys it lacks keep the earlier values
            for key in more:
                if key not in values and layer is not extra:
                    raise UserError(f"unknown key {key!r} in {layer}{_closest(key, list(values))}")
            more = {k: convert_value(k, v, values[k], str(layer)) if k in values else v for k, v in more.items()}
        values, helps, choices = {**values, **more}, {**helps, **more_help}, {**choices, **more_choices}
    path = layers[-1]
    if want_help:
        print(format_help(values, helps, choices, os.path.basename(sys.argv[0] or "script.py")))
        raise SystemExit(0)
    cfg = dict(values)
    for key, text in overrides.items():
        if key not in values:
            raise UserError(f"unknown option --{key}{_closest(key, list(values))}; "
                            "run with --help for the list")
        cfg[key] = convert_value(key, text, values[key])
    validate(cfg, choices)
    cfg["config_path"] = str(path)
    config = Config(cfg)
    object.__setattr__(config, "_given", frozenset(given))  # an attribute only: not a key, not in dumps
    return config


def given_keys(config: Config) -> frozenset:
    """The keys the user set (on the command line or in the --config_path file), not defaulted.

    Empty for a config not made by :func:`get_config` (and for copies of one: read it from the original).
    """
    return getattr(config, "_given", frozenset())
