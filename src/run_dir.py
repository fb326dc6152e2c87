"""The run folder of train.py and search.py: its name, creation, lock, --overwrite, opening for a run or resume.

``SAVE_CKPT_PATH/RUN_NAME/`` holds ``config.yaml``, ``checkpoints/``, the log file, ``metrics.jsonl`` and
``.lock`` (held while a process runs in it). It is created only once every input is validated, so a run that
fails at start leaves nothing behind.
"""
from __future__ import annotations

import fcntl
import logging
import logging.handlers
import os
import socket
import time
from pathlib import Path
from typing import IO, Optional, Sequence, Tuple

import yaml

from src.errors import UserError
from src.metrics import drop_torn_last_line
from src.model_utils.device import ParallelInfo

_LOG = logging.getLogger(__name__)

LOCK_NAME = ".lock"
LOG_FORMAT = ("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")


def arch_tag(arch: str) -> str:
    """The short name of an architecture for folder and checkpoint names (a config file's stem)."""
    return Path(arch).stem if arch.endswith((".config", ".json")) else arch


def resolve_run_dir(config, info: ParallelInfo) -> Path:
    """The run folder, not yet created; refuses to reuse an existing one unless resuming into it or --overwrite."""
    from src.files import input_file

    for flag in ("resume", "pretrained"):  # a folder or a missing file is said before anything starts
        if getattr(config, flag, ""):
            input_file(getattr(config, flag), "checkpoint", f"--{flag}")
    if config.resume and not config.run_name:
        ckpt = Path(config.resume).resolve()
        if (ckpt.parent.parent / "config.yaml").is_file():
            return ckpt.parent.parent  # resuming continues the run the checkpoint came from
    name = config.run_name or f"{arch_tag(config.arch)}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = Path(config.save_ckpt_path).expanduser().resolve() / name
    # other ranks may already have written their shard lists into shards/: that is not an earlier run
    if info.is_main and run_dir_in_use(run_dir) and not config.overwrite and not config.resume:
        raise UserError(f"run folder {run_dir} already exists: pick another --run_name, or pass --overwrite true")
    # created only once every input is validated (open_run_dir), so a run that fails at start leaves nothing;
    # an unwritable place is reported now all the same
    existing = next(p for p in (run_dir, *run_dir.parents) if p.exists())
    if info.is_main and not (existing.is_dir() and os.access(existing, os.W_OK | os.X_OK)):
        reason = "Not a directory" if not existing.is_dir() else "Permission denied"
        raise UserError(f"cannot write to the run folder {run_dir} ({reason}: {existing}): "
                        "choose a writable --save_ckpt_path")
    return run_dir


def create_run_dir(run_dir: Path, info: ParallelInfo) -> None:
    """Create the run folder (main rank) and check that it takes files."""
    if info.is_main:
        try:
            (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
            probe = run_dir / f".write-test{os.getpid()}"
            probe.write_text("ok")
            probe.unlink()
        except OSError as err:
            raise UserError(f"cannot write to the run folder {run_dir} ({err.strerror}): "
                            "choose a writable --save_ckpt_path") from None


def run_dir_in_use(run_dir: Path) -> bool:
    """The folder holds an earlier run (other ranks' shard lists and the lock file do not count)."""
    return run_dir.exists() and any(p.name not in ("shards", LOCK_NAME) for p in run_dir.iterdir())


def move_earlier_run_aside(run_dir: Path) -> Path:
    """--overwrite: a clean run folder, never old and new checkpoints/metrics mixed; nothing is deleted."""
    lock_run_dir(run_dir).close()  # refused while another process runs in it
    backup = run_dir.with_name(f"{run_dir.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
    os.rename(run_dir, backup)
    _LOG.warning("--overwrite: moved the earlier run folder %s to %s", run_dir, backup)
    return backup


def lock_run_dir(run_dir: Path) -> IO[str]:
    """Hold an exclusive lock on a run folder (released when the process ends, however it ends)."""
    path = run_dir / LOCK_NAME
    f = open(path, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        owner = f.read().strip() or "another process"
        f.close()
        raise UserError(f"run folder {run_dir} is in use by {owner} (lock {path}): wait for that run to end, "
                        "or pick another --run_name") from None
    f.seek(0)
    previous = f.read().strip()
    if previous:
        _LOG.warning("run folder %s: taking over the lock of %s, which is no longer running", run_dir, previous)
    f.seek(0)
    f.truncate()
    f.write(f"process {os.getpid()} on {socket.gethostname()}\n")
    f.flush()
    return f


def write_run_config(run_dir: Path, config) -> None:
    """The run's options as ``config.yaml``."""
    (run_dir / "config.yaml").write_text(yaml.safe_dump(dict(config), sort_keys=False))


def remake_run_dir(run_dir: Path, config) -> IO[str]:
    """The run folder was removed while the run goes on: make it again with its config.yaml, and lock it.

    Raises OSError or UserError when it cannot be made; the caller keeps the weights elsewhere then.
    """
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    write_run_config(run_dir, config)
    return lock_run_dir(run_dir)


def log_to_file(path: Path, early: Optional[logging.handlers.MemoryHandler] = None) -> logging.FileHandler:
    """Send the process's log to ``path`` too, starting with the lines ``early`` kept until the file could exist."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter(*LOG_FORMAT))
    if early is not None:
        early.setTarget(handler)
        early.flush()
    logging.getLogger().addHandler(handler)
    return handler


def open_run_dir(run_dir: Path, info: ParallelInfo, overwrite: bool, resume: bool, log_name: str,
                 records: Sequence[str] = ("metrics.jsonl",),
                 early: Optional[logging.handlers.MemoryHandler] = None
                 ) -> Tuple[Optional[IO[str]], Optional[logging.FileHandler], Optional[Path]]:
    """Create the run folder once the inputs are valid: (lock, log file handler, where an earlier run was moved).

    --overwrite moves an earlier run aside untouched; a resume drops a torn last line of the ``records`` files
    (under the lock: no running process is writing them). ``early`` (the log kept in memory so far) goes into
    the log file and is detached. Other ranks get (None, None, None) and write nothing here.
    """
    moved = None
    if info.is_main and overwrite and not resume and run_dir_in_use(run_dir):
        moved = move_earlier_run_aside(run_dir)
    create_run_dir(run_dir, info)
    if early is not None:
        logging.getLogger().removeHandler(early)
    if not info.is_main:
        if early is not None:
            early.close()
        return None, None, moved
    lock = lock_run_dir(run_dir)
    if resume:
        for name in records:
            drop_torn_last_line(run_dir / name)
    handler = log_to_file(run_dir / log_name, early)
    if early is not None:
        early.close()
    return lock, handler, moved
