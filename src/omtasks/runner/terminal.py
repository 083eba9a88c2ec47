"""Running an interactive task (`log = false`) on the caller's terminal.

A manual run from a terminal hands that terminal to the command, as a shell
does for a foreground job: the command gets om's stdin, stdout and stderr, runs
in its own process group, and that group becomes the terminal's foreground
group, so a `mysql>` prompt reads the keyboard and Ctrl-C reaches the command,
not om.  om takes the terminal back when the command ends.  Nothing is captured
or logged; the timeout still applies (SIGTERM, then SIGKILL, to the group).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from omtasks.runner.execute import (
    CommandSpec,
    Result,
    _default_cwd,
    _identity_switch,
    _signal_group,
    _start_failure,
    argv_for,
)

_BEAT = 30.0


def caller_tty() -> int | None:
    """om's stdin when it is a terminal whose foreground group is om's, else None."""
    try:
        fd = sys.stdin.fileno()
        if os.isatty(fd) and os.tcgetpgrp(fd) == os.getpgrp():
            return fd
    except (OSError, ValueError):
        pass
    return None


def run_on_tty(spec: CommandSpec, tty: int, *, log: Callable[[str, str], None],
               on_heartbeat: Callable[[], None] | None = None) -> Result:
    """Run `spec` in the foreground of terminal `tty`; returns its Result (no tail: nothing is captured)."""
    argv = list(spec.argv) if spec.argv else argv_for(spec.command)
    cwd = spec.cwd or _default_cwd(spec.identity)
    try:
        proc = subprocess.Popen(argv, cwd=cwd, env=spec.env, umask=-1 if spec.umask is None else spec.umask,
                                process_group=0, **_identity_switch(spec.identity))
    except OSError as exc:
        return _start_failure(exc, argv[0], cwd, spec.identity, log)
    previous = signal.signal(signal.SIGTTOU, signal.SIG_IGN)  # om, in the background, takes the tty back
    timed_out = False
    try:
        try:
            os.tcsetpgrp(tty, proc.pid)
            _signal_group(proc.pid, signal.SIGCONT)  # it may have stopped reading before it was foreground
        except OSError:
            pass  # already gone
        deadline = time.monotonic() + spec.timeout if spec.timeout else None
        kill_at = None
        next_beat = time.monotonic() + _BEAT
        while True:
            now = time.monotonic()
            waits = [t for t in (deadline if not timed_out else None, kill_at, next_beat) if t is not None]
            try:
                proc.wait(timeout=max(0.0, min(waits) - now) if waits else None)
                break
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            if deadline is not None and not timed_out and now >= deadline:
                timed_out = True
                log("WARNING", f"execution timeout ({spec.timeout} seconds). send SIGTERM.")
                _signal_group(proc.pid, signal.SIGTERM)
                kill_at = now + spec.kill_grace
            elif kill_at is not None and now >= kill_at:
                log("WARNING", f"SIGTERM handling timeout ({spec.kill_grace:g} seconds). send SIGKILL.")
                _signal_group(proc.pid, signal.SIGKILL)
                kill_at = None
            if on_heartbeat is not None and now >= next_beat:
                on_heartbeat()
                next_beat = now + _BEAT
    except BaseException:
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    finally:
        try:
            os.tcsetpgrp(tty, os.getpgrp())
        except OSError:
            pass
        signal.signal(signal.SIGTTOU, previous)
    code = proc.returncode
    return Result(exit_code=128 - code if code < 0 else code, timed_out=timed_out,
                  reason="timeout" if timed_out else None, tail="", pid=proc.pid)
