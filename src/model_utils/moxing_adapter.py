"""ModelArts support: copy data in from OBS before a job and results out after it.

A pass-through unless ``config.enable_modelarts`` is true; ``moxing`` (only
installed on ModelArts) is imported only then.
"""
import functools
import logging
import os
from typing import Callable, Optional

_LOG = logging.getLogger(__name__)


def get_device_id() -> int:
    return int(os.getenv("DEVICE_ID", "0"))


def get_device_num() -> int:
    return int(os.getenv("RANK_SIZE", "1"))


def get_rank_id() -> int:
    return int(os.getenv("RANK_ID", "0"))


def get_job_id() -> str:
    return os.getenv("JOB_ID", "default") or "default"


def sync_data(from_path: str, to_path: str) -> None:
    """Copy an OBS folder to local disk (or back); on a node, only the first local device copies."""
    import moxing as mox  # available on ModelArts only

    lock = f"/tmp/copy_sync.lock{get_job_id()}"
    if get_device_id() % min(get_device_num(), 8) == 0 and not os.path.exists(lock):
        _LOG.info("copying %s -> %s", from_path, to_path)
        mox.file.copy_parallel(from_path, to_path)
        with open(lock, "w"):
            pass
    while not os.path.exists(lock):
        import time
        time.sleep(1)


def moxing_wrapper(config, pre_process: Optional[Callable[[], None]] = None,
                   post_process: Optional[Callable[[], None]] = None):
    """Decorator: on ModelArts, sync inputs before and outputs after the wrapped function."""

    def decorator(run: Callable):
        @functools.wraps(run)
        def wrapped(*args, **kwargs):
            if not config.get("enable_modelarts"):
                return run(*args, **kwargs)
            if config.data_url:
                sync_data(config.data_url, config.data_path)
            if config.checkpoint_url:
                sync_data(config.checkpoint_url, config.load_path)
            if config.train_url:
                os.makedirs(config.output_path, exist_ok=True)
            if pre_process:
                pre_process()
            result = run(*args, **kwargs)
            if post_process:
                post_process()
            if config.train_url:
                sync_data(config.output_path, config.train_url)
            return result

        return wrapped

    return decorator
