"""Identities: resolution, impersonation as root, and the refusal without root (SPEC 5.3 "Testing")."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from omtasks.runner.execute import PATH, CommandSpec, base_environment, run
from omtasks.runner.identity import ImpersonationError, resolve


def unavailable(reason: str) -> None:
    """Skip with the reason printed; under OM_CI=1 a skipped impersonation test is a failure."""
    print(f"impersonation test not run: {reason}", file=sys.stderr)
    if os.environ.get("OM_CI") == "1":
        pytest.fail(f"OM_CI=1: {reason}")
    pytest.skip(reason)


def as_account(pw: pwd.struct_passwd, code: str) -> subprocess.CompletedProcess[str]:
    """Run Python `code` as the account, with its primary group and no supplementary group of ours."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        user=pw.pw_uid,
        group=pw.pw_gid,
        extra_groups=[],
        cwd="/",
        env={"PATH": PATH, "HOME": "/"},
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture(scope="module")
def account() -> pwd.struct_passwd:
    name = os.environ.get("OM_TEST_USER") or "nobody"
    if os.geteuid() != 0:
        unavailable("needs root")
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        unavailable(f"account '{name}' does not exist")
    probe = as_account(pw, "import omtasks.runner.execute")
    if probe.returncode != 0:
        unavailable(f"account '{name}' cannot read the installation: {probe.stderr.strip()}")
    return pw


@pytest.fixture
def shared_dir(account: pwd.struct_passwd) -> Path:
    """A directory only the account can write to (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="om-identity-"))
    os.chown(path, account.pw_uid, account.pw_gid)
    path.chmod(0o700)
    yield path
    shutil.rmtree(path)


def test_resolve_current_user() -> None:
    ident = resolve(None, None)
    pw = pwd.getpwuid(os.geteuid())
    assert (ident.name, ident.uid, ident.home, ident.shell) == (pw.pw_name, pw.pw_uid, pw.pw_dir, pw.pw_shell)
    assert ident.groups == tuple(os.getgrouplist(pw.pw_name, ident.gid))


def test_resolve_by_number() -> None:
    pw = pwd.getpwuid(os.geteuid())
    gid = os.getegid()
    assert resolve(str(pw.pw_uid), str(gid)) == resolve(pw.pw_name, grp.getgrgid(gid).gr_name)


def test_unknown_user_and_group() -> None:
    with pytest.raises(ImpersonationError) as info:
        resolve("om-no-such-user", None)
    assert str(info.value) == "user 'om-no-such-user' does not exist"
    with pytest.raises(ImpersonationError) as info:
        resolve(None, "om-no-such-group")
    assert str(info.value) == "group 'om-no-such-group' does not exist"
    with pytest.raises(ImpersonationError) as info:
        resolve("4294967290", None)
    assert str(info.value) == "user '4294967290' does not exist"


@pytest.mark.root
def test_impersonation_as_root(account: pwd.struct_passwd, shared_dir: Path) -> None:
    ident = resolve(account.pw_name, None)
    expected_groups = set(os.getgrouplist(account.pw_name, account.pw_gid))
    assert set(ident.groups) == expected_groups
    lines: list[str] = []
    result = run(
        CommandSpec(
            command='id -u; id -g; id -G; echo "HOME=$HOME"; echo "USER=$USER"; pwd; touch made',
            identity=ident,
            cwd=str(shared_dir),
            umask=0o022,
            env=base_environment(ident, {"OM_RUN_ID": "1"}),
            timeout=30,
        ),
        on_line=lambda stream, line: lines.append(f"{stream}:{line}"),
        log_path=str(shared_dir.parent / f"{shared_dir.name}.log"),
    )
    os.unlink(shared_dir.parent / f"{shared_dir.name}.log")
    assert result.exit_code == 0, lines
    uid, gid, groups, home, user, cwd = (line.split(":", 1)[1] for line in lines)
    assert int(uid) == account.pw_uid
    assert int(gid) == account.pw_gid
    got_groups = {int(g) for g in groups.split()}
    assert got_groups == expected_groups
    if 0 not in expected_groups:
        assert 0 not in got_groups  # root's own group did not leak
    assert home == f"HOME={account.pw_dir}"
    assert user == f"USER={account.pw_name}"
    assert cwd == str(shared_dir)
    made = (shared_dir / "made").stat()
    assert (made.st_uid, made.st_gid) == (account.pw_uid, account.pw_gid)


@pytest.mark.root
def test_impersonation_default_cwd(account: pwd.struct_passwd) -> None:
    ident = resolve(account.pw_name, None)
    lines: list[str] = []
    result = run(
        CommandSpec("pwd", ident, None, None, base_environment(ident, {}), None),
        on_line=lambda _s, line: lines.append(line),
        log_path=None,
    )
    assert result.exit_code == 0
    assert lines == [account.pw_dir if os.path.isdir(account.pw_dir) else "/"]


@pytest.mark.root
def test_refusal_without_root(account: pwd.struct_passwd) -> None:
    done = as_account(
        account,
        """
        from omtasks.runner import identity, execute
        try:
            identity.resolve('root', None)
        except identity.ImpersonationError as exc:
            print(exc)
        me = identity.resolve(None, None)
        print(me.name)
        spec = execute.CommandSpec('id -u', me, '/', None, execute.base_environment(me, {}), None)
        print(execute.run(spec, on_line=lambda s, line: print(s, line), log_path=None).exit_code)
        """,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "cannot run as user 'root': impersonation needs root",
        account.pw_name,
        f"stdout {account.pw_uid}",
        "0",
    ]
