"""Files the entry scripts read and write: a folder where a file is needed, or a place that cannot be
written, is one UserError naming the path, the reason and the option to change."""
from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence, Tuple, Union

from src.errors import UserError

PathLike = Union[str, Path]


def input_file(path: PathLike, what: str, flag: str) -> Path:
    """An existing file to read: a folder or a missing path is a UserError naming ``flag``."""
    p = Path(path).expanduser()
    if not str(path):
        raise UserError(f"no {what} given: pass {flag} FILE")
    if p.is_dir():
        raise UserError(f"{flag} {p} is a folder, not a file: pass a file inside it")
    if not p.is_file():
        raise UserError(f"{what} not found: {p}")
    return p


def describe_content(path: PathLike) -> str:
    """What a file that a loader rejected holds, for the error message: text, a zip/PyTorch file, or ''."""
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError:
        return ""
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive (the PyTorch .pth format)"
    if head[:1] == b"\x80" and len(head) > 1 and head[1] <= 5:
        return "a Python pickle (the old PyTorch .pth format)"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return ""
    if text and all(c.isprintable() or c in "\r\n\t" for c in text):
        first = text.strip().splitlines()[0][:60] if text.strip() else ""
        return f"text ({first!r})"
    return ""


def _reason(err: OSError) -> str:
    if err.errno == errno.EROFS:
        return "the file system is read-only"
    if err.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if err.errno == errno.ENOSPC:
        return "no space left on the device"
    return err.strerror or type(err).__name__


def write_error(path: PathLike, err: OSError, what: str, flag: str) -> UserError:
    """The one-line error for a failed write of ``path``."""
    return UserError(f"cannot write the {what} to {path}: {_reason(err)} (pass {flag} with a writable path)")


def check_output_file(path: PathLike, what: str, flag: str) -> Path:
    """A file about to be written: not a folder, its folder creatable and writable (checked by writing)."""
    target = Path(path).expanduser()
    if target.is_dir():
        raise UserError(f"{flag} {target} is a folder: give a file path for the {what}")
    parent = target.parent
    for above in (parent, *parent.parents):
        if above.exists():
            if not above.is_dir():
                raise UserError(f"cannot write the {what} to {target}: {above} is a file, not a folder "
                                f"(pass {flag} with another path)")
            break
    try:
        parent.mkdir(parents=True, exist_ok=True)
        # a real write: os.access() says yes to root on an immutable folder
        with tempfile.NamedTemporaryFile(dir=parent, prefix=f".{target.name}.probe"):
            pass
    except OSError as err:
        raise write_error(target, err, what, flag) from None
    return target


def check_output_dir(path: PathLike, what: str, flag: str) -> Path:
    """A folder about to be written into: created if missing, not a file, writable (checked by writing)."""
    folder = Path(path).expanduser()
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{flag} {folder} is a file, not a folder: give a folder for the {what}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe"):
            pass
    except OSError as err:
        raise write_error(folder, err, what, flag) from None
    return folder


def write_text_atomic(path: PathLike, text: str, what: str, flag: str) -> Path:
    """Write ``text`` under a temporary name and rename it into place; nothing is left behind on failure."""
    target = check_output_file(path, what, flag)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, target)
    except OSError as err:
        raise write_error(target, err, what, flag) from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return target


def mindir_input_shape(path: PathLike) -> Optional[Tuple[int, ...]]:
    """The shape of a MINDIR's first input as exported (-1 for a dynamic dimension); None when not recorded."""
    from mindspore.train import mind_ir_pb2

    model = mind_ir_pb2.ModelProto()
    try:
        model.ParseFromString(Path(path).read_bytes())
    except Exception:  # protobuf's DecodeError and friends: the loader reports an unreadable file itself
        return None
    for graph_input in model.graph.input:
        for tensor in graph_input.tensor:
            if len(tensor.dims) == 4:
                return tuple(int(d) for d in tensor.dims)
    return None


def image_size_of(shape: Optional[Sequence[Any]]) -> Optional[int]:
    """The square image side of an NCHW input shape, None when it is not fixed."""
    if shape is None or len(shape) != 4:
        return None
    height, width = shape[2], shape[3]
    if isinstance(height, int) and height > 0 and height == width:
        return height
    return None


def check_image_size(model: PathLike, exported: Optional[int], requested: Optional[int], flag: str) -> int:
    """The image size to run ``model`` at: its own when ``requested`` is None, else both must agree."""
    if exported is None:
        return requested or 224
    if requested is not None and requested != exported:
        raise UserError(f"{model} was exported for {exported}x{exported} inputs but {flag} is {requested}: "
                        f"pass {flag} {exported} (or export again at {requested})")
    return exported
