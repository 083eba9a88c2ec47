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
import signal
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


# -- built-in actions, collector and sync helpers (added for the e2e built-in/sync/compliance tests) ---------


def write_node_conf(
    root: Path,
    *,
    url: str | None = None,
    token: str | None = None,
    transports: dict[str, str] | None = None,
    extra: str = "",
) -> Path:
    """Write `$root/etc/node.conf`: `[collector] url/token` when given, `[nodes] <node> = <transport>`, `extra`."""
    lines: list[str] = []
    if url is not None or token is not None:
        lines.append("[collector]")
        lines += [f"url = {url}"] if url is not None else []
        lines += [f"token = {token}"] if token is not None else []
    if transports:
        lines.append("[nodes]")
        lines += [f"{node} = {where}" for node, where in transports.items()]
    path = root / "etc" / "node.conf"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n" + textwrap.dedent(extra))
    return path


def write_module(root: Path, name: str, script: str) -> Path:
    """An executable compliance module `$root/compliance/modules/<name>` (a /bin/sh script body)."""
    path = root / "compliance" / "modules" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + textwrap.dedent(script).lstrip("\n"))
    path.chmod(0o755)
    return path


def shared_db_rows(db_file: Path, sql: str, **params: Any) -> list[dict[str, Any]]:
    """`db_rows` for a database file shared by several OM_ROOTs (OM_DB_URL), opened read-only."""
    url = f"sqlite:///file:{db_file}?mode=ro&uri=true"
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA busy_timeout = 10000")
            return [dict(row._mapping) for row in conn.execute(text(sql), params)]
    finally:
        engine.dispose()


# -- cluster helpers (added for the cluster tests: several nodes sharing one database) ------------


def url_rows(url: str, sql: str, **params: Any) -> list[dict[str, Any]]:
    """Run one SELECT against any database URL (a SQLite file is opened read-only); rows as dicts."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        u = f"sqlite:///file:{u.database}?mode=ro&uri=true"
    engine = create_engine(u, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                conn.exec_driver_sql("PRAGMA busy_timeout = 10000")
            return [dict(row._mapping) for row in conn.execute(text(sql), params)]
    finally:
        engine.dispose()


def concurrent_ticks(
    roots: dict[str, Path], now: str, *, env: dict[str, str] | None = None, timeout: float = 120
) -> None:
    """Start `om runner tick --now NOW --wait` for every node of `roots` (node -> OM_ROOT) together.

    Real `om` processes, `OM_TICK_LOCK=0`, the same `--now`; returns once all
    exited; asserts each exited 0 and was silent (SPEC 8.3).
    """
    full = {"OM_TICK_LOCK": "0", **(env or {})}
    procs = {
        node: subprocess.Popen(
            om_cmd("runner", "tick", "--now", now, "--wait"), env=om_env(root, full, node),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for node, root in roots.items()
    }
    problems = []
    for node, proc in procs.items():
        out, err = proc.communicate(timeout=timeout)
        if proc.returncode != 0 or out or err:
            problems.append(f"{node} tick at {now}: exit {proc.returncode}\n{out}\n{err}")
    assert not problems, "\n".join(problems)


def _forked_worker(ctx: Any, run_ids: list[int]) -> int | None:
    """Stand-in for `omtasks.runner.launch.spawn_worker` in forked ticks: `om runner exec` in a forked child.

    Same contract: a new session, stdin /dev/null, output to runner.log, the
    tick's `now` passed as OM_NOW, pid/start time/boot id recorded on the runs.
    """
    import traceback

    from sqlalchemy import update

    from omtasks import statemachine as sm
    from omtasks.db.schema import runs
    from omtasks.paths import ensure_dir
    from omtasks.runner import procinfo

    log_path = str(ensure_dir(ctx.log_dir) / "runner.log")
    pid = os.fork()
    if pid == 0:  # the worker
        code = 70
        try:
            os.setsid()
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            os.dup2(log_fd, 1)
            os.dup2(log_fd, 2)
            if ctx.explicit_now:
                os.environ["OM_NOW"] = ctx.now.isoformat()
            from omtasks.cli import main

            main(["runner", "exec", *map(str, run_ids)])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:  # noqa: BLE001 - the child must never return into the test
            traceback.print_exc()
        finally:
            os._exit(code)
    c = runs.c
    with ctx.engine.begin() as conn:
        conn.execute(update(runs)
                     .where(c.id.in_(run_ids), c.state.in_((sm.ELIGIBLE, sm.RUNNING)), c.pid.is_(None))
                     .values(pid=pid, proc_start=procinfo.proc_start(pid), boot_id=procinfo.boot_id()))
    return pid


def preload_runner() -> None:
    """Import what a tick and a worker use, so that forked ticks do not pay for it."""
    import omtasks.cli.runner  # noqa: F401
    import omtasks.config  # noqa: F401
    import omtasks.runner.builtin  # noqa: F401
    import omtasks.runner.instance  # noqa: F401
    import omtasks.runner.pipeline  # noqa: F401
    import omtasks.runner.tick  # noqa: F401
    import omtasks.runner.worker  # noqa: F401
    import omtasks.schedule  # noqa: F401


def forked_ticks(
    roots: dict[str, Path], now: str, *, env: dict[str, str] | None = None, timeout: float = 120, copies: int = 1
) -> None:
    """In-process variant of `concurrent_ticks` for long simulations (SPEC 14).

    Each node's tick is the `om runner tick --now NOW --wait` command itself,
    called through `omtasks.cli.main` in a process forked from the test (so no
    interpreter start and no imports), with that node's environment and
    `OM_TICK_LOCK=0`; the nodes' ticks run concurrently (`copies` ticks per
    node, to race a node with itself).  The workers are forked the same way
    (`_forked_worker`).  Asserts exit 0 and silence.
    """
    import tempfile
    import traceback

    preload_runner()
    full = {"OM_TICK_LOCK": "0", **(env or {})}
    children: list[tuple[str, int, Any]] = []
    for node, root in [item for item in roots.items() for _ in range(copies)]:
        out = tempfile.TemporaryFile()
        pid = os.fork()
        if pid == 0:  # the tick
            code = 70
            try:
                os.environ.clear()
                os.environ.update(om_env(root, full, node))
                os.dup2(out.fileno(), 1)
                os.dup2(out.fileno(), 2)
                import omtasks.runner.tick as tick_mod
                from omtasks.cli import main

                tick_mod.spawn_worker = _forked_worker
                main(["runner", "tick", "--now", now, "--wait"])
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except BaseException:  # noqa: BLE001 - the child must never return into the test
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        children.append((node, pid, out))
    deadline = time.monotonic() + timeout
    problems = []
    for node, pid, out in children:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() >= deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                status = -1
                break
            time.sleep(0.01)
        out.seek(0)
        text_ = out.read().decode(errors="replace")
        out.close()
        code = os.waitstatus_to_exitcode(status) if status != -1 else "timeout"
        if code != 0 or text_:
            problems.append(f"{node} forked tick at {now}: exit {code}\n{text_}")
    assert not problems, "\n".join(problems)


class Cluster:
    """Simulated nodes of one cluster: one OM_ROOT each (own node.conf, logs, modules), one shared SQLite database.

    `tmp_path/<node>/omroot` is each node's root; `tmp_path/shared.db` the database (OM_DB_URL).
    """

    def __init__(self, tmp_path: Path, nodes: tuple[str, ...] = ("n1", "n2")) -> None:
        self.tmp = tmp_path
        self.db = tmp_path / "shared.db"
        self.env = {"OM_DB_URL": f"sqlite:///{self.db}"}
        self.roots = {n: make_root(tmp_path / n) for n in nodes}

    def om(self, node: str, *args: str, now: str | None = None, **kw: Any) -> subprocess.CompletedProcess[str]:
        """`om args...` on `node`, with OM_NOW when `now` is given."""
        env = dict(self.env, **({"OM_NOW": now} if now else {}))
        return om(self.roots[node], *args, env=env, node=node, **kw)

    def tick(self, now: str, nodes: tuple[str, ...] | None = None) -> None:
        """`om runner tick --now NOW --wait` on every node (or `nodes`) at the same time; each must be silent."""
        procs = {node: subprocess.Popen(om_cmd("runner", "tick", "--now", now, "--wait"),
                                        env=om_env(self.roots[node], self.env, node), stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for node in (nodes or tuple(self.roots))}
        for node, proc in procs.items():
            out, err = proc.communicate(timeout=120)
            assert (proc.returncode, out, err) == (0, "", ""), f"{node} tick at {now}: {proc.returncode}\n{out}{err}"

    def write_service(self, name: str, text_: str) -> None:
        """The same `etc/<name>.conf` on every node."""
        for root in self.roots.values():
            write_service(root, name, text_)

    def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        return shared_db_rows(self.db, sql, **params)


def children(pid: int) -> list[int]:
    """Pids whose parent is `pid` (read from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        if int(data[data.rfind(b")") + 1:].split()[1]) == pid:
            out.append(int(entry))
    return out


def kill_worker(pid: int) -> None:
    """SIGKILL a worker's process group, and the command it runs (in a session of its own)."""
    for target in [pid, *children(pid)]:
        try:
            os.killpg(target, signal.SIGKILL)
        except ProcessLookupError:
            pass
