"""OpenSVC compatibility through the real `om`: keywords, container tasks, container/fs requires, the tty.

No container engine runs here, so the container CLI is a stand-in `docker`/`podman` placed first on PATH: it
records its argv and answers `inspect --format {{.State.Status}} NAME` from a state file, which is the whole
contract om relies on (docs/opensvc.md).  A real runtime is used when the machine has a working one.
"""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omtest import db_rows, log_lines, make_root, om, om_cmd, om_env, tick, wait_rows, write_service

NOW = "2026-03-02T10:00:00"

FAKE_CLI = """#!/bin/sh
# stand-in container CLI: one argv per line in $FAKE_DIR/argv, inspect answers from $FAKE_DIR/state.<name>
FAKE_DIR=@FAKE_DIR@  # written in: a task's CLI runs with om's fixed environment, not the caller's
printf '%s\\n' "$0 $*" >> "$FAKE_DIR/argv"
if [ "$1" = inspect ]; then
  name=$4
  if [ -f "$FAKE_DIR/state.$name" ]; then cat "$FAKE_DIR/state.$name"; exit 0; fi
  echo "Error: No such object: $name" >&2; exit 1
fi
[ -t 0 ] && echo "stdin is a tty" || echo "stdin is not a tty"
exit "$(cat "$FAKE_DIR/exit" 2>/dev/null || echo 0)"
"""


@pytest.fixture()
def fake(tmp_path: Path) -> dict[str, str]:
    """A bin dir with stand-in docker and podman; the env `om` needs to find them."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    for cli in ("docker", "podman"):
        (bindir / cli).write_text(FAKE_CLI.replace("@FAKE_DIR@", str(tmp_path)))
        (bindir / cli).chmod(0o755)
    return {"PATH": f"{bindir}:{os.environ['PATH']}"}


def _argv(tmp_path: Path) -> list[str]:
    path = tmp_path / "argv"
    return path.read_text().splitlines() if path.exists() else []


# -- item 1: what OpenSVC accepts loads ---------------------------------------------------------------------


def test_opensvc_keywords_warn_and_real_mistakes_stay_errors(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    path = write_service(root, "svc", """
        [DEFAULT]
        nodes = n1
        topology = flex
        orchestrate@nodes = ha
        docker_daemon_args = --log-level=warn
        flex_target = {#nodes}

        [task#a]
        command = /bin/true
        command = /bin/echo last
        status_log = true
        limit_nofile = 1024
        pre_start = /bin/true
        timeout = 1500ms

        [sync#1]
        type = zfs
        src = /a

        [fs#1]
        mnt = /srv
    """)
    proc = om(root, "svc", "validate", "config")
    assert proc.returncode == 0, proc.stdout
    p = str(path)
    assert proc.stdout.splitlines() == [
        f"warning: {p}:4: [DEFAULT] orchestrate@nodes: OpenSVC keyword ignored by om",
        f"warning: {p}:5: [DEFAULT] docker_daemon_args: OpenSVC keyword ignored by om",
        f"warning: {p}:6: [DEFAULT] flex_target: OpenSVC keyword ignored by om",
        f"warning: {p}:10: [task#a] command: duplicate key (first at line 9), the last one wins",
        f"warning: {p}:11: [task#a] status_log: OpenSVC keyword ignored by om",
        f"warning: {p}:12: [task#a] limit_nofile: OpenSVC keyword ignored by om",
        f"warning: {p}:13: [task#a] pre_start: OpenSVC keyword ignored by om",
        f"warning: {p}:17: [sync#1] type: sync type 'zfs' is not run by om: the section does nothing",
        f"warning: {p}:20: [fs#1] section ignored: resource type 'fs' is not supported",
        "0 error(s), 9 warning(s)",
    ]
    run = om(root, "svc", "run", "--rid", "task#a")
    assert run.returncode == 0 and ("task#a", "INFO", "| last") in log_lines(run.stderr)
    # a keyword OpenSVC itself refuses stays an error
    write_service(root, "bad", "[DEFAULT]\nnodes = n1\norchestration = ha\n")
    bad = om(root, "bad", "validate", "config")
    assert bad.returncode == 1
    assert f"error: {root / 'etc' / 'bad.conf'}:3: [DEFAULT] orchestration: unknown keyword" in bad.stdout


def test_nodes_star_is_every_registered_node(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    write_service(root, "svc", """
        [DEFAULT]
        nodes = {clusternodes}
        topology = flex
        [env]
        base = /srv/{name}
        data = {env.base}/data
        [task#a]
        command = /bin/echo {env.data}
    """)
    write_service(root, "star", "[DEFAULT]\nnodes = *\ntopology = flex\n[task#a]\ncommand = /bin/true\n")
    alone = om(root, "star", "print", "status", "--format", "json")
    assert {r["node"] for r in json.loads(alone.stdout)["resources"]} == {"n1"}  # this node alone
    tick(root, NOW, node="n1")
    tick(root, NOW, node="n2")
    for name in ("svc", "star"):
        doc = json.loads(om(root, name, "print", "status", "--format", "json").stdout)
        assert {r["node"] for r in doc["resources"]} == {"n1", "n2"}
    run = om(root, "svc", "run", "--rid", "task#a", node="n2")
    assert run.returncode == 0 and ("task#a", "INFO", "| /srv/svc/data") in log_lines(run.stderr)


# -- item 3: container tasks ------------------------------------------------------------------------------


CONTAINER_SVC = """
    [DEFAULT]
    nodes = n1
    topology = flex

    [container#0]
    type = docker
    image = ghcr.io/opensvc/pause

    [container#db]
    type = docker
    name = mydb
    image = mysql:8

    [task#cli]
    type = docker
    image = mysql:8
    command = mysql -h 127.0.0.1 -e "select 1"
    entrypoint = /usr/bin/env
    netns = container#0
    pidns = container#db
    volume_mounts = /srv/a:/a:ro /srv/b:/b
    environment = MYSQL_PWD=secret GREETING="hello world"
    run_args = --cap-add NET_ADMIN --ulimit nofile=1024:1024
    privileged = true
    user = 999
    interactive = true
    tty = true
    retcodes = 0:up 3:up
    timeout = 20s

    [task#pod]
    type = podman
    image = alpine
    rm = false
"""


def test_container_task_runs_the_docker_run_argv(tmp_path: Path, fake: dict[str, str]) -> None:
    root = make_root(tmp_path)
    write_service(root, "ct", CONTAINER_SVC)
    assert om(root, "ct", "validate", "config", env=fake).returncode == 0
    (tmp_path / "exit").write_text("3")
    proc = om(root, "ct", "run", "--rid", "task#cli", env=fake)
    assert proc.returncode == 0, proc.stderr
    bindir = fake["PATH"].split(":")[0]
    assert _argv(tmp_path) == [
        f"{bindir}/docker run --cap-add NET_ADMIN --ulimit nofile=1024:1024 --name=ct.task.cli "
        "--label=com.opensvc.name=ct --label=com.opensvc.rid=task#cli --entrypoint /usr/bin/env "
        "--net=container:ct.container.0 --pid=container:mydb --user 999 --privileged --interactive --rm "
        "--volume=/srv/a:/a:ro --volume=/srv/b:/b -e MYSQL_PWD=secret -e GREETING=hello world mysql:8 "
        "mysql -h 127.0.0.1 -e select 1"
    ]  # --tty dropped: stdin is not a terminal here
    lines = log_lines(proc.stderr)
    assert ("task#cli", "INFO", 'docker run mysql:8 mysql -h 127.0.0.1 -e "select 1"') in lines
    assert ("task#cli", "INFO", "| stdin is not a tty") in lines
    row = db_rows(root, "SELECT state, exit_code, run_as FROM runs WHERE rid = 'task#cli'")[0]
    assert row["state"] == "done" and row["exit_code"] == 3  # retcodes map 3 to up
    # podman by type, rm = false keeps the container, no command: the image's own
    (tmp_path / "argv").unlink()
    (tmp_path / "exit").unlink()
    assert om(root, "ct", "run", "--rid", "task#pod", env=fake).returncode == 0
    assert _argv(tmp_path) == [f"{bindir}/podman run --name=ct.task.pod --label=com.opensvc.name=ct "
                               "--label=com.opensvc.rid=task#pod --net=none alpine"]


def test_container_task_failure_timeout_and_missing_cli(tmp_path: Path, fake: dict[str, str]) -> None:
    root = make_root(tmp_path)
    write_service(root, "ct", CONTAINER_SVC)
    (tmp_path / "exit").write_text("5")
    failed = om(root, "ct", "run", "--rid", "task#cli", env=fake)
    assert failed.returncode == 5
    slow = fake["PATH"].split(":")[0] + "/docker"
    Path(slow).write_text("#!/bin/sh\nexec sleep 30\n")
    write_service(root, "slow", "[DEFAULT]\nnodes = n1\ntopology = flex\n"
                                "[task#t]\ntype = docker\nimage = x\ntimeout = 1s\n")
    started = time.monotonic()
    timed = om(root, "slow", "run", "--rid", "task#t", env=fake)
    assert timed.returncode == 1 and time.monotonic() - started < 20
    assert db_rows(root, "SELECT reason FROM runs WHERE service = 'slow'")[0]["reason"] == "timeout"
    nocli = om(root, "slow", "run", "--rid", "task#t", env={"PATH": "/usr/bin:/bin"})
    assert nocli.returncode == 127
    assert ("task#t", "ERROR", "cannot execute: docker: command not found") in log_lines(nocli.stderr)


def test_container_task_scheduled_by_the_runner(tmp_path: Path, fake: dict[str, str]) -> None:
    root = make_root(tmp_path)
    write_service(root, "ct", "[DEFAULT]\nnodes = n1\ntopology = flex\n"
                              "[task#t]\ntype = oci\nimage = alpine\ncommand = echo hi\nschedule = @1m\n")
    tick(root, NOW, env=fake)
    assert wait_rows(root, "SELECT state FROM runs WHERE rid = 'task#t' AND state = 'done'")
    # oci: podman when installed (OpenSVC's rule)
    assert _argv(tmp_path)[0].split()[0].endswith("/podman")


@pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False).returncode != 0,
    reason="no container engine on this machine: only the docker client is installed, `docker info` fails",
)
def test_container_task_on_a_real_engine(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    write_service(root, "ct", "[DEFAULT]\nnodes = n1\ntopology = flex\n"
                              "[task#t]\ntype = docker\nimage = busybox\ncommand = echo real\n")
    proc = om(root, "ct", "run", "--rid", "task#t", env={"PATH": os.environ["PATH"]}, timeout=300)
    assert proc.returncode == 0 and ("task#t", "INFO", "| real") in log_lines(proc.stderr)


# -- item 2: resource states tasks depend on ----------------------------------------------------------------


REQUIRES_SVC = """
    [DEFAULT]
    nodes = n1
    topology = flex

    [container#nfs]
    type = podman
    image = nfs

    [fs#proc]
    mnt = /proc

    [fs#data]
    mnt = {mnt}

    [ip#1]
    ipname = x

    [task#export]
    command = /bin/echo exported
    run_requires = container#nfs(up)

    [task#mounted]
    command = /bin/true
    run_requires = fs#proc(up)

    [task#unmounted]
    command = /bin/true
    run_requires = fs#data(up)

    [task#ip]
    command = /bin/true
    run_requires = ip#1(up)
"""


def test_requires_container_up_then_down(tmp_path: Path, fake: dict[str, str]) -> None:
    root = make_root(tmp_path)
    write_service(root, "nfs", REQUIRES_SVC.replace("{mnt}", str(tmp_path)))
    (tmp_path / "state.nfs.container.nfs").write_text("running\n")
    up = om(root, "nfs", "run", "--rid", "task#export", env=fake)
    assert up.returncode == 0 and ("task#export", "INFO", "| exported") in log_lines(up.stderr)
    (tmp_path / "state.nfs.container.nfs").write_text("exited\n")
    down = om(root, "nfs", "run", "--rid", "task#export", env=fake)
    assert down.returncode == 1
    why = ("requires on resource container#nfs in state up, current state down "
           "(container nfs.container.nfs is exited)")
    assert ("task#export", "ERROR", why) in log_lines(down.stderr)
    (tmp_path / "state.nfs.container.nfs").unlink()
    gone = om(root, "nfs", "run", "--rid", "task#export", env=fake)
    assert "(container nfs.container.nfs does not exist)" in gone.stderr
    # om only ever asked: never run, start, stop or rm
    assert {line.split()[1] for line in _argv(tmp_path)} == {"inspect"}
    # the runner reads the same state: unmet while down
    tick(root, NOW, env=fake)
    rows = db_rows(root, "SELECT verdict, reason FROM schedule_entries WHERE rid = 'task#export'")
    assert rows[0]["verdict"] == "unscheduled"
    states = [r["state"] for r in db_rows(root, "SELECT state FROM runs WHERE rid = 'task#export' ORDER BY id")]
    assert states == ["done", "skipped", "skipped"]


def test_requires_fs_and_unobservable_resources(tmp_path: Path, fake: dict[str, str]) -> None:
    root = make_root(tmp_path)
    write_service(root, "nfs", REQUIRES_SVC.replace("{mnt}", str(tmp_path)))
    assert om(root, "nfs", "run", "--rid", "task#mounted", env=fake).returncode == 0
    unmounted = om(root, "nfs", "run", "--rid", "task#unmounted", env=fake)
    assert unmounted.returncode == 1 and f"({tmp_path} is not mounted)" in unmounted.stderr
    ip = om(root, "nfs", "run", "--rid", "task#ip", env=fake)
    assert ip.returncode == 1
    assert "current state undef (om cannot observe ip#1: ip resources are not managed by om)" in ip.stderr
    nocli = om(root, "nfs", "run", "--rid", "task#export", env={"PATH": "/usr/bin:/bin"})
    assert nocli.returncode == 1
    assert "(om cannot observe container#nfs: podman CLI not found on PATH)" in nocli.stderr
    assert "Traceback" not in nocli.stderr + ip.stderr


# -- item 4: interactive tasks get the terminal -------------------------------------------------------------


PROMPT_SCRIPT = """import os, sys
print("tty:", os.isatty(0), os.isatty(1), os.isatty(2), flush=True)
with open(sys.argv[1], "a") as seen:
    seen.write(f"{os.isatty(0)} {os.path.realpath('/proc/self/fd/0')}\\n")
sys.stdout.write("mysql> "); sys.stdout.flush()
line = sys.stdin.readline().strip()
print("you said", line, flush=True)
sys.exit(7)
"""


def _pty_run(argv: list[str], env: dict[str, str], answer: str, timeout: float = 60) -> tuple[int, str]:
    """Run argv on a new pty as its controlling terminal; type `answer` at the prompt; (exit code, output)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the pty is its stdin/stdout/stderr and controlling terminal
        os.execve(argv[0], argv, env)
    out = b""
    answered = False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                data = os.read(fd, 4096)
            except OSError:
                break
            if not data:
                break
            out += data
            if not answered and b"mysql> " in out:
                os.write(fd, answer.encode() + b"\n")
                answered = True
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


def test_log_false_task_gets_the_terminal(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    script = tmp_path / "prompt.py"
    script.write_text(PROMPT_SCRIPT)
    write_service(root, "mydb", f"""
        [DEFAULT]
        nodes = n1
        topology = flex
        [task#client]
        command = {sys.executable} {script} {tmp_path / "seen"}
        log = false
        retcodes = 0:up
        schedule = @1m
    """)
    code, out = _pty_run(om_cmd("mydb", "run", "--rid", "task#client"), om_env(root), "select 1")
    assert "tty: True True True" in out
    assert "you said select 1" in out
    assert code == 7  # the exit code is propagated
    row = db_rows(root, "SELECT id, state, exit_code FROM runs WHERE trigger = 'manual'")[0]
    assert row["state"] == "failed" and row["exit_code"] == 7
    logs = "".join(p.read_text() for p in (root / "var" / "log").rglob("*") if p.is_file())
    assert "you said" not in logs and str(script) not in logs  # neither output nor command line logged
    # a scheduled run of the same task keeps /dev/null
    tick(root, NOW)
    rows = wait_rows(root, "SELECT exit_code FROM runs WHERE trigger != 'manual' AND action = 'run' AND state = 'failed'", timeout=30)
    assert rows and rows[0]["exit_code"] == 7, db_rows(root, "SELECT * FROM runs")
    manual, scheduled = (tmp_path / "seen").read_text().splitlines()
    assert manual.startswith("True /dev/pts/")
    assert scheduled == "False /dev/null"


def test_interactive_container_task_gets_a_tty(tmp_path: Path, fake: dict[str, str]) -> None:
    root = make_root(tmp_path)
    write_service(root, "mydb", """
        [DEFAULT]
        nodes = n1
        topology = flex
        [task#mysql]
        type = docker
        image = mysql:8
        command = mysql -h db
        interactive = true
        tty = true
        log = false
    """)
    bindir = fake["PATH"].split(":")[0]
    script = FAKE_CLI.replace("@FAKE_DIR@", str(tmp_path)).replace('exit "$(cat "$FAKE_DIR/exit" 2>/dev/null || echo 0)"', PROMPT_SH)
    (Path(bindir) / "docker").write_text(script)
    code, out = _pty_run(om_cmd("mydb", "run", "--rid", "task#mysql"), om_env(root, fake), "show databases")
    assert "stdin is a tty" in out and "got show databases" in out
    assert code == 4
    assert "--interactive --tty" in _argv(tmp_path)[0]


PROMPT_SH = """printf 'mysql> '
read line
echo "got $line"
exit 4"""
