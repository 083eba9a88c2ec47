"""Log lines of SPEC 5.6: the terminal, the service log and runner.log.

Terminal: `HH:MM:SS,mmm <rid:11> <LEVEL:7> message`.  Service log
(`var/log/<service>.log`): date, time, node and run id in front of the same.
Log timestamps are process bookkeeping: the real clock, local time.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime
from pathlib import Path

from omtasks.paths import ensure_dir


def _stamp(with_date: bool) -> str:
    t = datetime.now().astimezone()
    ms = t.microsecond // 1000
    return f"{t:%Y-%m-%d %H:%M:%S},{ms:03d}" if with_date else f"{t:%H:%M:%S},{ms:03d}"


def append(path: Path, line: str) -> None:
    """Append one line to a log file om owns (0640, in a 0750 directory)."""
    ensure_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, (line + "\n").encode("utf-8", "replace"))
    finally:
        os.close(fd)


def runner_log(ctx, message: str) -> None:
    append(ctx.log_dir / "runner.log", f"{_stamp(True)} {ctx.node} {message}")


class ServiceLog:
    """Writes a service's log lines; manual runs also echo them to the terminal."""

    def __init__(self, ctx, service: str, *, terminal: bool) -> None:
        self.ctx = ctx
        self.path = ctx.log_dir / f"{service}.log"
        self.terminal = terminal

    def line(self, rid: str | None, level: str, message: str, run_id: int | None = None) -> None:
        rid = rid or ""
        body = f"{rid:<11} {level:<7} {message}"
        if self.terminal:
            sys.stderr.write(f"{_stamp(False)} {body}\n")
            sys.stderr.flush()
        run = f"run={run_id} " if run_id is not None else ""
        try:
            append(self.path, f"{_stamp(True)} {self.ctx.node} {run}{body}")
        except OSError as exc:
            if self.terminal:
                sys.stderr.write(f"om: cannot write {self.path}: {exc.strerror}\n")
