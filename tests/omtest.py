"""Helpers for end-to-end tests that drive the real `om` binary (SPEC 14).

Typical use::

    from omtest import db_rows, make_root, om, write_service

    def test_something(tmp_path):
        root = make_root(tmp_path)
        write_service(root, "svc", "[task#0]\\ncommand = /bin/true\\n")
        proc = om(root, "svc", "run", "--rid", "task#0")
        assert proc.returncode == 0, proc.stderr
        rows = db_rows(root, "SELECT state FROM runs WHERE service = :s", s="svc")

`om()` runs the `om` console script installed next to the running Python
(`/opt/om-ci/bin/om` in CI) with a clean environment: `OM_ROOT=root`,
`OM_NODENAME=node`, `TZ=UTC`, and no `OM_DB_URL`/`OM_NOW` inherited from the
caller.  `db_rows()` opens `$root/var/om.db` read-only, so it never creates,
upgrades or locks the database a test is looking at.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

#: the `om` console script of the interpreter running the tests
OM_BIN = str(Path(sys.executable).with_name("om"))

#: a terminal log line of SPEC 5.6: `HH:MM:SS,mmm <rid:11> <LEVEL:7> message` (a longer rid is not cut)
LOG_LINE = re.compile(r"^(\d{2}):(\d{2}):(\d{2}),(\d{3}) (.{11}|\S{12,}) (DEBUG  |INFO   |WARNING|ERROR  ) (.*)$")

#: variables never inherited by an `om` subprocess (tests set them explicitly)
_SCRUBBED = ("OM_ROOT", "OM_DB_URL", "OM_NOW", "OM_NODENAME", "OM_TICK_LOCK", "OM_BOOT_TIME", "TZ")


def make_root(tmp_path: Path) -> Path:
    """Create and return an empty OM_ROOT (`tmp_path/omroot` with `etc/`, mode 0750)."""
    root = tmp_path / "omroot"
    (root / "etc").mkdir(parents=True, exist_ok=True)
    root.chmod(0o750)
    return root


def write_service(root: Path, name: str, text_: str) -> Path:
    """Write `$root/etc/<name>.conf` (the text is dedented) and return its path."""
    path = root / "etc" / f"{name}.conf"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text_).lstrip("\n"))
    return path


def om_env(root: Path, env: dict[str, str] | None = None, node: str = "n1") -> dict[str, str]:
    """The environment `om()` uses: the caller's minus the om variables, plus OM_ROOT, OM_NODENAME, TZ=UTC."""
    full = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    full.update({"OM_ROOT": str(root), "OM_NODENAME": node, "TZ": "UTC"})
    if env:
        full.update(env)
    return full


def om_cmd(*args: str) -> list[str]:
    """The argv of `om args...` (for tests that need Popen, e.g. concurrent runs)."""
    return [OM_BIN, *[str(a) for a in args]]


def om(
    root: Path,
    *args: str,
    env: dict[str, str] | None = None,
    input: str | None = None,  # noqa: A002 - mirrors subprocess.run
    timeout: float = 60,
    node: str = "n1",
) -> subprocess.CompletedProcess[str]:
    """Run `om args...` to completion; text mode, stdout and stderr captured, never raises on exit code.

    Without `input` stdin is /dev/null (so `om` never sees a terminal).
    """
    return subprocess.run(
        om_cmd(*args),
        env=om_env(root, env, node),
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def db_path(root: Path) -> Path:
    """The default SQLite database of an OM_ROOT."""
    return root / "var" / "om.db"


def db_rows(root: Path, sql: str, **params: Any) -> list[dict[str, Any]]:
    """Run one SELECT against `$root/var/om.db` opened read-only; rows as dicts (column name -> value)."""
    url = f"sqlite:///file:{db_path(root)}?mode=ro&uri=true"
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA busy_timeout = 10000")
            result = conn.execute(text(sql), params)
            return [dict(row._mapping) for row in result]
    finally:
        engine.dispose()


# -- runner helpers (added for the e2e tick/race/crash/confirmation tests) ------------------------


def tick(
    root: Path,
    now: str,
    *,
    wait: bool = True,
    verbose: bool = False,
    env: dict[str, str] | None = None,
    node: str = "n1",
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """`om runner tick --now NOW [--wait] [-v]`; asserts exit 0 and, without -v, a silent tick (SPEC 8.3)."""
    args = ["runner", "tick", "--now", now]
    if wait:
        args.append("--wait")
    if verbose:
        args.append("-v")
    proc = om(root, *args, env=env, node=node, timeout=timeout)
    assert proc.returncode == 0, f"tick at {now}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    if not verbose:
        assert proc.stdout == "" and proc.stderr == "", f"tick at {now} is not silent:\n{proc.stdout}\n{proc.stderr}"
    return proc


def wait_until(predicate: Any, timeout: float = 30, interval: float = 0.1, what: str = "condition") -> Any:
    """Poll `predicate()` until it returns something truthy (returned); AssertionError after `timeout` s."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def utc_text(value: Any) -> str | None:
    """A stored instant (naive UTC, str or datetime) as 'YYYY-MM-DD HH:MM:SS'; None stays None."""
    if value is None:
        return None
    if not isinstance(value, str):
        value = value.strftime("%Y-%m-%d %H:%M:%S")
    return value.replace("T", " ")[:19]


def runner_log_text(root: Path) -> str:
    """`$root/var/log/runner.log`, '' when missing."""
    path = root / "var" / "log" / "runner.log"
    return path.read_text(errors="replace") if path.exists() else ""


def wait_rows(root: Path, sql: str, timeout: float = 10, **params: Any) -> list[dict[str, Any]]:
    """Poll `db_rows(root, sql, **params)` until it returns rows (the database may not exist yet); [] on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            rows = db_rows(root, sql, **params)
        except Exception:  # database not created yet, or busy
            rows = []
        if rows or time.monotonic() >= deadline:
            return rows
        time.sleep(0.05)


def log_lines(stderr: str) -> list[tuple[str, str, str]]:
    """The terminal log lines of `stderr` as (rid, level, message), stripped; other lines are left out."""
    found = []
    for line in stderr.splitlines():
        m = LOG_LINE.match(line)
        if m:
            found.append((m.group(5).strip(), m.group(6).strip(), m.group(7)))
    return found
