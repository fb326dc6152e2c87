"""Run records: metrics.jsonl (one JSON object per line), the repair of a line a crash cut short, weight digests."""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import numpy as np

_LOG = logging.getLogger(__name__)


class MetricsLog:
    """Appends one JSON object per line to a ``.jsonl`` file (main rank only).

    A torn last line left by a crash is dropped only when a run resumes into the folder
    (:func:`drop_torn_last_line`, called by :func:`src.run_dir.open_run_dir`), never by opening the log.
    """

    def __init__(self, path: Path, enabled: bool, on_missing: Optional[Callable[[], None]] = None):
        self.path = path
        self.enabled = enabled
        self.on_missing = on_missing  # called when the folder has gone (recreates it)

    def write(self, record: Dict[str, Any]) -> None:
        if not self.enabled:
            return
        try:
            self._append(record)
        except (FileNotFoundError, NotADirectoryError):
            if self.on_missing is None:
                raise
            self.on_missing()
            self._append(record)

    def _append(self, record: Dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


def drop_torn_last_line(path: Path) -> None:
    """Cut a last line without its newline (a crash mid-write): appending after it would glue the next record on."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return
    keep = data.rfind(b"\n") + 1
    with open(path, "r+b") as f:
        f.truncate(keep)
    _LOG.warning("%s ended in a partial line (%d bytes, left by a crash): dropped it", path, len(data) - keep)


def weights_digest(net) -> str:
    """SHA-1 of the trainable parameters (not BN statistics): equal on all ranks of a data-parallel run."""
    h = hashlib.sha1()
    for p in net.trainable_params():
        h.update(p.name.encode())
        h.update(np.ascontiguousarray(p.asnumpy()).tobytes())
    return h.hexdigest()
