"""The search's configuration: default_config.yaml (data, device, run keys) plus configs/search_default.yaml."""
from __future__ import annotations

from typing import Optional, Sequence

from src.errors import UserError
from src.model_utils.config import ROOT, Config, get_config

SEARCH_CONFIG = ROOT / "configs" / "search_default.yaml"


def get_search_config(argv: Optional[Sequence[str]] = None) -> Config:
    """default_config.yaml, then configs/search_default.yaml, then ``--config_path`` FILE, then ``--key value``."""
    cfg = get_config(argv, extra_defaults=SEARCH_CONFIG)
    for key in ("arch_update_every", "valid_per_class", "valid_batch_size", "rl_samples", "arch_lr"):
        if not cfg[key] > 0:
            raise UserError(f"--{key}: must be > 0, got {cfg[key]!r}")
    from src.latency import parse_candidates

    parse_candidates(cfg["conv_candidates"])  # a bad name is reported before anything else is read
    if not 0 < cfg["valid_fraction"] < 1:
        raise UserError(f"--valid_fraction: must be in (0, 1), got {cfg['valid_fraction']!r}")
    return cfg
