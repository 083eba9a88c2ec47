"""`om SVC run` end to end (SPEC 5, 7): the real `om` binary, real processes, a real SQLite file."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import time
from pathlib import Path

import pytest

from omtest import db_rows, log_lines, make_root, om, om_cmd, om_env, wait_rows, write_service

NO_MATCH = "no resource match the given --rid, --subset and --tags specifiers"
STOPPED = "'run' action stopped on execution error: "


def ran(stderr: str) -> list[str]:
    """Rids whose command line was logged, in order (each test command echoes `| <rid>`)."""
    return [msg[2:] for rid, level, msg in log_lines(stderr) if level == "INFO" and msg == f"| {rid}"]


def runs(root: Path, **where: str) -> list[dict]:
    cond = " AND ".join(f"{k} = :{k}" for k in where) or "1 = 1"
    return db_rows(root, f"SELECT * FROM runs WHERE {cond} ORDER BY id", **where)


def events(root: Path, run_id: int) -> list[tuple[str | None, str, str | None]]:
    rows = db_rows(root, "SELECT from_state, to_state, reason FROM run_events WHERE run_id = :r ORDER BY id", r=run_id)
    return [(r["from_state"], r["to_state"], r["reason"]) for r in rows]


def markers(root: Path, rid: str) -> dict | None:
    rows = db_rows(root, "SELECT * FROM last_runs WHERE service = 'svc' AND rid = :rid", rid=rid)
    return rows[0] if rows else None


# ---------------------------------------------------------------- selection (5.1)

SELECTION_CONF = """
[task#10]
command = /bin/echo task#10
tags = a b
[task#2]
command = /bin/echo task#2
tags = a
subset = s1
[task#x]
command = /bin/echo task#x
tags = b c
subset = s2
[task#a]
command = /bin/echo task#a
tags = c
[task#0]
command = /bin/echo task#0
subset = s1
[app#0]
start = /bin/true
"""


@pytest.fixture(scope="module")
def selection_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_root(tmp_path_factory.mktemp("selection"))
    write_service(root, "svc", SELECTION_CONF)
    return root


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((), ["task#0", "task#2", "task#10", "task#a", "task#x"]),
        (("--rid", "task"), ["task#0", "task#2", "task#10", "task#a", "task#x"]),
        (("--rid", "task#10,task#0,task#2"), ["task#0", "task#2", "task#10"]),
        (("--rid", "app#0,task#x"), ["task#x"]),  # non-task rids are ignored
        (("--tags", "a,c"), ["task#2", "task#10", "task#a", "task#x"]),  # any
        (("--tags", "a+b"), ["task#10"]),  # all
        (("--tags", "a+b,c"), ["task#10", "task#a", "task#x"]),  # '+' binds tighter than ','
        (("--subsets", "s1,s2"), ["task#0", "task#2", "task#x"]),
        (("--rid", "task", "--tags", "a", "--subsets", "s1"), ["task#2"]),  # options intersect
    ],
)
def test_selection_and_rid_order(selection_root: Path, args: tuple[str, ...], expected: list[str]) -> None:
    proc = om(selection_root, "svc", "run", *args)
    assert proc.returncode == 0, proc.stderr
    assert ran(proc.stderr) == expected


@pytest.mark.parametrize(
    "args",
    [("--rid", "app#0"), ("--tags", "zz"), ("--tags", "a", "--subsets", "s2")],
)
def test_selection_no_match(selection_root: Path, args: tuple[str, ...]) -> None:
    db = selection_root / "var" / "om.db"
    before = len(runs(selection_root)) if db.exists() else 0
    proc = om(selection_root, "svc", "run", *args)
    assert proc.returncode == 1
    assert NO_MATCH in proc.stderr
    assert ran(proc.stderr) == []
    assert (len(runs(selection_root)) if db.exists() else 0) == before  # no run row


# ---------------------------------------------------------------- logs (5.6)


def test_log_lines_service_log_run_log_and_output_tail(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    # ~8.9 kB of stdout, then one stderr line
    write_service(root, "svc", """
    [task#0]
    command = /bin/sh -c '/usr/bin/seq 1 2000; echo oops >&2'
    """)
    proc = om(root, "svc", "run", "--rid", "task#0")
    assert proc.returncode == 0, proc.stderr
    err_lines = proc.stderr.splitlines()
    # every stderr line is a log line of the exact format, rid padded to 11, level to 7
    assert err_lines and all(re.fullmatch(r"\d{2}:\d{2}:\d{2},\d{3} .{11} .{7} .*", line) for line in err_lines)
    assert err_lines[0].endswith("task#0      INFO    /bin/sh -c '/usr/bin/seq 1 2000; echo oops >&2'")
    assert err_lines[1].endswith("task#0      INFO    | 1")
    assert err_lines[2000].endswith("task#0      INFO    | 2000")
    assert err_lines[2001].endswith("task#0      ERROR   | oops")
    assert len(err_lines) == 2002

    (run,) = runs(root)
    assert run["state"] == "done" and run["exit_code"] == 0
    full = "".join(f"{i}\n" for i in range(1, 2001)) + "oops\n"
    assert run["output_tail"] == full[-4096:]

    # the per-run log: the whole output, 0640 in 0750 directories
    run_log = root / "var" / "log" / "runs" / "svc" / f"{run['id']}.log"
    assert run_log.read_text() == full
    assert stat.S_IMODE(run_log.stat().st_mode) == 0o640
    for directory in (run_log.parent, run_log.parent.parent, root / "var" / "log"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o750, directory

    # the service log: date, time, node, run id, then the terminal line's body
    service_log = root / "var" / "log" / "svc.log"
    assert stat.S_IMODE(service_log.stat().st_mode) == 0o640
    text = service_log.read_text().splitlines()
    pattern = (r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3}[+-]\d{2}:\d{2} n1 run=" + str(run["id"])
               + r" task#0      INFO    /bin/sh -c '/usr/bin/seq 1 2000; echo oops >&2'")
    assert re.fullmatch(pattern, text[0]), text[0]
    assert text[-1].endswith(f"n1 run={run['id']} task#0      ERROR   | oops")


def test_log_false_passes_output_to_the_terminal(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    write_service(root, "svc", """
    [task#0]
    command = /bin/sh -c 'echo to-stdout; echo to-stderr >&2'
    log = false
    snooze = 10
    """)
    proc = om(root, "svc", "run")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "to-stdout\n"
    assert "to-stderr\n" in proc.stderr.splitlines(keepends=True)
    # like OpenSVC, an interactive (log = false) task's command line is not logged either
    assert log_lines(proc.stderr) == [("task#0", "WARNING", "snooze: nothing to snooze, ignored")]
    assert "| to-std" not in (root / "var" / "log" / "svc.log").read_text()


# ---------------------------------------------------------------- shell detection (5.3)


def test_shell_detection_and_brace_text(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    write_service(root, "svc", """
    [task#0]
    command = id -u && /bin/true
    [task#1]
    command = /bin/echo a b c | /usr/bin/awk '{print $2}'
    [task#2]
    command = /usr/bin/awk 'BEGIN {print "{svcname}" "-" "{nodename}" "-" "{print $1}"}'
    [task#3]
    command = /bin/echo $HOME '*' "a  b"
    """)
    proc = om(root, "svc", "run")
    assert proc.returncode == 0, proc.stderr
    out = [(rid, msg) for rid, level, msg in log_lines(proc.stderr) if msg.startswith("| ")]
    assert out == [
        ("task#0", f"| {os.geteuid()}"),  # `&&` went through /bin/sh
        ("task#1", "| b"),  # awk braces untouched, pipe through the shell
        ("task#2", "| svc-n1-{print $1}"),  # references expanded, other brace text kept
        ("task#3", "| $HOME * a  b"),  # no shell: no expansion, shlex quoting kept
    ]
    commands = {r["rid"]: r["command"] for r in runs(root)}
    assert commands["task#0"] == "id -u && /bin/true"


# ---------------------------------------------------------------- exit codes (5.7)

EXIT_CONF = """
[task#three]
command = /bin/sh -c 'exit 3'
[task#oneup]
command = /bin/sh -c 'exit 1'
retcodes = 0:up 1:up
[task#zerodown]
command = /bin/true
retcodes = 0:down 1:up
[task#signal]
command = /bin/sh -c 'kill -TERM $$'
[task#notfound]
command = /nonexistent/cmd --flag
[task#noexec]
command = {noexec}
[task#warn]
command = /bin/sh -c 'exit 7'
retcodes = 0:up 7:warn
"""


@pytest.fixture(scope="module")
def exit_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("exits")
    root = make_root(base)
    noexec = base / "noexec.sh"
    noexec.write_text("#!/bin/sh\nexit 0\n")
    noexec.chmod(0o644)
    write_service(root, "svc", EXIT_CONF.format(noexec=noexec))
    return root


@pytest.mark.parametrize(
    ("rid", "code", "state", "reason", "exit_code", "message"),
    [
        ("task#three", 3, "failed", "exit code 3", 3, None),
        ("task#oneup", 0, "done", None, 1, None),
        ("task#zerodown", 1, "failed", "exit code 0", 0, None),
        ("task#signal", 128 + 15, "failed", "exit code 143", 143, None),
        ("task#notfound", 127, "failed", "exit code 127", 127, "command not found: /nonexistent/cmd"),
        ("task#noexec", 127, "failed", "exit code 127", 127, "permission denied: "),
        ("task#warn", 7, "failed", "exit code 7", 7, None),
    ],
)
def test_exit_codes(exit_root: Path, rid: str, code: int, state: str, reason: str | None,
                    exit_code: int, message: str | None) -> None:
    proc = om(exit_root, "svc", "run", "--rid", rid)
    assert proc.returncode == code, proc.stderr
    run = runs(exit_root, rid=rid)[-1]
    assert run["state"] == state
    assert run["exit_code"] == exit_code
    lines = log_lines(proc.stderr)
    if reason is not None:
        assert run["reason"] == reason
        assert lines[-1] == ("", "ERROR", f"{STOPPED}{rid} {reason}")
    else:
        assert not any(level == "ERROR" for _, level, _ in lines)
    if message is not None:
        assert any(r == rid and level == "ERROR" and msg.startswith(message) for r, level, msg in lines), lines


def test_usage_error_exits_2(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    write_service(root, "svc", "[task#0]\ncommand = /bin/true\n")
    proc = om(root, "svc", "run", "--no-such-option")
    assert proc.returncode == 2


# ---------------------------------------------------------------- refusals before anything runs


def test_disabled_task_disabled_service_foreign_node_invalid_config(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    flag = tmp_path / "ran"
    write_service(root, "svc", f"""
    [task#0]
    command = /usr/bin/touch {flag}
    disable = true
    [task#1]
    command = /bin/echo task#1
    """)
    proc = om(root, "svc", "run")
    assert proc.returncode == 0, proc.stderr
    assert ("task#0", "INFO", "task#0 disabled") in log_lines(proc.stderr)
    assert ran(proc.stderr) == ["task#1"]
    assert not flag.exists()
    assert [r["rid"] for r in runs(root)] == ["task#1"]  # no run row for the disabled task

    write_service(root, "off", f"""
    [DEFAULT]
    disable = true
    [task#0]
    command = /usr/bin/touch {flag}
    """)
    proc = om(root, "off", "run")
    assert proc.returncode == 0
    assert log_lines(proc.stderr) == [("", "INFO", "service disabled")]
    assert not flag.exists() and runs(root, service="off") == []

    write_service(root, "far", f"""
    [DEFAULT]
    nodes = n2 n3
    drpnodes = n9
    [task#0]
    command = /usr/bin/touch {flag}
    """)
    proc = om(root, "far", "run")
    assert proc.returncode == 1
    assert "this node 'n1' is not a node of service 'far' (nodes: n2 n3, drpnodes: n9)" in proc.stderr
    assert not flag.exists() and runs(root, service="far") == []

    path = write_service(root, "broken", f"""
    [DEFAULT]
    topology = active
    [task#0]
    command = /usr/bin/touch {flag}
    """)
    proc = om(root, "broken", "run")
    assert proc.returncode == 1
    assert f"error: {path}:2: [DEFAULT] topology: " in proc.stderr
    assert not flag.exists() and runs(root, service="broken") == []

    # a task with a bad keyword: nothing runs when it is selected, the others still run
    # a task with a bad keyword: nothing runs when it is selected, the others still run,
    # and a task whose only error is its schedule still runs manually
    path = write_service(root, "halfbad", f"""
    [task#0]
    command = /usr/bin/touch {flag}
    schedule = 25:00
    [task#1]
    command = /bin/true
    log = maybe
    """)
    proc = om(root, "halfbad", "run")
    assert proc.returncode == 1
    assert f"error: {path}:6: [task#1] log: 'maybe' is not a boolean" in proc.stderr
    assert not flag.exists() and runs(root, service="halfbad") == []
    proc = om(root, "halfbad", "run", "--rid", "task#0")
    assert proc.returncode == 0, proc.stderr
    assert flag.exists()


# ---------------------------------------------------------------- failures, optional, on_error (5.2)


def test_failure_stops_action_and_on_error_runs(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    after = tmp_path / "after"
    write_service(root, "svc", f"""
    [task#0]
    command = /bin/sh -c 'echo failing; exit 4'
    on_error = /bin/sh -c 'echo "on_error $OM_RID $OM_RUN_ID"'
    [task#1]
    command = /usr/bin/touch {after}
    """)
    proc = om(root, "svc", "run")
    assert proc.returncode == 4
    lines = log_lines(proc.stderr)
    (run,) = runs(root)
    assert ("task#0", "INFO", f"| on_error task#0 {run['id']}") in lines
    assert lines.index(("task#0", "INFO", "| failing")) < lines.index(("task#0", "INFO", f"| on_error task#0 {run['id']}"))
    assert lines[-1] == ("", "ERROR", f"{STOPPED}task#0 exit code 4")
    assert not after.exists()  # later tasks do not run
    assert run["state"] == "failed" and run["reason"] == "exit code 4"


def test_optional_failure_only_warns(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    write_service(root, "svc", """
    [task#0]
    command = /bin/sh -c 'exit 2'
    optional = true
    on_error = /bin/echo on_error ran
    [task#1]
    command = /bin/echo task#1
    """)
    proc = om(root, "svc", "run")
    assert proc.returncode == 0, proc.stderr
    lines = log_lines(proc.stderr)
    assert ("task#0", "WARNING", "ignore run error on optional resource") in lines
    assert ("task#0", "INFO", "| on_error ran") in lines
    assert ran(proc.stderr) == ["task#1"]
    assert not any(STOPPED in msg for _, _, msg in lines)
    states = {r["rid"]: r["state"] for r in runs(root)}
    assert states == {"task#0": "failed", "task#1": "done"}
    assert runs(root, rid="task#0")[0]["reason"] == "exit code 2"


# ---------------------------------------------------------------- triggers (3.3, 5.2)


def test_triggers(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    flag = tmp_path / "cmd-ran"
    write_service(root, "svc", f"""
    [task#0]
    command = /bin/echo command
    pre_run = /bin/sh -c 'echo pre; exit 4'
    post_run = /bin/echo post
    blocking_post_run = /bin/echo blocking post
    [task#1]
    command = /usr/bin/touch {flag}
    blocking_pre_run = /bin/sh -c 'exit 5'
    on_error = /bin/echo on_error should not run
    [task#2]
    command = /bin/echo command2
    blocking_post_run = /bin/sh -c 'exit 6'
    """)
    proc = om(root, "svc", "run", "--rid", "task#0")
    assert proc.returncode == 0, proc.stderr
    msgs = [msg for _, _, msg in log_lines(proc.stderr)]
    assert msgs == [
        "pre_run: /bin/sh -c 'echo pre; exit 4'", "| pre", "pre_run failed: exit code 4",
        "/bin/echo command", "| command",
        "post_run: /bin/echo post", "| post",
        "blocking_post_run: /bin/echo blocking post", "| blocking post",
    ]
    assert ("task#0", "WARNING", "pre_run failed: exit code 4") in log_lines(proc.stderr)
    assert runs(root, rid="task#0")[0]["state"] == "done"

    proc = om(root, "svc", "run", "--rid", "task#1")
    assert proc.returncode == 1
    assert log_lines(proc.stderr)[-1] == ("", "ERROR", f"{STOPPED}trigger failed: blocking_pre_run exit code 5")
    assert "on_error should not run" not in proc.stderr
    assert not flag.exists()  # the command did not run
    run = runs(root, rid="task#1")[0]
    assert (run["state"], run["reason"]) == ("failed", "trigger failed: blocking_pre_run exit code 5")

    proc = om(root, "svc", "run", "--rid", "task#2")
    assert proc.returncode == 1
    assert ("task#2", "INFO", "| command2") in log_lines(proc.stderr)
    assert log_lines(proc.stderr)[-1] == ("", "ERROR", f"{STOPPED}trigger failed: blocking_post_run exit code 6")
    run = runs(root, rid="task#2")[0]
    assert (run["state"], run["reason"], run["exit_code"]) == (
        "failed", "trigger failed: blocking_post_run exit code 6", 0)


# ---------------------------------------------------------------- environment, cwd, umask (5.3)


def test_environment_cwd_umask(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    write_service(root, "svc", f"""
    [task#0]
    command = /bin/sh -c '/usr/bin/env; echo "cwd=$(pwd)"; : > created'
    environment = FOO=bar "SPACED=a b" OM_NODENAME=override
    cwd = {work}
    umask = 027
    [task#1]
    command = /bin/sh -c 'echo "PATH=$PATH"'
    environment = PATH=/opt/custom:/bin
    """)
    proc = om(root, "svc", "run", "--rid", "task#0", env={"LEAKED": "1", "LANG": "fr_FR.UTF-8", "HOME": "/elsewhere"})
    assert proc.returncode == 0, proc.stderr
    out = [msg[2:] for rid, level, msg in log_lines(proc.stderr) if msg.startswith("| ")]
    env = dict(line.split("=", 1) for line in out if "=" in line and not line.startswith("cwd="))
    (run,) = runs(root)
    home = "/root" if os.geteuid() == 0 else os.path.expanduser("~")
    expected = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": home, "USER": "root", "LOGNAME": "root", "SHELL": "/bin/sh", "LANG": "C.UTF-8",
        "TZ": "UTC",
        "OPENSVC_SVCNAME": "svc", "OPENSVC_RID": "task#0", "OPENSVC_ACTION": "run",
        "OM_SERVICE": "svc", "OM_RID": "task#0", "OM_RUN_ID": str(run["id"]), "OM_TRIGGER": "manual",
        "OM_NODENAME": "override",  # environment entries win
        "FOO": "bar", "SPACED": "a b",
    }
    for key, value in expected.items():
        assert env.get(key) == value, (key, env.get(key))
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+00:00", env["OM_SCHEDULED_FOR"])
    # only TZ is inherited (PWD is the shell's own)
    assert set(env) - set(expected) <= {"OM_SCHEDULED_FOR", "PWD", "SHLVL", "_", "OLDPWD"}, set(env) - set(expected)
    assert f"cwd={work}" in out
    created = work / "created"
    assert stat.S_IMODE(created.stat().st_mode) == 0o640  # 0666 & ~027

    proc = om(root, "svc", "run", "--rid", "task#1")
    assert proc.returncode == 0, proc.stderr
    assert ("task#1", "INFO", "| PATH=/opt/custom:/bin") in log_lines(proc.stderr)


# ---------------------------------------------------------------- timeout (3.3, 5.3)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_timeout_term_then_kill(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    pids = tmp_path / "pids"
    write_service(root, "svc", f"""
    [task#0]
    command = sh -c 'trap "" TERM; sleep 100 & echo $$ $! > {pids}; sleep 100'
    timeout = 1
    """)
    started = time.monotonic()
    proc = om(root, "svc", "run", timeout=40)
    elapsed = time.monotonic() - started
    assert proc.returncode == 1, proc.stderr
    lines = log_lines(proc.stderr)
    assert ("task#0", "WARNING", "execution timeout (1 seconds). send SIGTERM.") in lines
    assert ("task#0", "WARNING", "SIGTERM handling timeout (10 seconds). send SIGKILL.") in lines
    assert lines[-1] == ("", "ERROR", f"{STOPPED}timeout")
    assert 10 <= elapsed < 30
    (run,) = runs(root)
    assert (run["state"], run["reason"]) == ("failed", "timeout")
    shell_pid, grandchild = (int(p) for p in pids.read_text().split())
    deadline = time.monotonic() + 5
    while (_alive(shell_pid) or _alive(grandchild)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(shell_pid) and not _alive(grandchild)


# ---------------------------------------------------------------- max_parallel (5.2 step 4)


def _blocking_conf(tmp_path: Path, extra: str = "") -> str:
    gate = tmp_path / "go"
    # waits for the gate file, at most ~30 s
    return f"""
    [task#0]
    command = /bin/sh -c 'i=0; while [ ! -e {gate} ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; echo released'
    {extra}
    """


def _start(root: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(om_cmd("svc", "run", *args), env=om_env(root), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_max_parallel(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    write_service(root, "svc", _blocking_conf(tmp_path))
    first = _start(root, "--rid", "task#0")
    try:
        (running,) = wait_rows(root, "SELECT id FROM runs WHERE state = 'running'")
        proc = om(root, "svc", "run", "--rid", "task#0")
        assert proc.returncode == 1
        assert ("task#0", "ERROR", "task is already running 1 times") in log_lines(proc.stderr)
        assert log_lines(proc.stderr)[-1] == ("", "ERROR", f"{STOPPED}task is already running 1 times")
        proc = om(root, "svc", "run", "--rid", "task#0", "--cron")
        assert proc.returncode == 0, proc.stderr
        assert "released" not in proc.stderr
    finally:
        (tmp_path / "go").touch()
        out, err = first.communicate(timeout=30)
    assert first.returncode == 0, err
    rows = runs(root)
    assert [(r["id"], r["trigger"], r["state"]) for r in rows] == [
        (running["id"], "manual", "done"), (rows[1]["id"], "manual", "skipped"), (rows[2]["id"], "cron", "skipped")]
    assert rows[1]["reason"] == rows[2]["reason"] == "max parallel runs reached (1/1)"
    assert events(root, rows[1]["id"]) == [
        (None, "scheduled", "manual by root@n1"), ("scheduled", "skipped", "max parallel runs reached (1/1)")]


# ---------------------------------------------------------------- run_requires (5.5)


def test_run_requires_unmet(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    flag = tmp_path / "ran"
    write_service(root, "svc", f"""
    [task#0]
    command = /usr/bin/touch {flag}
    run_requires = instance(up)
    """)
    why = "requires instance(up): not the active instance (active: none)"
    proc = om(root, "svc", "run")
    assert proc.returncode == 1
    assert log_lines(proc.stderr) == [("task#0", "ERROR", why), ("", "ERROR", f"{STOPPED}{why}")]
    proc = om(root, "svc", "run", "--cron")
    assert proc.returncode == 0, proc.stderr  # a silent success with --cron
    assert not flag.exists()
    rows = runs(root)
    assert [(r["trigger"], r["state"], r["reason"]) for r in rows] == [
        ("manual", "skipped", f"requires not met: {why}"), ("cron", "skipped", f"requires not met: {why}")]
    assert events(root, rows[0]["id"]) == [
        (None, "scheduled", "manual by root@n1"), ("scheduled", "skipped", f"requires not met: {why}")]
    marker = markers(root, "task#0")
    assert marker is None or marker["last_attempt_at"] is None  # skipped leaves markers alone


# ---------------------------------------------------------------- --cron and markers (5.2, 7, 8.4)


def _iso(naive: str) -> str:
    return naive.replace(" ", "T").split(".")[0] + "Z"


def test_cron_claims_slots_and_manual_runs_never_move_markers(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    write_service(root, "svc", """
    [task#0]
    command = /bin/sh -c 'echo "trigger=$OM_TRIGGER"'
    [task#1]
    command = /bin/sh -c 'exit 3'
    """)
    proc = om(root, "svc", "run", "--rid", "task#0")
    assert proc.returncode == 0, proc.stderr
    assert ("task#0", "INFO", "| trigger=manual") in log_lines(proc.stderr)
    marker = markers(root, "task#0")
    assert marker is None or (marker["last_attempt_at"], marker["last_success_at"]) == (None, None)

    proc = om(root, "svc", "run", "--rid", "task#0", "--cron")
    assert proc.returncode == 0, proc.stderr
    assert ("task#0", "INFO", "| trigger=cron") in log_lines(proc.stderr)
    first = runs(root, trigger="cron")[0]
    assert first["state"] == "done"
    assert first["slot_key"] == "svc|run|task#0|n1|never"
    marker = markers(root, "task#0")
    assert marker["last_attempt_at"] == marker["last_success_at"] == first["scheduled_for"]
    assert marker["last_run_id"] == first["id"]
    assert events(root, first["id"]) == [
        (None, "scheduled", "manual --cron by root@n1"), ("scheduled", "eligible", None),
        ("eligible", "running", None), ("running", "done", None)]

    proc = om(root, "svc", "run", "--rid", "task#0", "--cron")
    assert proc.returncode == 0, proc.stderr
    second = runs(root, trigger="cron")[1]
    assert second["slot_key"] == f"svc|run|task#0|n1|{_iso(first['scheduled_for'])}"
    assert second["scheduled_for"] > first["scheduled_for"]  # at least marker + 1 s
    marker = markers(root, "task#0")
    assert marker["last_attempt_at"] == marker["last_success_at"] == second["scheduled_for"]

    # a manual run after them leaves the markers where they are
    proc = om(root, "svc", "run", "--rid", "task#0")
    assert proc.returncode == 0, proc.stderr
    assert markers(root, "task#0") == marker

    # a failed --cron run moves the attempt marker only; a failed manual one nothing
    proc = om(root, "svc", "run", "--rid", "task#1")
    assert proc.returncode == 3
    marker1 = markers(root, "task#1")
    assert marker1 is None or marker1["last_attempt_at"] is None
    proc = om(root, "svc", "run", "--rid", "task#1", "--cron")
    assert proc.returncode == 3
    failed = runs(root, rid="task#1", trigger="cron")[0]
    marker1 = markers(root, "task#1")
    assert (marker1["last_attempt_at"], marker1["last_success_at"]) == (failed["scheduled_for"], None)
    assert [e[1] for e in events(root, failed["id"])] == ["scheduled", "eligible", "running", "failed"]


def test_cron_slot_already_claimed(tmp_path: Path) -> None:
    """A slot held by a pending run is reported; a running run has moved the marker, so the next --cron
    claims the following slot and is skipped by max_parallel (SPEC 7 marker rule, 8.4)."""
    root = make_root(tmp_path)
    write_service(root, "svc", _blocking_conf(tmp_path) + """
    [task#1]
    command = /bin/true
    confirmation = true
    """)
    proc = om(root, "svc", "run", "--rid", "task#1", "--cron")
    assert proc.returncode == 0, proc.stderr
    (pending,) = runs(root, rid="task#1")
    assert pending["state"] == "awaiting_confirmation"
    proc = om(root, "svc", "run", "--rid", "task#1", "--cron")
    assert proc.returncode == 0, proc.stderr
    assert f"task#1: slot already claimed by run {pending['id']} (awaiting_confirmation)" in proc.stdout
    assert len(runs(root, rid="task#1")) == 1

    first = _start(root, "--rid", "task#0", "--cron")
    try:
        (running,) = wait_rows(root, "SELECT * FROM runs WHERE rid = 'task#0' AND state = 'running'")
        proc = om(root, "svc", "run", "--rid", "task#0", "--cron")
        assert proc.returncode == 0, proc.stderr
    finally:
        (tmp_path / "go").touch()
        first.communicate(timeout=30)
    assert first.returncode == 0
    rows = runs(root, rid="task#0")
    assert [(r["id"], r["state"]) for r in rows] == [(running["id"], "done"), (rows[1]["id"], "skipped")]
    assert rows[1]["slot_key"] == f"svc|run|task#0|n1|{_iso(running['scheduled_for'])}"
    assert rows[1]["reason"] == "max parallel runs reached (1/1)"
