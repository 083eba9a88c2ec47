"""Advisory file locks shared by the database lifecycle, the tick and the outbox."""

from __future__ import annotations

import fcntl
import time


def flock_wait(fd: int, timeout: float, poll: float = 0.05) -> bool:
    """Take an exclusive flock on `fd`, waiting up to `timeout` seconds; False when the wait ran out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll)
