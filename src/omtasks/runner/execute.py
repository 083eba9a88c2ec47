"""Executing a task command for real (SPEC 5.3, 5.6, 8.5).

The child gets its own session, stdin /dev/null, the task's umask, then the
target's gid, supplementary groups and uid.  All of that is done by
subprocess.Popen (start_new_session/umask/group/extra_groups/user), which runs
it in the forked child in C, in that order, without Python code between fork
and exec: safe in a process that has threads.

Output is read line by line from two pipes with a selector, so stdout and
stderr stay distinguishable.  The leader's exit is watched through a pidfd
and `waitid(WNOWAIT)`, without reaping it until the very end: as long as the
leader is an unreaped zombie, its pid (which is also the process group id)
cannot be reused, so `killpg` can never hit an unrelated group.
"""

from __future__ import annotations

import errno
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from omtasks.config.values import split_words
from omtasks.runner import procinfo
from omtasks.runner.identity import Identity, ImpersonationError

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TAIL_BYTES = 4096
_SHELL_TOKENS = ("|", "&&", "||", ";", ">", "<", "$(")
# How long output is still read once the leader exited (or was SIGKILLed) while
# some other process keeps the pipes open: a daemonised grandchild must not
# hold the run forever.
_DRAIN = 1.0
# Polling period for what no file descriptor reports: group emptiness during
# the SIGTERM grace, and the leader's exit when pidfd_open is unavailable.
_POLL = 0.2
_CHUNK = 65536
# A "line" without newline is cut at this size so that memory stays bounded.
_MAX_LINE = 65536


class CommandError(ValueError):
    """A command string that cannot be turned into an argv, or a detached process that cannot start."""


@dataclass(frozen=True)
class CommandSpec:
    """What to run and how; `env` is the complete environment (see base_environment)."""

    command: str
    identity: Identity
    cwd: str | None
    umask: int | None
    env: dict[str, str]
    timeout: int | None
    kill_grace: float = 10.0
    argv: tuple[str, ...] | None = None  # set: executed as is, `command` is only shown (container tasks)


@dataclass(frozen=True)
class Result:
    """Outcome of run(): exit code (128+S for a signal death, 127 when not executable)."""

    exit_code: int
    timed_out: bool
    reason: str | None
    tail: str
    pid: int


Logger = Callable[[str, str], None]


def needs_shell(command: str) -> bool:
    """Whether the command goes through /bin/sh: any shell operator anywhere, quotes included (SPEC 5.3)."""
    return any(token in command for token in _SHELL_TOKENS)


def argv_for(command: str) -> list[str]:
    """The argv that executes `command`: `/bin/sh -c command`, or its POSIX shlex split."""
    if needs_shell(command):
        return ["/bin/sh", "-c", command]
    try:
        argv = split_words(command)  # shlex.split, linear in the length
    except ValueError as exc:
        raise CommandError("unbalanced quotes") from exc
    if not argv:
        raise CommandError("empty command")
    return argv


def base_environment(
    identity: Identity, extra: Mapping[str, str], environment: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The command environment of SPEC 5.3, identical for manual and scheduled runs.

    Only TZ is inherited, so that a run does not depend on who or what started
    `om`.  `extra` holds the OPENSVC_*/OM_* variables; `environment` (the
    task's `environment` keyword) is applied last and wins.
    """
    env: dict[str, str] = {}
    if "TZ" in os.environ:
        env["TZ"] = os.environ["TZ"]
    env.update(
        PATH=PATH,
        HOME=identity.home,
        USER=identity.name,
        LOGNAME=identity.name,
        SHELL="/bin/sh",
        LANG="C.UTF-8",
    )
    env.update(extra)
    if environment:
        env.update(environment)
    return env


def run(
    spec: CommandSpec,
    *,
    on_line: Callable[[str, str], None] | None,
    log_path: str | None,
    on_start: Callable[[int], None] | None = None,
    on_heartbeat: Callable[[], None] | None = None,
    heartbeat_every: float = 30.0,
    log: Logger | None = None,
    forward_sigint: bool = False,
) -> Result:
    """Run `spec` to completion and return its Result.

    `on_line(stream, line)` sees each output line ("stdout"/"stderr"); every
    line is appended to `log_path` (created 0640).  `on_start(pid)` is called
    once the child exists, `on_heartbeat()` every `heartbeat_every` seconds.
    `log(level, message)` receives the SPEC 5.3 messages (timeout, not
    executable).  With `forward_sigint` (main thread only) a SIGINT received
    by `om` is sent to the command's process group.

    run() never leaves the command behind: if it is interrupted by an
    exception (a callback raising, KeyboardInterrupt), the process group is
    SIGKILLed and the leader reaped before the exception propagates.  An
    identity change refused by the kernel raises ImpersonationError.
    """
    if forward_sigint and threading.current_thread() is not threading.main_thread():
        raise ValueError("forward_sigint needs the main thread (signal handlers live there)")
    emit = log or _no_log
    argv = list(spec.argv) if spec.argv else argv_for(spec.command)
    cwd = spec.cwd or _default_cwd(spec.identity)
    log_fd = _open_log(log_path) if log_path else None
    try:
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=cwd,
                env=spec.env,
                umask=-1 if spec.umask is None else spec.umask,
                start_new_session=True,
                **_identity_switch(spec.identity),
            )
        except OSError as exc:
            return _start_failure(exc, argv[0], cwd, spec.identity, emit)
        output = _Output(on_line, log_fd, emit)
        previous = None
        if forward_sigint:
            previous = signal.signal(signal.SIGINT, lambda _s, _f: _signal_group(proc.pid, signal.SIGINT))
        try:
            if on_start is not None:
                on_start(proc.pid)
            timed_out = _supervise(proc, spec, output, on_heartbeat, heartbeat_every, emit)
            proc.wait()
        except BaseException:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        finally:
            if forward_sigint:
                signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)
            proc.stdout.close()
            proc.stderr.close()
    finally:
        if log_fd is not None:
            os.close(log_fd)
    code = proc.returncode
    return Result(
        exit_code=128 - code if code < 0 else code,
        timed_out=timed_out,
        reason="timeout" if timed_out else None,
        tail=output.tail(),
        pid=proc.pid,
    )


def _supervise(
    proc: subprocess.Popen[bytes],
    spec: CommandSpec,
    output: _Output,
    on_heartbeat: Callable[[], None] | None,
    heartbeat_every: float,
    emit: Logger,
) -> bool:
    """Read output, enforce the timeout and beat until the command is over; return whether it timed out.

    "Over" means: the leader exited, the pipes reached EOF (or stopped being
    read, see _DRAIN), and after a timeout SIGTERM, no process is left in the
    group or it was SIGKILLed.  The leader is left unreaped for run() to wait.
    """
    sel = selectors.DefaultSelector()
    streams = {proc.stdout.fileno(): "stdout", proc.stderr.fileno(): "stderr"}
    for fd, name in streams.items():
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ, name)
    pidfd = _pidfd(proc.pid)
    if pidfd is not None:
        sel.register(pidfd, selectors.EVENT_READ, None)
    start = time.monotonic()
    deadline = start + spec.timeout if spec.timeout else None
    next_beat = start + heartbeat_every if on_heartbeat is not None else None
    kill_at: float | None = None
    drain_until: float | None = None
    exited = False
    timed_out = False
    try:
        while True:
            now = time.monotonic()
            if not exited and pidfd is None and _has_exited(proc.pid):
                exited = True
                drain_until = now + _DRAIN
            if drain_until is not None and now >= drain_until:
                for fd in [fd for fd in streams if fd in sel.get_map()]:
                    sel.unregister(fd)
                    output.close(streams[fd])
            if deadline is not None and not timed_out and now >= deadline:
                timed_out = True
                emit("WARNING", f"execution timeout ({spec.timeout} seconds). send SIGTERM.")
                _signal_group(proc.pid, signal.SIGTERM)
                kill_at = now + spec.kill_grace
            if kill_at is not None and now >= kill_at:
                emit("WARNING", f"SIGTERM handling timeout ({spec.kill_grace:g} seconds). send SIGKILL.")
                _signal_group(proc.pid, signal.SIGKILL)
                kill_at = None
                drain_until = min(drain_until or now + _DRAIN, now + _DRAIN)
            if next_beat is not None and now >= next_beat:
                _beat(on_heartbeat, emit)
                next_beat = now + heartbeat_every
            reading = any(fd in sel.get_map() for fd in streams)
            if exited and not reading and (kill_at is None or not procinfo.group_alive(proc.pid)):
                return timed_out
            pending = (None if timed_out else deadline, kill_at, drain_until if reading else None, next_beat)
            timers = [t for t in pending if t is not None]
            if kill_at is not None or pidfd is None:
                timers.append(now + _POLL)
            wait = max(0.0, min(timers) - now) if timers else None
            for key, _ in sel.select(wait):
                if key.data is None:
                    sel.unregister(pidfd)
                    exited = True
                    drain_until = drain_until or time.monotonic() + _DRAIN
                    continue
                try:
                    data = os.read(key.fd, _CHUNK)
                except BlockingIOError:  # spurious readiness
                    continue
                if data:
                    output.feed(key.data, data)
                else:
                    sel.unregister(key.fd)
                    output.close(key.data)
    finally:
        sel.close()
        if pidfd is not None:
            os.close(pidfd)


def _beat(on_heartbeat: Callable[[], None], emit: Logger) -> None:
    # A failing heartbeat (database hiccup) must not kill the command it reports on.
    try:
        on_heartbeat()
    except Exception as exc:
        emit("WARNING", f"heartbeat failed: {exc}")


class _Output:
    """Splits both streams into lines, appends them to the run log and keeps the combined tail."""

    def __init__(self, on_line: Callable[[str, str], None] | None, log_fd: int | None, emit: Logger) -> None:
        self._on_line = on_line
        self._log_fd = log_fd
        self._emit = emit
        self._pending = {"stdout": bytearray(), "stderr": bytearray()}
        self._tail = bytearray()
        self._batch = bytearray()

    def feed(self, stream: str, data: bytes) -> None:
        buf = self._pending[stream]
        buf += data
        while True:
            end = buf.find(b"\n")
            if end < 0:
                if len(buf) >= _MAX_LINE:
                    self._line(stream, bytes(buf))
                    buf.clear()
                break
            self._line(stream, bytes(buf[:end]))
            del buf[: end + 1]
        self._write_log()

    def close(self, stream: str) -> None:
        """End of a stream: an unterminated last line is still a line."""
        buf = self._pending[stream]
        if buf:
            self._line(stream, bytes(buf))
            buf.clear()
            self._write_log()

    def tail(self) -> str:
        """Last TAIL_BYTES bytes of output, never starting inside a UTF-8 sequence."""
        data = bytes(self._tail[-TAIL_BYTES:])
        start = 0
        while start < len(data) and 0x80 <= data[start] < 0xC0:
            start += 1
        return data[start:].decode("utf-8", "replace")

    def _line(self, stream: str, raw: bytes) -> None:
        record = raw + b"\n"
        self._tail += record
        if len(self._tail) > 2 * TAIL_BYTES:
            del self._tail[:-TAIL_BYTES]
        self._batch += record
        if self._on_line is not None:
            self._on_line(stream, raw.decode("utf-8", "replace"))

    def _write_log(self) -> None:
        """One write per chunk read, not per line: chatty commands would otherwise cost a syscall a line."""
        if self._log_fd is not None and self._batch:
            try:
                os.write(self._log_fd, self._batch)
            except OSError as exc:
                # Losing the log (disk full) must not fail the command itself.
                self._emit("WARNING", f"run log not written: {exc.strerror}")
                self._log_fd = None
        self._batch.clear()


def spawn_detached(argv: list[str], *, log_path: str, env: dict[str, str]) -> int:
    """Start `argv` in a new session, stdin /dev/null, output appended to `log_path` (0640); return its pid.

    No zombie is left behind, however long the caller lives: a short-lived
    launcher (a fresh `python -I -S`, so there is no fork of this possibly
    multithreaded process running Python code) starts the target with
    setsid, reports its pid on a pipe and exits at once; we reap the launcher
    before returning and the target is reparented to init (or the nearest
    subreaper), which reaps it.  Raises CommandError when `argv` cannot be
    executed.
    """
    if not argv:
        raise CommandError("empty command")
    log_fd = _open_log(log_path)
    read_end, write_end = os.pipe()
    try:
        launcher = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _LAUNCHER, str(write_end), *argv],
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=log_fd,
            env=env,
            pass_fds=(write_end,),
        )
        os.close(write_end)
        write_end = -1
        with os.fdopen(read_end, "rb") as pipe:
            read_end = -1
            answer = pipe.read().decode("ascii")
        launcher.wait()
    finally:
        for fd in (read_end, write_end, log_fd):
            if fd >= 0:
                os.close(fd)
    if answer.startswith("P"):
        return int(answer[1:])
    if answer.startswith("E"):
        raise CommandError(_exec_message(int(answer[1:]), argv[0]))
    raise CommandError(f"cannot start {argv[0]}: launcher exit code {launcher.returncode}")


# Runs in the launcher: the target inherits stdout/stderr (the log) but not the pipe.
_LAUNCHER = """\
import os, subprocess, sys
fd = int(sys.argv[1])
try:
    pid = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, start_new_session=True).pid
except OSError as exc:
    os.write(fd, b"E%d" % exc.errno)
else:
    os.write(fd, b"P%d" % pid)
"""


def _no_log(level: str, message: str) -> None:
    """Default `log` callback: the caller did not ask for the messages."""


def _default_cwd(identity: Identity) -> str:
    return identity.home if os.path.isdir(identity.home) else "/"


def _identity_switch(identity: Identity) -> dict[str, object]:
    """Popen arguments that change identity, only when it differs from ours.

    Without root only uid and gid matter (resolve() refused any change of
    them); the supplementary groups of the current process are then kept,
    since they cannot be changed anyway.
    """
    uid, gid = os.geteuid(), os.getegid()
    same = identity.uid == uid and identity.gid == gid
    if same and (uid != 0 or set(identity.groups) | {gid} == set(os.getgroups()) | {gid}):
        return {}
    return {"user": identity.uid, "group": identity.gid, "extra_groups": list(identity.groups)}


def _start_failure(exc: OSError, argv0: str, cwd: str, identity: Identity, emit: Logger) -> Result:
    """Map a failed Popen to SPEC 5.3: exec and chdir failures give 127, identity failures raise."""
    if exc.filename == argv0:
        emit("ERROR", _exec_message(exc.errno, argv0))
    elif exc.filename == cwd:
        emit("ERROR", f"cannot change directory to '{cwd}': {exc.strerror}")
    else:
        raise ImpersonationError(f"cannot run as user '{identity.name}': {exc.strerror}") from exc
    return Result(exit_code=127, timed_out=False, reason=None, tail="", pid=0)


def _exec_message(code: int | None, argv0: str) -> str:
    if code in (errno.ENOENT, errno.ENOTDIR):
        return f"command not found: {argv0}"
    if code in (errno.EACCES, errno.EPERM):
        return f"permission denied: {argv0}"
    return f"cannot execute {argv0}: {os.strerror(code or 0)}"


def _open_log(path: str) -> int:
    """Open `path` for appending, creating it (and its directory) with mode 0640 whatever the umask."""
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, mode=0o750, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
    except FileExistsError:
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    os.fchmod(fd, 0o640)
    return fd


def _pidfd(pid: int) -> int | None:
    """A descriptor that becomes readable when `pid` exits, or None where the kernel lacks pidfd_open."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _has_exited(pid: int) -> bool:
    """Whether our child `pid` has exited, without reaping it (see the module docstring)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass
