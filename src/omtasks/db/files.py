"""Ownership and modes of what om creates under $OM_ROOT (SPEC 2).

Nothing is world-readable; when root creates a file, the group `om` (if it
exists) can read history without being able to change state.
"""

from __future__ import annotations

import grp
import os
from functools import lru_cache
from pathlib import Path

DIR_MODE = 0o750
FILE_MODE = 0o640


@lru_cache(maxsize=1)
def _om_gid() -> int | None:
    try:
        return grp.getgrnam("om").gr_gid
    except KeyError:
        return None


def _own(path: Path) -> None:
    if os.geteuid() == 0 and _om_gid() is not None:
        os.chown(path, 0, _om_gid())


def ensure_dir(path: Path) -> None:
    """Create `path` (and missing parents) with mode 0750; existing directories are left alone."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue
        os.chmod(d, DIR_MODE)
        _own(d)


def create_file(path: Path) -> bool:
    """Create an empty `path` with mode 0640 unless it exists; True when this call created it."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, FILE_MODE)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    _own(path)
    return True


def secure_file(path: Path) -> None:
    """Give a file of ours mode 0640 (and group om under root); missing or foreign ones are left alone."""
    try:
        if os.stat(path).st_uid != os.geteuid():
            return
        os.chmod(path, FILE_MODE)
    except FileNotFoundError:
        return
    _own(path)
