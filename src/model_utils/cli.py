"""Shared plumbing of the entry scripts: logging, config, one-line errors."""
from __future__ import annotations

import functools
import logging
import sys
from typing import Callable, Optional, Sequence

from src.errors import UserError


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stdout, force=True)


def arch_file_classes(config) -> None:
    """An ``--arch`` network file writes its classifier size: that is ``num_classes`` unless the user set one."""
    from src.arch import ARCHS, resolve_arch
    from src.model_utils.config import given_keys

    arch = config.get("arch")
    if not arch or arch in ARCHS or "num_classes" in given_keys(config):
        return
    written = resolve_arch(arch)[1]
    if written and written != config.num_classes:
        logging.getLogger(__name__).info("num_classes %d, as written in --arch %s", written, arch)
        config.num_classes = written


def entry_point(main: Callable[..., Optional[int]]) -> Callable[[Optional[Sequence[str]]], int]:
    """Wrap a script's main(config): parse the config, run, turn UserError into one line and exit 2."""

    @functools.wraps(main)
    def run(argv: Optional[Sequence[str]] = None) -> int:
        from src.model_utils.config import get_config
        from src.model_utils.device import configure_environment, resolve_device_target

        setup_logging()
        try:
            config = get_config(argv)
            arch_file_classes(config)
            config.device_target = resolve_device_target(config.device_target)
            configure_environment(config.device_target)
            return main(config) or 0
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        except OSError as err:
            # a read or write the script did not check itself (read-only folder, full disk, ...): one line
            where = f": {err.filename}" if err.filename else ""
            print(f"error: {err.strerror or err}{where}", file=sys.stderr)
            return 1

    return run
