"""omtasks.runner.execute with real processes: shell detection, capture, environment, timeouts, signals."""

from __future__ import annotations

import os
import signal
import stat
import sys
import threading
import time
from pathlib import Path

import pytest

from omtasks.runner import execute as execute_module
from omtasks.runner import procinfo
from omtasks.runner.execute import (
    PATH,
    CommandError,
    CommandSpec,
    Result,
    argv_for,
    base_environment,
    needs_shell,
    run,
    spawn_detached,
)
from omtasks.runner.identity import resolve


class Recorder:
    """Collects what run() reports through its callbacks."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []
        self.logs: list[tuple[str, str]] = []

    def on_line(self, stream: str, line: str) -> None:
        self.lines.append((stream, line))

    def log(self, level: str, message: str) -> None:
        self.logs.append((level, message))

    def out(self, stream: str = "stdout") -> list[str]:
        return [line for s, line in self.lines if s == stream]


def make_spec(command: str, **kw: object) -> CommandSpec:
    ident = resolve(None, None)
    env = kw.pop("env", None) or base_environment(ident, {})
    return CommandSpec(
        command=command,
        identity=ident,
        cwd=kw.pop("cwd", None),
        umask=kw.pop("umask", None),
        env=env,
        timeout=kw.pop("timeout", None),
        kill_grace=kw.pop("kill_grace", 1.0),
    )


def execute(command: str, log_path: str | None = None, **kw: object) -> tuple[Result, Recorder]:
    rec = Recorder()
    extra = {
        k: kw.pop(k) for k in ("on_start", "on_heartbeat", "heartbeat_every", "forward_sigint") if k in kw
    }
    result = run(make_spec(command, **kw), on_line=rec.on_line, log_path=log_path, log=rec.log, **extra)
    return result, rec


@pytest.mark.parametrize(
    ("command", "shell"),
    [
        ("id -u && /bin/true", True),
        ("awk '{print $1}'", False),
        ("echo a | cat", True),
        ("true || false", True),
        ("echo a; echo b", True),
        ("echo a > /dev/null", True),
        ("cat < /dev/null", True),
        ("echo $(date)", True),
        ("echo '>'", True),  # quotes included
        ('echo "a;b"', True),
        ("echo $HOME", False),
        ("sleep 1 &", False),
        ("/usr/bin/env FOO=bar true", False),
        ("echo `date`", False),
    ],
)
def test_shell_detection(command: str, shell: bool) -> None:
    assert needs_shell(command) is shell
    argv = argv_for(command)
    if shell:
        assert argv == ["/bin/sh", "-c", command]
    else:
        assert argv[0] != "/bin/sh"


def test_argv_shlex_quotes() -> None:
    assert argv_for("awk '{print $1}'") == ["awk", "{print $1}"]
    assert argv_for("""printf '%s\\n' "a b" 'c d' e\\ f""") == ["printf", "%s\\n", "a b", "c d", "e f"]
    with pytest.raises(CommandError, match="^unbalanced quotes$"):
        argv_for("echo 'oops")
    with pytest.raises(CommandError):
        argv_for("   ")


def test_seed_command_goes_through_sh() -> None:
    result, rec = execute("id -u && /bin/true")
    assert result.exit_code == 0
    assert rec.out() == [str(os.geteuid())]


def test_exit_codes_and_streams(tmp_path: Path) -> None:
    log_path = tmp_path / "runs" / "svc" / "42.log"
    old = os.umask(0o077)
    try:
        result, rec = execute("echo out1; echo err1 >&2; echo out2; printf partial; exit 3", str(log_path))
    finally:
        os.umask(old)
    assert result.exit_code == 3 and not result.timed_out and result.reason is None
    assert rec.out("stdout") == ["out1", "out2", "partial"]
    assert rec.out("stderr") == ["err1"]
    assert stat.S_IMODE(log_path.stat().st_mode) == 0o640
    assert sorted(log_path.read_text().splitlines()) == ["err1", "out1", "out2", "partial"]
    # Appending, never truncating.
    execute("echo again", str(log_path))
    assert log_path.read_text().splitlines()[-1] == "again"
    assert stat.S_IMODE(log_path.stat().st_mode) == 0o640


def test_shlex_split_without_shell() -> None:
    result, rec = execute("""printf '%s\\n' "a b" 'c  d'""")
    assert result.exit_code == 0
    assert rec.out() == ["a b", "c  d"]


def test_signal_death_is_128_plus_signal() -> None:
    result, _ = execute("sh -c 'kill -USR1 $$'")
    assert result.exit_code == 128 + signal.SIGUSR1
    result, _ = execute("sh -c 'kill -KILL $$'")
    assert result.exit_code == 137


def test_tail_keeps_last_4096_bytes() -> None:
    result, rec = execute("seq 1 3000")
    full = "".join(f"{i}\n" for i in range(1, 3001))
    assert len(rec.out()) == 3000
    assert result.tail == full[-4096:]
    assert len(result.tail.encode()) == 4096
    small, _ = execute("echo hi")
    assert small.tail == "hi\n"


def test_tail_does_not_start_inside_utf8_sequence() -> None:
    # 3-byte characters: 4096 is not a multiple of 3, the cut falls mid-character.
    result, _ = execute(f"""{sys.executable} -c "print('\u20ac' * 3000)" """)
    assert result.tail.endswith("\u20ac\n")
    assert set(result.tail[:-1]) == {"\u20ac"}
    assert len(result.tail.encode()) <= 4096


def test_environment_is_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Europe/Paris")
    monkeypatch.setenv("OM_LEAK_CHECK", "must not pass")
    ident = resolve(None, None)
    env = base_environment(
        ident,
        {"OPENSVC_SVCNAME": "pgdb", "OM_RUN_ID": "42", "OM_RID": "task#0"},
        {"OM_RID": "overridden", "FOO": "a b"},
    )
    assert env == {
        "TZ": "Europe/Paris",
        "PATH": PATH,
        "HOME": ident.home,
        "USER": ident.name,
        "LOGNAME": ident.name,
        "SHELL": "/bin/sh",
        "LANG": "C.UTF-8",
        "OPENSVC_SVCNAME": "pgdb",
        "OM_RUN_ID": "42",
        "OM_RID": "overridden",
        "FOO": "a b",
    }
    result, rec = execute("env", env=env)
    assert result.exit_code == 0
    assert dict(line.split("=", 1) for line in rec.out()) == env
    monkeypatch.delenv("TZ")
    assert "TZ" not in base_environment(ident, {})


def test_cwd_and_umask(tmp_path: Path) -> None:
    result, rec = execute("pwd; touch made", cwd=str(tmp_path), umask=0o027)
    assert result.exit_code == 0
    assert rec.out() == [str(tmp_path)]
    assert stat.S_IMODE((tmp_path / "made").stat().st_mode) == 0o640


def test_cwd_defaults_to_home() -> None:
    ident = resolve(None, None)
    _, rec = execute("pwd")
    assert rec.out() == [ident.home if os.path.isdir(ident.home) else "/"]


def test_missing_cwd_is_127(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope")
    result, rec = execute("true", cwd=missing)
    assert result.exit_code == 127
    assert rec.logs == [("ERROR", f"cannot change directory to '{missing}': No such file or directory")]


def test_session_stdin_and_pid() -> None:
    started: list[int] = []
    code = "import os\nprint(os.getsid(0) == os.getpid() == os.getpgid(0))\nprint(os.readlink('/proc/self/fd/0'))"
    command = f'{sys.executable} -c "{code}"'
    assert not needs_shell(command)
    result, rec = execute(command, on_start=started.append)
    assert result.exit_code == 0, rec.lines
    assert rec.out() == ["True", "/dev/null"]
    assert started == [result.pid]
    # stdin is /dev/null: cat ends at once instead of waiting for input.
    assert execute("cat")[0].exit_code == 0


def test_command_not_found_is_127() -> None:
    result, rec = execute("no-such-command-om --flag")
    assert (result.exit_code, result.pid) == (127, 0)
    assert rec.logs == [("ERROR", "command not found: no-such-command-om")]


def test_permission_denied_is_127(tmp_path: Path) -> None:
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\necho never\n")
    script.chmod(0o644)
    result, rec = execute(str(script))
    assert result.exit_code == 127
    assert rec.logs == [("ERROR", f"permission denied: {script}")]


def test_timeout_kills_group_including_term_ignoring_grandchild() -> None:
    command = """sh -c 'trap "" TERM; sleep 1000 & echo $!; echo $$; sleep 1000'"""
    begin = time.monotonic()
    result, rec = execute(command, timeout=1, kill_grace=1.0)
    elapsed = time.monotonic() - begin
    assert result.timed_out and result.reason == "timeout"
    # The leader is the outer /bin/sh (the command has ";"): it may die of SIGTERM before the group's SIGKILL.
    assert result.exit_code in (128 + signal.SIGTERM, 128 + signal.SIGKILL)
    assert rec.logs == [
        ("WARNING", "execution timeout (1 seconds). send SIGTERM."),
        ("WARNING", "SIGTERM handling timeout (1 seconds). send SIGKILL."),
    ]
    pids = [int(p) for p in rec.out()]
    assert len(pids) == 2
    deadline = time.monotonic() + 2
    while any(procinfo.is_alive(p, None, None) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(procinfo.is_alive(p, None, None) for p in pids)
    assert elapsed < 5


def test_timeout_sigterm_honoured_without_sigkill() -> None:
    begin = time.monotonic()
    result, rec = execute("sleep 30", timeout=1, kill_grace=10.0)
    assert time.monotonic() - begin < 3
    assert (result.exit_code, result.timed_out, result.reason) == (143, True, "timeout")
    assert rec.logs == [("WARNING", "execution timeout (1 seconds). send SIGTERM.")]


def test_grace_message_uses_the_grace() -> None:
    _, rec = execute("""sh -c 'trap "" TERM; sleep 30'""", timeout=1, kill_grace=0.5)
    assert rec.logs[-1] == ("WARNING", "SIGTERM handling timeout (0.5 seconds). send SIGKILL.")


def test_background_grandchild_holding_pipe_does_not_hang() -> None:
    begin = time.monotonic()
    result, rec = execute("sleep 30 & echo $!; echo done")
    try:
        assert time.monotonic() - begin < 5
        assert result.exit_code == 0
        assert rec.out()[-1] == "done"
    finally:
        os.kill(int(rec.out()[0]), signal.SIGKILL)


def test_without_pidfd_the_exit_is_polled(monkeypatch: pytest.MonkeyPatch) -> None:
    # Kernels without pidfd_open: the leader's exit is found by waitid(WNOWAIT) polling instead.
    monkeypatch.setattr(execute_module, "_pidfd", lambda pid: None)
    result, rec = execute("echo out; echo err >&2; exit 4")
    assert result.exit_code == 4
    assert sorted(rec.lines) == [("stderr", "err"), ("stdout", "out")]
    begin = time.monotonic()
    result, rec = execute("sleep 30 & echo $!; true")
    os.kill(int(rec.out()[0]), signal.SIGKILL)
    assert result.exit_code == 0 and time.monotonic() - begin < 5
    result, _ = execute("sleep 30", timeout=1)
    assert (result.exit_code, result.reason) == (143, "timeout")


def test_forward_sigint_needs_the_main_thread() -> None:
    errors: list[Exception] = []

    def worker() -> None:
        try:
            execute("true", forward_sigint=True)
        except ValueError as exc:
            errors.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert len(errors) == 1


def test_sigint_is_forwarded_to_the_group() -> None:
    assert threading.current_thread() is threading.main_thread()
    before = signal.getsignal(signal.SIGINT)

    def interrupt_soon(_pid: int) -> None:
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()

    begin = time.monotonic()
    result, _ = execute("sleep 30", on_start=interrupt_soon, forward_sigint=True)
    assert result.exit_code == 130
    assert time.monotonic() - begin < 5
    assert signal.getsignal(signal.SIGINT) is before


def test_heartbeat_is_called_while_running() -> None:
    beats: list[float] = []
    result, _ = execute("sleep 1", on_heartbeat=lambda: beats.append(time.monotonic()), heartbeat_every=0.2)
    assert result.exit_code == 0
    assert 3 <= len(beats) <= 6


def test_failing_heartbeat_does_not_stop_the_command() -> None:
    def broken() -> None:
        raise RuntimeError("db down")

    result, rec = execute("sleep 0.5", on_heartbeat=broken, heartbeat_every=0.2)
    assert result.exit_code == 0
    assert ("WARNING", "heartbeat failed: db down") in rec.logs


def test_exception_in_callback_kills_the_command() -> None:
    pids: list[int] = []

    def boom(stream: str, line: str) -> None:
        pids.append(int(line))
        raise RuntimeError("callback failed")

    with pytest.raises(RuntimeError, match="callback failed"):
        run(make_spec("sh -c 'echo $$; exec sleep 30'"), on_line=boom, log_path=None)
    deadline = time.monotonic() + 2  # SIGKILL is delivered asynchronously to the grandchild
    while procinfo.is_alive(pids[0], None, None) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not procinfo.is_alive(pids[0], None, None)


def test_spawn_detached_returns_while_child_runs(tmp_path: Path) -> None:
    log_path = tmp_path / "runner.log"
    env = {"PATH": PATH, "OM_MARK": "detached"}
    begin = time.monotonic()
    pid = spawn_detached(
        ["sh", "-c", 'echo "started $OM_MARK"; read x; echo "stdin=$x"; sleep 30'],
        log_path=str(log_path),
        env=env,
    )
    try:
        assert time.monotonic() - begin < 2
        assert procinfo.is_alive(pid, procinfo.proc_start(pid), procinfo.boot_id())
        assert os.getsid(pid) == pid != os.getsid(0)
        # Not our child: nothing to reap here, no zombie possible.
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        deadline = time.monotonic() + 5
        while "stdin=" not in log_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert log_path.read_text().splitlines() == ["started detached", "stdin="]
        assert stat.S_IMODE(log_path.stat().st_mode) == 0o640
    finally:
        os.killpg(pid, signal.SIGKILL)


def test_spawn_detached_missing_command(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="^command not found: no-such-command-om$"):
        spawn_detached(["no-such-command-om"], log_path=str(tmp_path / "runner.log"), env={"PATH": PATH})
