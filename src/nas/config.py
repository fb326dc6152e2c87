"""The search's configuration: default_config.yaml (data, device, run keys) plus configs/search_default.yaml.

``src/model_utils/config.get_config`` accepts a custom YAML only with keys of default_config.yaml, so the
search keys (latency table, targets, modes) are merged here from the same building blocks.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional, Sequence

from src.errors import UserError
from src.model_utils.config import (DEFAULT_CONFIG, ROOT, Config, _closest, convert_value, format_help, load_yaml,
                                    parse_overrides, validate)

SEARCH_CONFIG = ROOT / "configs" / "search_default.yaml"


def get_search_config(argv: Optional[Sequence[str]] = None) -> Config:
    """default_config.yaml, then configs/search_default.yaml, then ``--config_path`` FILE, then ``--key value``."""
    argv = sys.argv[1:] if argv is None else argv
    path_arg, overrides, want_help = parse_overrides(argv)
    values, helps, choices = load_yaml(DEFAULT_CONFIG)
    search_values, search_helps, search_choices = load_yaml(SEARCH_CONFIG)
    values = {**values, **{k: convert_value(k, v, values[k]) if k in values else v for k, v in search_values.items()}}
    helps, choices = {**helps, **search_helps}, {**choices, **search_choices}
    if path_arg:
        user, _, _ = load_yaml(Path(path_arg))
        for key in user:
            if key not in values:
                raise UserError(f"unknown key {key!r} in {path_arg}{_closest(key, list(values))}")
        values = {**values, **{k: convert_value(k, v, values[k]) for k, v in user.items()}}
    if want_help:
        print(format_help(values, helps, choices, os.path.basename(sys.argv[0] or "search.py")))
        raise SystemExit(0)
    cfg = dict(values)
    for key, text in overrides.items():
        if key not in values:
            raise UserError(f"unknown option --{key}{_closest(key, list(values))}; run with --help for the list")
        cfg[key] = convert_value(key, text, values[key])
    validate(cfg, choices)
    for key in ("arch_update_every", "valid_per_class", "valid_batch_size", "rl_samples", "arch_lr"):
        if not cfg[key] > 0:
            raise UserError(f"--{key}: must be > 0, got {cfg[key]!r}")
    if not 0 < cfg["valid_fraction"] < 1:
        raise UserError(f"--valid_fraction: must be in (0, 1), got {cfg['valid_fraction']!r}")
    cfg["config_path"] = str(path_arg or SEARCH_CONFIG)
    return Config(cfg)
