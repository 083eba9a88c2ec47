"""Atomic file replacement for `create`, `set` and friends."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomic(path: str | Path, text: str, mode: int = 0o640) -> None:
    """Replace `path` with `text` so readers (a concurrent tick) see the old or the new file, never half.

    A temporary file in the same directory is written, fsynced and renamed over
    `path`; the directory is then fsynced so the rename survives a crash.  When
    run as root over an existing file, its owner and group are kept.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            if os.geteuid() == 0 and path.exists():
                stat = path.stat()
                os.fchown(handle.fileno(), stat.st_uid, stat.st_gid)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
