"""Impersonation (SPEC 3.3 `user`, 5.3) with the real `om`: as root, and refused when `om` is not root.

The unprivileged account is `$OM_TEST_USER`, else `nobody`; no account is ever
created.  Skips print their reason; with OM_CI=1 a skip is a failure.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from omtest import db_rows, log_lines, make_root, om, om_env, write_service


def _skip(reason: str) -> None:
    if os.environ.get("OM_CI") == "1":
        pytest.fail(f"OM_CI=1: {reason}")
    print(f"SKIP: {reason}", file=sys.stderr)
    pytest.skip(reason)


@pytest.fixture
def account() -> pwd.struct_passwd:
    name = os.environ.get("OM_TEST_USER") or "nobody"
    if os.geteuid() != 0:
        _skip("impersonation tests need root")
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        _skip(f"test account '{name}' does not exist (set OM_TEST_USER)")
    if pw.pw_uid == 0:
        _skip(f"test account '{name}' is root")
    return pw


@pytest.fixture
def shared_dir(account: pwd.struct_passwd) -> Iterator[Path]:
    """A directory below /tmp that belongs to the account (0700): tmp_path may not be reachable by it."""
    path = Path(tempfile.mkdtemp(prefix="om-imp-", dir="/tmp"))
    os.chown(path, account.pw_uid, account.pw_gid)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _as_account(account: pwd.struct_passwd) -> dict:
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": [], "cwd": "/"}


def test_run_as_user(tmp_path: Path, account: pwd.struct_passwd, shared_dir: Path) -> None:
    root = make_root(tmp_path)
    created = shared_dir / "created"
    write_service(root, "svc", f"""
    [task#0]
    command = /bin/sh -c 'echo "uid=$(id -u)"; echo "gid=$(id -g)"; echo "groups=$(id -G)"; echo "HOME=$HOME"; echo "USER=$USER"; echo "LOGNAME=$LOGNAME"; echo "cwd=$(pwd)"; : > {created}'
    user = {account.pw_name}
    """)
    proc = om(root, "svc", "run", "--rid", "task#0")
    assert proc.returncode == 0, proc.stderr
    out = dict(msg[2:].split("=", 1) for _, level, msg in log_lines(proc.stderr) if msg.startswith("| "))
    assert out["uid"] == str(account.pw_uid)
    assert out["gid"] == str(account.pw_gid)
    groups = {int(g) for g in out["groups"].split()}
    own = set(os.getgrouplist(account.pw_name, account.pw_gid))
    assert groups == own  # the account's groups (initgroups) ...
    leaked = (set(os.getgroups()) | {os.getegid()}) - own
    assert leaked and not groups & leaked  # ... and none of root's
    assert out["HOME"] == account.pw_dir
    assert out["USER"] == out["LOGNAME"] == account.pw_name
    # cwd defaults to the user's home, "/" when it does not exist
    assert out["cwd"] == (account.pw_dir if os.path.isdir(account.pw_dir) else "/")
    st = created.stat()
    assert (st.st_uid, st.st_gid) == (account.pw_uid, account.pw_gid)
    (run,) = db_rows(root, "SELECT * FROM runs")
    assert (run["state"], run["run_as"]) == ("done", account.pw_name)
    # om's own files stay root's
    run_log = root / "var" / "log" / "runs" / "svc" / f"{run['id']}.log"
    assert run_log.stat().st_uid == 0


def test_group_keyword_and_unknown_user(tmp_path: Path, account: pwd.struct_passwd) -> None:
    root = make_root(tmp_path)
    other = grp.getgrgid(0).gr_name  # a group the account is not a member of
    write_service(root, "svc", f"""
    [task#0]
    command = /bin/sh -c 'echo "ids=$(id -u):$(id -g)"'
    user = {account.pw_name}
    group = {other}
    [task#1]
    command = /bin/true
    user = no-such-user-om
    """)
    proc = om(root, "svc", "run", "--rid", "task#0")
    assert proc.returncode == 0, proc.stderr
    assert ("task#0", "INFO", f"| ids={account.pw_uid}:0") in log_lines(proc.stderr)
    proc = om(root, "svc", "run", "--rid", "task#1")
    assert proc.returncode == 1
    assert ("task#1", "ERROR", "user 'no-such-user-om' does not exist") in log_lines(proc.stderr)
    run = db_rows(root, "SELECT * FROM runs WHERE rid = 'task#1'")[0]
    assert (run["state"], run["reason"]) == ("failed", "impersonation refused")


def test_refused_without_root(account: pwd.struct_passwd, shared_dir: Path) -> None:
    check = subprocess.run([sys.executable, "-c", "import omtasks, sqlalchemy, click"], capture_output=True,
                           text=True, check=False, **_as_account(account))
    if check.returncode != 0:
        _skip(f"'{account.pw_name}' cannot import omtasks from {sys.executable}: "
              f"{check.stderr.strip().splitlines()[-1] if check.stderr.strip() else check.returncode}")
    root = shared_dir / "omroot"
    (root / "etc").mkdir(parents=True)
    flag = shared_dir / "ran"
    write_service(root, "svc", f"""
    [task#0]
    command = /usr/bin/touch {flag}
    user = root
    """)
    for path in (root, root / "etc", root / "etc" / "svc.conf"):
        os.chown(path, account.pw_uid, account.pw_gid)
    root.chmod(0o700)
    env = om_env(root)
    env["HOME"] = str(shared_dir)
    proc = subprocess.run([sys.executable, "-m", "omtasks", "svc", "run"], env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60, check=False, **_as_account(account))
    assert proc.returncode == 1, proc.stderr
    lines = log_lines(proc.stderr)
    assert ("task#0", "ERROR", "cannot run as user 'root': impersonation needs root") in lines
    assert lines[-1][2].startswith("'run' action stopped on execution error: ")
    assert not flag.exists()
    (run,) = db_rows(root, "SELECT * FROM runs")
    assert (run["state"], run["reason"]) == ("failed", "impersonation refused")
    assert run["requested_by"] == f"{account.pw_name}@n1"
    events = db_rows(root, "SELECT from_state, to_state FROM run_events WHERE run_id = :r ORDER BY id", r=run["id"])
    assert [(e["from_state"], e["to_state"]) for e in events] == [
        (None, "scheduled"), ("scheduled", "eligible"), ("eligible", "failed")]
    assert (root / "var" / "om.db").stat().st_uid == account.pw_uid
