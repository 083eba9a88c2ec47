"""Process identity for reaping (SPEC 5.2 step 2, 8.5, 8.6).

A pid alone is not an identity: pids are reused, and they restart from scratch
after a reboot.  A run therefore records (pid, start time in clock ticks since
boot from /proc/<pid>/stat field 22, boot id); the process is "the same" only
when all three still match.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

_BOOT_ID = "/proc/sys/kernel/random/boot_id"
# Indexes into the fields that follow the ")" closing comm: field N of proc(5) is at N - 3.
_STATE, _PGRP, _STARTTIME = 0, 2, 19


def boot_id() -> str:
    """The kernel's random id of the current boot."""
    with open(_BOOT_ID, encoding="ascii") as f:
        return f.read().strip()


def boot_time() -> datetime:
    """When the node booted, aware UTC: `OM_BOOT_TIME` (SPEC 2, for tests) wins over `btime` of /proc/stat."""
    text = os.environ.get("OM_BOOT_TIME", "").strip()
    if text:
        value = datetime.fromisoformat(text)
        if value.tzinfo is None:
            raise ValueError(f"OM_BOOT_TIME must be ISO 8601 with an offset: '{text}'")
        return value.astimezone(UTC)
    with open("/proc/stat", encoding="ascii") as f:
        for line in f:
            if line.startswith("btime "):
                return datetime.fromtimestamp(int(line.split()[1]), UTC)
    raise OSError("no btime in /proc/stat")


def _stat(pid: int) -> list[bytes] | None:
    """The fields of /proc/<pid>/stat after comm, or None when the process does not exist.

    comm may contain spaces and parentheses, so it ends at the LAST ")".
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    end = data.rfind(b")")
    if end < 0:
        return None
    fields = data[end + 1 :].split()
    return fields if len(fields) > _STARTTIME else None


def proc_start(pid: int) -> int | None:
    """Start time of `pid` in clock ticks since boot (field 22 of /proc/<pid>/stat), None if it does not exist."""
    fields = _stat(pid)
    return None if fields is None else int(fields[_STARTTIME])


def is_alive(pid: int | None, start: int | None, boot: str | None) -> bool:
    """Whether the recorded process still runs: same boot, pid present and not a zombie, same start time.

    A None `boot` or `start` is not checked (nothing was recorded to compare with).
    """
    if pid is None or pid <= 0:
        return False
    if boot is not None and boot != boot_id():
        return False
    fields = _stat(pid)
    if fields is None or fields[_STATE] in (b"Z", b"X"):
        return False
    return start is None or int(fields[_STARTTIME]) == start


def group_alive(pgid: int) -> bool:
    """Whether any non-zombie process is still in process group `pgid`.

    killpg(pgid, 0) cannot tell: it succeeds on a zombie leader, which the
    runner deliberately keeps unreaped so that the group id cannot be reused.
    """
    wanted = str(pgid).encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat(int(entry))
        if fields is not None and fields[_PGRP] == wanted and fields[_STATE] not in (b"Z", b"X"):
            return True
    return False


def self_identity() -> tuple[int, int, str]:
    """(pid, start time, boot id) of the current process, as recorded on runs for reaping."""
    pid = os.getpid()
    start = proc_start(pid)
    if start is None:
        raise OSError(f"/proc/{pid}/stat is not readable")
    return pid, start, boot_id()
