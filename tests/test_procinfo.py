"""omtasks.runner.procinfo on real processes: live, dead, zombie, reused identities."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from omtasks.runner import procinfo


def wait_for_state(pid: int, state: str) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        data = Path(f"/proc/{pid}/stat").read_bytes()
        if data[data.rfind(b")") + 2 :].startswith(state.encode()):
            return
        time.sleep(0.01)
    raise AssertionError(f"pid {pid} never reached state {state}")


def test_boot_id() -> None:
    value = procinfo.boot_id()
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", value)
    assert value == procinfo.boot_id()


def test_boot_time_from_proc_stat(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OM_BOOT_TIME", raising=False)
    value = procinfo.boot_time()
    assert value.tzinfo is not None and value.utcoffset() == timedelta(0)
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    assert abs((datetime.now(UTC) - value).total_seconds() - uptime) < 5


def test_boot_time_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OM_BOOT_TIME", "2026-11-30T08:00:00+01:00")
    value = procinfo.boot_time()
    assert value == datetime(2026, 11, 30, 7, 0, tzinfo=UTC)
    assert value.tzinfo is UTC
    monkeypatch.setenv("OM_BOOT_TIME", "2026-11-30T08:00:00Z")
    assert procinfo.boot_time() == datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    monkeypatch.setenv("OM_BOOT_TIME", "2026-11-30T08:00:00")
    with pytest.raises(ValueError, match="offset"):
        procinfo.boot_time()


def test_self_identity() -> None:
    pid, start, boot = procinfo.self_identity()
    assert pid == os.getpid()
    assert start == procinfo.proc_start(pid) and start > 0
    assert boot == procinfo.boot_id()
    assert procinfo.is_alive(pid, start, boot)


def test_live_and_mismatched_identity() -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        start = procinfo.proc_start(child.pid)
        boot = procinfo.boot_id()
        assert start is not None
        assert procinfo.is_alive(child.pid, start, boot)
        assert procinfo.is_alive(child.pid, None, None)
        assert not procinfo.is_alive(child.pid, start + 1, boot)  # pid reused by another process
        assert not procinfo.is_alive(child.pid, start, "00000000-0000-0000-0000-000000000000")
        assert not procinfo.is_alive(None, start, boot)
    finally:
        child.kill()
        child.wait()


def test_dead_pid() -> None:
    child = subprocess.Popen(["true"])
    child.wait()
    assert procinfo.proc_start(child.pid) is None
    assert not procinfo.is_alive(child.pid, None, None)


def test_zombie_counts_as_dead() -> None:
    child = subprocess.Popen(["true"])
    try:
        wait_for_state(child.pid, "Z")
        assert procinfo.proc_start(child.pid) is not None
        assert not procinfo.is_alive(child.pid, procinfo.proc_start(child.pid), procinfo.boot_id())
    finally:
        child.wait()


def test_comm_with_spaces_and_parentheses(tmp_path: Path) -> None:
    odd = tmp_path / "a) b (c"
    shutil.copy(shutil.which("sleep") or "/bin/sleep", odd)
    child = subprocess.Popen([str(odd), "30"])
    try:
        wait_for_state(child.pid, "S")
        assert ")" in Path(f"/proc/{child.pid}/comm").read_text()
        start = procinfo.proc_start(child.pid)
        assert start is not None
        assert start == int(Path(f"/proc/{child.pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[19])
        assert procinfo.is_alive(child.pid, start, procinfo.boot_id())
    finally:
        child.kill()
        child.wait()


def test_group_alive() -> None:
    child = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        assert procinfo.group_alive(child.pid)
    finally:
        child.kill()
        wait_for_state(child.pid, "Z")
    assert not procinfo.group_alive(child.pid)  # only a zombie left
    child.wait()
