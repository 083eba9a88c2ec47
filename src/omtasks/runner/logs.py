"""Log lines of SPEC 5.6: the terminal, the service log and runner.log.

Terminal: `HH:MM:SS,mmm <rid:11> <LEVEL:7> message`.  Service log
(`var/log/<service>.log`): date, time with its UTC offset, node and run id in
front of the same.  Log timestamps are process bookkeeping: the real clock,
local time.

Files are written through the `logging` package with a `WatchedFileHandler`,
so logrotate may move or truncate them (`om runner install --print` prints the
snippet): the next line reopens the file.  Files are created 0640 in 0750
directories, like every file om owns.
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import datetime
from logging.handlers import WatchedFileHandler
from pathlib import Path

from omtasks.paths import ensure_dir

#: the logger of runner.log; `om runner daemon` adds a stderr handler to it (the journal)
RUNNER_LOGGER = "om.runner"


def stamp(when: float | None = None, *, with_date: bool = True) -> str:
    """`2026-11-28 02:12:00,412+01:00` (local time with its offset); `02:12:00,412` without the date."""
    t = (datetime.fromtimestamp(when) if when is not None else datetime.now()).astimezone()
    ms = t.microsecond // 1000
    if not with_date:
        return f"{t:%H:%M:%S},{ms:03d}"
    offset = f"{t:%z}"
    return f"{t:%Y-%m-%d %H:%M:%S},{ms:03d}{offset[:3]}:{offset[3:5]}"


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{stamp(record.created)} {record.getMessage()}"


class _OwnedFile(WatchedFileHandler):
    """A WatchedFileHandler creating its file 0640 (and its directory 0750), reporting errors in one line."""

    def _open(self):  # noqa: ANN202 - logging's signature
        path = Path(self.baseFilename)
        ensure_dir(path.parent)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        return open(fd, "a", encoding="utf-8", errors="replace")  # noqa: SIM115 - the handler owns it

    def handleError(self, record: logging.LogRecord) -> None:
        exc = sys.exc_info()[1]
        reason = getattr(exc, "strerror", None) or str(exc)
        if os.isatty(2):
            sys.stderr.write(f"om: cannot write {self.baseFilename}: {reason}\n")


def file_logger(path: Path) -> logging.Logger:
    """The logger writing lines to `path` (one handler per file and process)."""
    logger = logging.getLogger(f"om.file.{path}")
    if not logger.handlers:
        handler = _OwnedFile(str(path), delay=True)
        handler.setFormatter(_Formatter())
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
    return logger


def runner_logger(ctx) -> logging.Logger:
    """The `om.runner` logger, writing `var/log/runner.log` of `ctx`'s root."""
    logger = logging.getLogger(RUNNER_LOGGER)
    path = str(ctx.log_dir / "runner.log")
    if not any(isinstance(h, _OwnedFile) and h.baseFilename == os.path.abspath(path) for h in logger.handlers):
        for h in [h for h in logger.handlers if isinstance(h, _OwnedFile)]:
            logger.removeHandler(h)
            h.close()
        handler = _OwnedFile(path, delay=True)
        handler.setFormatter(_Formatter())
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
    return logger


def runner_log(ctx, message: str, level: int = logging.INFO) -> None:
    """One line of runner.log: `<stamp> <node> <message>`."""
    runner_logger(ctx).log(level, "%s %s", ctx.node, message)


class ServiceLog:
    """Writes a service's log lines; manual runs also echo them to the terminal."""

    def __init__(self, ctx, service: str, *, terminal: bool) -> None:
        self.ctx = ctx
        self.path = ctx.log_dir / f"{service}.log"
        self.terminal = terminal
        self._logger = file_logger(self.path)

    def line(self, rid: str | None, level: str, message: str, run_id: int | None = None) -> None:
        rid = rid or ""
        body = f"{rid:<11} {level:<7} {message}"
        if self.terminal:
            sys.stderr.write(f"{stamp(with_date=False)} {body}\n")
            sys.stderr.flush()
        run = f"run={run_id} " if run_id is not None else ""
        self._logger.info("%s %s%s", self.ctx.node, run, body)
