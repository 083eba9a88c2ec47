"""Hostile and broken input (issue 11): one bad file never stops a node, nothing runs that should not,
no history is lost, and every failure is one `om: ...` line.

Each test drives the real `om` binary (omtest.om / omtest.tick) on its own OM_ROOT; docs/security.md lists
the limits checked here.
"""

from __future__ import annotations

import os
import pwd
import shutil
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from omtest import db_rows, make_root, om, om_env, runner_log_text, tick, write_node_conf, write_service

GOOD = """
[task#0]
command = /bin/true
schedule = @1m
"""

DEEP = "[" * 1000 + "]" * 1000

#: schedules that passed `validate config` and then crashed every evaluation
HOSTILE_SCHEDULES = [
    ("@99999999999", "99999999999"),
    ("anacron @daily 99999999999", "99999999999"),
    ("~09:39-01:27@999999999", "999999999"),
    ("anacron 99999999999", "99999999999"),
    ("*/99999999999999999999 * * * *", "99999999999999999999"),
    ("09:00 * * 1-12%99999999999999999", "99999999999999999"),
    ("09:00 mon:+" + "9" * 3000, "999999999"),
    (DEEP, "brackets nested deeper"),
    ('["' + '", "'.join(["09:00"] * 100) + '"]', "more than 64 list members"),
]


def one_om_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The single `om: ...` line of a failed command (no traceback, nothing else on stderr)."""
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("om: "), proc.stderr
    return lines[0]


def task_runs(root: Path, service: str) -> list[dict]:
    return db_rows(root, "SELECT * FROM runs WHERE service = :s AND action = 'run' ORDER BY id", s=service)


def entry(root: Path, service: str, rid: str = "task#0") -> dict:
    (row,) = db_rows(root, "SELECT * FROM schedule_entries WHERE service = :s AND rid = :r", s=service, r=rid)
    return row


def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("root checks apply to a runner running as root")


# -- 1. one bad service file never stops the others -----------------------------------------------


@pytest.mark.parametrize(("expr", "token"), HOSTILE_SCHEDULES, ids=range(len(HOSTILE_SCHEDULES)))
def test_hostile_schedules_are_syntax_errors_naming_the_token(tmp_path: Path, expr: str, token: str) -> None:
    root = make_root(tmp_path)
    for command in ("check", "next"):
        proc = om(root, "schedule", command, expr)
        assert proc.returncode == 2, proc.stderr
        line = one_om_line(proc)
        assert line.startswith("om: invalid schedule '") and token in line, line
        assert len(line) < 1000  # a 6,000-character value is not copied whole


def test_a_long_interval_listed_many_times_stops_at_the_end_of_the_calendar(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    for expr in ("@520w", "anacron 3660", "cron 0 0 29 2 *"):
        proc = om(root, "schedule", "next", expr, "--count", "1000", "--from", "2999-12-01 00:00")
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stdout.strip(), expr


def test_a_tick_runs_the_good_service_whatever_the_others_hold(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    write_service(root, "good", GOOD)
    for i, (expr, _) in enumerate(HOSTILE_SCHEDULES):
        write_service(root, f"bad{i}", f"[task#0]\ncommand = /bin/true\nschedule = {expr}\n")
    for minute in range(3):
        tick(root, f"2026-03-02 10:0{minute}:00")
    assert [r["state"] for r in task_runs(root, "good")] == ["done"] * 3
    for i in range(len(HOSTILE_SCHEDULES)):
        assert task_runs(root, f"bad{i}") == []
        row = entry(root, f"bad{i}")
        assert row["verdict"] == "config_invalid" and "invalid schedule" in row["reason"]
    # the commands that read every file no longer crash either
    for args in (("ls",), ("node", "print", "schedule"), ("bad7", "validate", "config"),
                 ("bad7", "print", "schedule")):
        proc = om(root, *args)
        assert "Traceback" not in proc.stderr, (args, proc.stderr)
        assert proc.returncode in (0, 1), (args, proc.stderr)
    proc = om(root, "bad0", "validate", "config")
    assert proc.returncode == 1 and "too large (at most 9 digits)" in proc.stdout + proc.stderr


# -- 2. a service name is a name, not a path ------------------------------------------------------


@pytest.mark.parametrize("action", [("run",), ("print", "config"), ("print", "status"), ("print", "schedule"),
                                    ("start",), ("validate", "config")])
def test_a_path_is_not_a_service_name(tmp_path: Path, action: tuple[str, ...]) -> None:
    root = make_root(tmp_path)
    evil = tmp_path / "evil"
    evil.mkdir()
    flag = tmp_path / "PWNED"
    (evil / "pwn.conf").write_text(f"[task#0]\ncommand = /usr/bin/touch {flag}\n")
    (root / "x.conf").write_text(f"[task#0]\ncommand = /usr/bin/touch {flag}\n")
    for name in (str(evil / "pwn"), "../x", "../../" + str(evil / "pwn")):
        line = one_om_line(om(root, name, *action))
        assert line.startswith(f"om: invalid service name '{name}'"), line
    assert not flag.exists()


def test_om_nodename_is_validated(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    flag = tmp_path / "X"
    write_service(root, "svc", "[task#0]\ncommand = /bin/echo {nodename}\nschedule = @1m\n")
    for bad in (f"n1;touch {flag}", "../../x", "n1 n2", "a" * 300, " "):
        proc = om(root, "runner", "tick", "--now", "2026-03-02 10:00", node=bad)
        line = one_om_line(proc)
        assert proc.returncode == 2 and line.startswith("om: invalid node name"), line
        assert len(line) < 400
    assert not flag.exists()
    assert not (root / "x").exists() and not (tmp_path / "x").exists()
    assert not (root / "var").exists() or list((root / "var" / "run").glob("*x*")) == []


def test_a_long_service_name_is_one_line(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    line = one_om_line(om(root, "a" * 5000, "run"))
    assert "invalid service name" in line and len(line) < 300


# -- 3. root does not run what others can write -----------------------------------------------------


def test_a_symlink_out_of_etc_is_not_read_and_nothing_is_echoed(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    write_service(root, "good", GOOD)
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$SECRETHASH:19000:0:99999:7:::\n[task#0]\ncommand = /bin/true\nschedule = @1m\n")
    (root / "etc" / "link.conf").symlink_to(secret)
    # a file inside etc/ that is not INI: its lines are not quoted in messages either
    write_service(root, "garbage", "root:$6$OTHERHASH:19000:0:99999:7:::\nnobody:*:19000::::::\n")
    tick(root, "2026-03-02 10:00:00")
    assert task_runs(root, "link") == [] and len(task_runs(root, "good")) == 1
    dump = "\n".join(str(r) for t in ("services", "schedule_entries", "schedule_decisions")
                     for r in db_rows(root, f"SELECT * FROM {t}"))
    everything = dump + runner_log_text(root) + om(root, "ls").stdout + om(root, "ls").stderr
    everything += om(root, "garbage", "validate", "config").stdout
    assert "symlink to a file outside etc/" in everything
    assert "SECRETHASH" not in everything and "OTHERHASH" not in everything and "19000" not in everything


def test_root_warns_about_a_token_others_can_read(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    path = write_node_conf(root, url="http://127.0.0.1:9", token="TOPSECRET")
    path.chmod(0o644)
    write_service(root, "good", "[DEFAULT]\npush_schedule =\nresinfo_schedule =\n" + GOOD)
    tick(root, "2026-03-02 10:00:00")
    log = runner_log_text(root)
    assert f"token: readable by others: chmod o-r {path}" in log
    assert "TOPSECRET" not in log


# -- 4. a marker in the future is reported ------------------------------------------------------------


def test_a_marker_from_the_future_is_reported_with_the_real_next_run(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    write_service(root, "svc", """
        [task#iv]
        command = /bin/true
        schedule = @10m
        [task#cr]
        command = /bin/true
        schedule = */5 * * * *
        """)
    tick(root, "2036-01-01 00:00:00")  # a clock ten years ahead
    tick(root, "2026-01-01 00:03:00")  # the clock is right again
    log = runner_log_text(root)
    assert "clock behind the previous tick of this node (2036-01-01 00:00:00)" in log
    for rid in ("task#iv", "task#cr"):
        assert f"svc {rid}: last run recorded in the future (2036-01-01 00:00:00" in log
    proc = om(root, "svc", "print", "schedule", "--format", "json", env={"OM_NOW": "2026-01-01 00:04:00"})
    rows = {r["rid"]: r for r in __import__("json").loads(proc.stdout) if r["rid"]}
    for rid, nxt in (("task#iv", "2036-01-01T00:10:00+00:00"), ("task#cr", "2036-01-01T00:05:00+00:00")):
        assert rows[rid]["note"].startswith("last run recorded in the future"), rows[rid]
        assert rows[rid]["next_run"] == nxt  # the run the runner will start, not a slot it will skip


def test_a_marker_a_minute_ahead_is_skew_not_a_clock_jump(tmp_path: Path) -> None:
    # the README's demo ticks with --now one minute ahead, and nodes' clocks differ by seconds
    root = make_root(tmp_path)
    write_service(root, "svc", "[task#iv]\ncommand = /bin/true\nschedule = @1m\n")
    tick(root, "2026-01-01 00:01:00")
    proc = om(root, "svc", "print", "schedule", "--format", "json", env={"OM_NOW": "2026-01-01 00:00:10"})
    rows = {r["rid"]: r for r in __import__("json").loads(proc.stdout) if r["rid"]}
    assert rows["task#iv"]["note"] is None or "future" not in rows["task#iv"]["note"], rows["task#iv"]
    proc = om(root, "svc", "print", "schedule", "--format", "json", env={"OM_NOW": "2025-12-31 23:55:00"})
    rows = {r["rid"]: r for r in __import__("json").loads(proc.stdout) if r["rid"]}
    assert rows["task#iv"]["note"].startswith("last run recorded in the future"), rows["task#iv"]


# -- 5. the database is never silently reset ----------------------------------------------------------


def _with_history(tmp_path: Path) -> Path:
    root = make_root(tmp_path)
    write_service(root, "svc", "[task#0]\ncommand = /bin/echo hello\n")
    assert om(root, "svc", "run").returncode == 0
    return root


@pytest.mark.parametrize("how", ["deleted", "emptied"])
def test_a_lost_database_is_an_error_not_a_new_one(tmp_path: Path, how: str) -> None:
    root = _with_history(tmp_path)
    db = root / "var" / "om.db"
    if how == "deleted":
        db.unlink()
    else:
        db.write_bytes(b"")
    for args in (("svc", "print", "runs"), ("runner", "tick"), ("svc", "run"), ("ls",)):
        line = one_om_line(om(root, *args))
        assert f"database {db} is {'missing' if how == 'deleted' else 'empty'}" in line, line
        assert "om db init" in line and "runs/" in line
    assert not db.exists() or db.stat().st_size == 0
    proc = om(root, "db", "init")
    assert proc.returncode == 0, proc.stderr
    assert om(root, "svc", "print", "runs").returncode == 0
    assert "already exists" in one_om_line(om(root, "db", "init"))


def test_a_lost_database_names_the_upgrade_backup_and_moves_an_old_wal_aside(tmp_path: Path) -> None:
    root = _with_history(tmp_path)
    db = root / "var" / "om.db"
    shutil.copy(db, root / "var" / "om.db.bak-0000")
    db.unlink()
    wal = root / "var" / "om.db-wal"
    wal.write_bytes(b"stale wal")
    line = one_om_line(om(root, "svc", "print", "runs"))
    assert f"restore it from {root}/var/om.db.bak-0000 (the backup of the last upgrade)" in line
    assert str(wal) in line
    assert om(root, "db", "init").returncode == 0
    assert not wal.exists() and list((root / "var").glob("om.db-wal.orphaned-*"))


def test_readers_never_wait_for_a_writer(tmp_path: Path) -> None:
    root = _with_history(tmp_path)
    writer = sqlite3.connect(root / "var" / "om.db", isolation_level=None, timeout=1)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("UPDATE runs SET reason = 'held' WHERE id = 1")
    try:
        for args in (("svc", "print", "runs"), ("svc", "print", "schedule"), ("ls",), ("svc", "print", "status"),
                     ("node", "print", "schedule")):
            started = time.monotonic()
            proc = om(root, *args)
            assert proc.returncode == 0, (args, proc.stderr)
            assert time.monotonic() - started < 5, f"{args} waited for the writer"  # busy timeout: 10 s
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def _unshare_available() -> bool:
    return os.geteuid() == 0 and shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "-m", "true"], capture_output=True, check=False).returncode == 0


def _in_private_mount(root: Path, setup: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`om args` inside a private mount namespace after the shell `setup` (which sees $VAR)."""
    from omtest import OM_BIN

    script = f'set -e; VAR="{root}/var"; {setup}; exec "$0" "$@"'
    return subprocess.run(["unshare", "-m", "sh", "-c", script, OM_BIN, *args], env=om_env(root),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False)


def test_a_full_disk_says_no_space_left_on_device(tmp_path: Path) -> None:
    if not _unshare_available():
        pytest.skip("needs root and unshare -m to mount a small file system")
    root = make_root(tmp_path)
    write_service(root, "svc", "[task#0]\ncommand = /bin/true\n")
    (root / "var").mkdir()
    fill = 'mount -t tmpfs -o size=256k tmpfs "$VAR"; dd if=/dev/zero of="$VAR/fill" bs=4k 2>/dev/null || true'
    proc = _in_private_mount(root, fill, "svc", "run")
    line = one_om_line(proc)
    assert line.startswith("om: no space left on device"), line


def test_a_read_only_var_is_one_line(tmp_path: Path) -> None:
    if not _unshare_available():
        pytest.skip("needs root and unshare -m to mount a read-only file system")
    root = _with_history(tmp_path)
    ro = 'mount --bind "$VAR" "$VAR"; mount -o remount,ro,bind "$VAR"'
    for args in (("svc", "run"), ("runner", "tick")):
        line = one_om_line(_in_private_mount(root, ro, *args))
        assert line.startswith("om: read-only file system: "), line


# -- 8. large inputs stay linear ------------------------------------------------------------------


def test_large_values_and_files_are_refused_quickly(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    write_service(root, "good", GOOD)
    write_service(root, "cmd", "[task#0]\ncommand = /bin/echo " + "x" * 2_000_000 + "\nschedule = @1m\n")
    (root / "etc" / "huge.conf").write_text(
        "".join(f"[task#{i}]\ncommand = /bin/true\nschedule = @1h\n" for i in range(200_000)))
    write_service(root, "many", "".join(f"[task#{i}]\ncommand = true\n" for i in range(1001)))
    started = time.monotonic()
    tick(root, "2026-03-02 10:00:00")
    tick(root, "2026-03-02 10:01:00")
    assert time.monotonic() - started < 30
    assert len(task_runs(root, "good")) == 2
    ls = om(root, "ls").stdout
    assert "invalid: file too large (" in ls and "at most 1048576" in ls
    out = om(root, "many", "validate", "config")
    assert "too many sections (1001, at most 1000)" in out.stdout + out.stderr


# -- 9. no tracebacks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    ("runner", "tick", "--now", "9999-12-31 23:59"),
    ("runner", "tick", "--now", "0001-01-01"),
    ("runner", "tick", "--now", "2026-01-01T00:00+99:00"),
    ("schedule", "next", "@1h", "--from", "9999-12-31 23:59"),
    ("schedule", "next", "@1h", "--from", "2026-01-01 00:00-24:00"),
    ("schedule", "check", "@1h", "--now", "0001-01-01"),
    ("schedule", "next", "@1h", "--last", "+99:00"),
    ("svc", "print", "runs", "--limit", "99999999999999999999999"),
    ("svc", "confirm", "--run", "99999999999999999999999", "--yes"),
    ("svc", "confirm", "--run", "-1", "--yes"),
    ("runner", "exec", "99999999999999999999999"),
])
def test_out_of_range_options_are_one_line(tmp_path: Path, args: tuple[str, ...]) -> None:
    root = make_root(tmp_path)
    write_service(root, "svc", "[task#0]\ncommand = /bin/true\n")
    line = one_om_line(om(root, *args))
    assert "invalid" in line.lower() or "range" in line, line


def test_an_out_of_range_om_now_is_one_line(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    write_service(root, "svc", "[task#0]\ncommand = /bin/true\n")
    for value in ("9999-12-31", "garbage", "2026-01-01 00:00+99:00"):
        line = one_om_line(om(root, "svc", "print", "schedule", env={"OM_NOW": value}))
        assert line.startswith("om: OM_NOW: invalid time"), line


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    (root / "etc" / "bom.conf").write_bytes(b"\xef\xbb\xbf[task#0]\ncommand = /bin/true\nschedule = @1m\n")
    proc = om(root, "bom", "validate", "config")
    assert proc.returncode == 0, proc.stdout
    tick(root, "2026-03-02 10:00:00")
    assert len(task_runs(root, "bom")) == 1


def test_a_non_root_user_on_roots_om_root_is_one_line(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to run om as another account")
    try:
        account = pwd.getpwnam(os.environ.get("OM_TEST_USER") or "nobody")
    except KeyError:
        pytest.skip("no unprivileged test account")
    from omtest import OM_BIN

    base = Path(tempfile.mkdtemp(prefix="om-hostile-", dir="/tmp"))
    try:
        base.chmod(0o755)
        root = _with_history(base)
        root.chmod(0o755)
        (root / "var").chmod(0o750)
        probe = subprocess.run([OM_BIN, "--version"], capture_output=True, text=True, check=False,
                               user=account.pw_uid, group=account.pw_gid, extra_groups=[], cwd="/")
        if probe.returncode != 0:
            pytest.skip(f"{account.pw_name} cannot run {OM_BIN}")
        for args in (("svc", "print", "runs"), ("runner", "tick"), ("svc", "run")):
            proc = subprocess.run([OM_BIN, *args], env=om_env(root), capture_output=True, text=True, check=False,
                                  stdin=subprocess.DEVNULL, user=account.pw_uid, group=account.pw_gid,
                                  extra_groups=[], cwd="/", timeout=60)
            line = one_om_line(proc)
            assert line.startswith("om: permission denied: ") and line.endswith("(run as root or set OM_ROOT)"), line
    finally:
        shutil.rmtree(base, ignore_errors=True)
