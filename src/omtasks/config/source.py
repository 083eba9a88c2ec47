"""Reading a config file: what om trusts and the limits it enforces (docs/security.md).

Every service file and node.conf goes through `read_config`, before any
parsing:

- a directory, a dangling symlink or a symlink to a file outside `etc/` named
  `*.conf` is reported as such and not read;
- run as root, a file not owned by root or writable by group or others, or an
  `etc/` that is, is refused (sshd StrictModes, cron's crontab checks): whoever
  can write it could run commands as root;
- a file larger than MAX_FILE_BYTES, holding a NUL byte (binary) or not UTF-8
  is refused; a UTF-8 byte order mark is accepted and dropped.

No message quotes the file's content: a link to /etc/shadow must not copy its
lines into the database or the logs.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

#: bytes in one config file
MAX_FILE_BYTES = 1024 * 1024
#: characters in one value (continuation lines joined)
MAX_VALUE_CHARS = 64 * 1024
#: sections in one service file
MAX_SECTIONS = 1000

BOM = b"\xef\xbb\xbf"


@dataclass
class Source:
    """The text of a config file, or why it was not read (`line` locates a decoding error)."""

    text: str | None
    data: bytes = b""
    error: str | None = None
    line: int = 0


def _strict() -> bool:
    return os.geteuid() == 0


def _unsafe(st: os.stat_result, what: str, path: Path | str) -> str | None:
    """Why root must not trust a file or directory with this stat, with the fix; None when it may."""
    if st.st_uid != 0:
        return f"{what} is owned by uid {st.st_uid}, not root: chown root {path}"
    if st.st_mode & 0o022:
        return f"{what} is writable by group or others: chmod go-w {path}"
    return None


def check_etc(folder: Path) -> str | None:
    """As root: why `etc/` itself cannot be trusted, or None."""
    if not _strict():
        return None
    try:
        st = os.stat(folder)
    except OSError:
        return None
    reason = _unsafe(st, "etc/", folder)
    return f"refused: {reason}" if reason else None


def read_config(path: str | Path) -> Source:
    """Read `path` with every check of the module docstring; never raises for a bad file."""
    path = Path(path)
    try:
        lst = os.lstat(path)
    except FileNotFoundError:
        return Source(None, error="cannot read: No such file or directory")
    except OSError as exc:
        return Source(None, error=f"cannot read: {exc.strerror or exc}")
    if stat.S_ISLNK(lst.st_mode):
        try:
            target = Path(os.path.realpath(path, strict=True))
        except (OSError, RuntimeError):
            return Source(None, error="dangling symlink, not read")
        etc = Path(os.path.realpath(path.parent))
        if etc not in target.parents:
            return Source(None, error="symlink to a file outside etc/, not read")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
    except IsADirectoryError:
        return Source(None, error="is a directory, not a config file")
    except OSError as exc:
        return Source(None, error=f"cannot read: {exc.strerror or exc}")
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            return Source(None, error="is a directory, not a config file")
        if not stat.S_ISREG(st.st_mode):
            return Source(None, error="not a regular file, not read")
        if _strict():
            reason = _unsafe(st, "file", path) or check_etc(path.parent)
            if reason:
                return Source(None, error=reason if reason.startswith("refused") else f"refused: {reason}")
        if st.st_size > MAX_FILE_BYTES:
            return Source(None, error=f"file too large ({st.st_size} bytes, at most {MAX_FILE_BYTES})")
        chunks = []
        size = 0
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            size += len(chunk)
            if size > MAX_FILE_BYTES:
                return Source(None, error=f"file too large (more than {MAX_FILE_BYTES} bytes)")
            chunks.append(chunk)
    except OSError as exc:
        return Source(None, error=f"cannot read: {exc.strerror or exc}")
    finally:
        os.close(fd)
    data = b"".join(chunks)
    body = data[len(BOM):] if data.startswith(BOM) else data
    nul = body.find(b"\0")
    if nul >= 0:
        return Source(None, data, f"binary file (NUL byte at offset {nul}), not read", body[:nul].count(b"\n") + 1)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = body[: exc.start].count(b"\n") + 1
        return Source(None, data, f"not UTF-8: byte 0x{body[exc.start]:02x} at offset {exc.start}", line)
    return Source(text, data)
