"""ModelArts support: copy inputs from OBS before a job and its outputs back after it.

A pass-through unless ``config.enable_modelarts`` is true; ``moxing`` (installed on ModelArts only) is imported
only then.  With it, as in the MindSpore ModelZoo entries:

- ``data_url`` is copied to ``data_path`` and ``checkpoint_url`` to ``load_path`` before the job, once per server
  (by the first device of each server; the others wait for it);
- the config's paths are pointed into those local copies (:func:`localise_paths`);
- after the job, ``output_path`` (runs, evaluation results, exported files) is copied to ``train_url`` by
  rank 0, the only rank that writes results.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

from src.model_utils import local_adapter

_LOG = logging.getLogger(__name__)

# Per script: which options name inputs inside the local copy of checkpoint_url, and which name outputs.
CHECKPOINT_OPTIONS = {"train": ("pretrained", "resume"), "eval": ("checkpoint_path", "checkpoint"),
                      "export": ("checkpoint",)}
OUTPUT_OPTIONS = {"train": ("save_ckpt_path",), "eval": ("eval_output",), "export": ("file_name",)}


def get_device_id() -> int:
    """Device index of this process on its server (DEVICE_ID)."""
    return local_adapter.get_device_id()


def get_device_num() -> int:
    """Number of workers of the job."""
    return local_adapter.get_device_num()


def get_rank_id() -> int:
    """Rank of this worker."""
    return local_adapter.get_rank_id()


def get_job_id() -> str:
    """ModelArts job id (JOB_ID), 'default' outside a job."""
    return os.getenv("JOB_ID", "default") or "default"


def _lock_file(from_path: str, to_path: str) -> Path:
    key = hashlib.sha1(f"{from_path}\n{to_path}".encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"copy_sync.{get_job_id()}.{key}.done"


def sync_data(from_path: str, to_path: str) -> None:
    """Copy an OBS folder to local disk once per server: the first device copies, the others wait for it."""
    import moxing as mox  # available on ModelArts only

    done = _lock_file(from_path, to_path)
    if get_device_id() % min(get_device_num(), 8) == 0 and not done.exists():
        _LOG.info("ModelArts: copying %s -> %s", from_path, to_path)
        start = time.time()
        mox.file.copy_parallel(from_path, to_path)
        done.write_text(to_path)
        _LOG.info("ModelArts: copied in %.1f s", time.time() - start)
    while not done.exists():
        time.sleep(1)


def _inside(root: str, value: str) -> str:
    """A relative path taken inside ``root``; an empty one is ``root`` itself; an absolute one is kept."""
    return value if value and os.path.isabs(value) else os.path.join(root, value) if value else root


def localise_paths(config, script: str) -> None:
    """Point the config's data, checkpoint and output paths into the local copies of the OBS folders.

    ``dataset_path`` is read inside ``data_path``, the checkpoint options of ``script`` inside ``load_path``,
    its output options inside ``output_path``; an absolute path is left as it is.
    """
    if config.data_url:
        config.dataset_path = _inside(config.data_path, config.dataset_path)
    if config.checkpoint_url:
        for key in CHECKPOINT_OPTIONS.get(script, ()):
            if config.get(key):
                config[key] = _inside(config.load_path, config[key])
    for key in OUTPUT_OPTIONS.get(script, ()):
        if key in config and (config[key] or key == "eval_output"):
            config[key] = _inside(config.output_path, config[key] or "eval_results.json")
    _LOG.info("ModelArts: dataset %s, outputs in %s (copied to %s at the end)", config.get("dataset_path"),
              config.output_path, config.train_url or "nowhere: no train_url")


def moxing_wrapper(config, pre_process: Optional[Callable[[], None]] = None,
                   post_process: Optional[Callable[[], None]] = None, script: str = ""):
    """Decorator: on ModelArts, sync inputs and localise paths before, and outputs after, the wrapped function."""

    def decorator(run: Callable):
        @functools.wraps(run)
        def wrapped(*args, **kwargs):
            if not config.get("enable_modelarts"):
                return run(*args, **kwargs)
            if config.data_url:
                sync_data(config.data_url, config.data_path)
            if config.checkpoint_url:
                sync_data(config.checkpoint_url, config.load_path)
            os.makedirs(config.output_path, exist_ok=True)
            if script:
                localise_paths(config, script)
            if pre_process:
                pre_process()
            try:
                result = run(*args, **kwargs)
            finally:  # a failed job's log and checkpoints are worth having too
                if post_process:
                    post_process()
                if config.train_url and get_rank_id() == 0:
                    import moxing as mox

                    _LOG.info("ModelArts: copying %s -> %s", config.output_path, config.train_url)
                    mox.file.copy_parallel(config.output_path, config.train_url)
            return result

        return wrapped

    return decorator
