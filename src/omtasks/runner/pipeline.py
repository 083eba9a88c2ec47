"""The per-task pipeline from `eligible` to a terminal state (SPEC 5.2 steps 6-8).

Shared by manual runs (`om SVC run`, in the foreground) and workers
(`om runner exec`), so both behave the same: impersonation check, `running`,
triggers, the command, retcodes, `on_error`, each state change persisted.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import update

from omtasks import statemachine as sm
from omtasks.db.runs import LostRace, add_note, transition
from omtasks.db.schema import runs
from omtasks.paths import ensure_dir, run_log_path
from omtasks.runner import execute, procinfo
from omtasks.runner.identity import ImpersonationError, resolve
from omtasks.timeutil import to_utc_naive


@dataclass(frozen=True)
class Outcome:
    state: str
    reason: str | None
    exit_code: int | None = None
    message: str | None = None  # for the action's "stopped on execution error" line


class Pipeline:
    """Runs one eligible task run; `interactive` for a manual run on a terminal."""

    def __init__(self, ctx, log, service_cfg, task, run_id: int, *, trigger: str,
                 scheduled_for: datetime | None, interactive: bool) -> None:
        self.ctx = ctx
        self.log = log
        self.service = service_cfg
        self.task = task
        self.run_id = run_id
        self.trigger = trigger
        self.scheduled_for = scheduled_for or ctx.now
        self.interactive = interactive
        self.started = time.monotonic()

    def say(self, level: str, message: str) -> None:
        self.log.line(self.task.rid, level, message, self.run_id)

    def move(self, frm: str, to: str, reason: str | None, **fields) -> None:
        with self.ctx.engine.begin() as conn:
            transition(conn, self.run_id, frm, to, reason=reason, actor=self.ctx.actor, now=self.ctx.now, **fields)

    def env(self, identity, task_environment: bool = True) -> dict[str, str]:
        extra = {
            "OPENSVC_SVCNAME": self.service.name, "OPENSVC_RID": self.task.rid, "OPENSVC_ACTION": "run",
            "OM_SERVICE": self.service.name, "OM_RID": self.task.rid, "OM_RUN_ID": str(self.run_id),
            "OM_NODENAME": self.ctx.node, "OM_TRIGGER": self.trigger,
            "OM_SCHEDULED_FOR": self.scheduled_for.astimezone(self.ctx.tz).isoformat(),
        }
        return execute.base_environment(identity, extra, self.task.environment if task_environment else None)

    def execute(self) -> Outcome:
        task = self.task
        try:  # a container task's user is the container's (--user): the CLI runs as om's user
            identity = resolve(None, None) if task.is_container else resolve(task.user, task.group)
        except ImpersonationError as exc:
            self.say("ERROR", str(exc))
            self.move(sm.ELIGIBLE, sm.FAILED, "impersonation refused")
            return Outcome(sm.FAILED, "impersonation refused", None, str(exc))
        pid, start, boot = procinfo.self_identity()
        self.move(sm.ELIGIBLE, sm.RUNNING, None, pid=pid, proc_start=start, boot_id=boot, run_as=identity.name,
                  command=task.command)
        if task.snooze:
            self.say("WARNING", "snooze: nothing to snooze, ignored")
        own = resolve(None, None)
        if task.pre_run:
            self.trigger_cmd("pre_run", task.pre_run, own)  # a failure only warns
        if task.blocking_pre_run:
            code = self.trigger_cmd("blocking_pre_run", task.blocking_pre_run, own)
            if code != 0:
                return self.finish(sm.FAILED, f"trigger failed: blocking_pre_run exit code {code}", None, "")
        if task.log:  # an interactive task's command line is not logged (OpenSVC v2)
            self.say("INFO", task.command if not task.is_container else f"{task.type} run {task.image} {task.command}")
        try:
            result = self.command(identity)
        except ImpersonationError as exc:  # the kernel refused the identity change
            self.say("ERROR", str(exc))
            return self.finish(sm.FAILED, "impersonation refused", None, "")
        except execute.CommandError as exc:  # no argv to execute: like a command not found
            self.say("ERROR", f"cannot execute: {exc}")
            return self.finish(sm.FAILED, "exit code 127", 127, "")
        code = result.exit_code
        if result.timed_out:
            outcome = self.finish(sm.FAILED, "timeout", code, result.tail)
        elif task.status_for(code) == "up":
            if task.post_run:
                self.trigger_cmd("post_run", task.post_run, own)
            if task.blocking_post_run:
                tcode = self.trigger_cmd("blocking_post_run", task.blocking_post_run, own)
                if tcode != 0:
                    return self.finish(sm.FAILED, f"trigger failed: blocking_post_run exit code {tcode}", code,
                                       result.tail)
            return self.finish(sm.DONE, None, code, result.tail)
        else:
            outcome = self.finish(sm.FAILED, f"exit code {code}", code, result.tail)
        if task.on_error:
            self.on_error(identity, outcome)
        return outcome

    def command(self, identity) -> execute.Result:
        task = self.task
        log_path = None
        if task.log:
            path = run_log_path(self.service.name, self.run_id, self.ctx.root)
            ensure_dir(path.parent)
            log_path = str(path)
        tty = None
        if self.interactive and not task.log:
            from omtasks.runner.terminal import caller_tty

            tty = caller_tty()
        argv = None
        if task.is_container:  # `<cli> run ...`, no shell; the task's environment goes in as -e
            from omtasks.runner.container import run_argv

            try:
                argv = run_argv(self.service, task, self.run_id)
            except ValueError as exc:
                raise execute.CommandError(str(exc)) from None
            if tty is None and "--tty" in argv:
                argv.remove("--tty")  # no terminal to allocate one for: docker would refuse to start
        spec = execute.CommandSpec(task.command, identity, task.cwd, task.umask,
                                   self.env(identity, task_environment=argv is None), task.timeout,
                                   argv=tuple(argv) if argv else None)
        if tty is not None:
            from omtasks.runner.terminal import run_on_tty

            return run_on_tty(spec, tty, log=self.say, on_heartbeat=self.heartbeat)
        return execute.run(spec, on_line=self.on_line, log_path=log_path, on_heartbeat=self.heartbeat,
                           log=self.say, forward_sigint=self.interactive)

    def on_line(self, stream: str, line: str) -> None:
        if self.task.log:
            self.say("INFO" if stream == "stdout" else "ERROR", f"| {line}")
        elif self.interactive:
            out = sys.stdout if stream == "stdout" else sys.stderr
            out.write(line + "\n")
            out.flush()

    def heartbeat(self) -> None:
        beat = self.ctx.now + timedelta(seconds=time.monotonic() - self.started)
        with self.ctx.engine.begin() as conn:
            conn.execute(update(runs).where(runs.c.id == self.run_id).values(heartbeat_at=to_utc_naive(beat)))

    def trigger_cmd(self, name: str, command: str, identity) -> int:
        """Run a trigger as the user running om; returns its exit code."""
        spec = execute.CommandSpec(command, identity, None, None, self.env(identity), self.task.timeout)
        self.say("INFO", f"{name}: {command}")
        result = execute.run(spec, on_line=self.on_line, log_path=None, log=self.say)
        if result.exit_code != 0:
            level = "ERROR" if name.startswith("blocking_") else "WARNING"
            self.say(level, f"{name} failed: exit code {result.exit_code}")
        return result.exit_code

    def on_error(self, identity, outcome: Outcome) -> None:
        """on_error runs after the failure is recorded, so it cannot change the run's outcome.

        It also gets OM_EXIT_CODE (empty when the command never exited), OM_STATE and OM_REASON.
        """
        env = self.env(identity)
        env.update(OM_EXIT_CODE="" if outcome.exit_code is None else str(outcome.exit_code),
                   OM_STATE=outcome.state, OM_REASON=outcome.reason or "")
        spec = execute.CommandSpec(self.task.on_error, identity, self.task.cwd, self.task.umask,
                                   env, self.task.timeout)
        self.say("INFO", f"on_error: {self.task.on_error}")
        result = execute.run(spec, on_line=self.on_line, log_path=None, log=self.say)
        if result.exit_code != 0:
            self.say("WARNING", f"on_error failed: exit code {result.exit_code}")

    def finish(self, state: str, reason: str | None, code: int | None, tail: str) -> Outcome:
        try:
            self.move(sm.RUNNING, state, reason, exit_code=code, output_tail=tail or None)
        except LostRace:
            note = f"finished after being reaped: exit code {code}"
            with self.ctx.engine.begin() as conn:
                add_note(conn, self.run_id, sm.FAILED, note, self.ctx.actor)
            self.say("WARNING", f"run {self.run_id} {note}")
            return Outcome(sm.FAILED, "lost", code, note)
        if state == sm.FAILED:
            message = reason if reason != f"exit code {code}" else f"{self.task.rid} {reason}"
            return Outcome(state, reason, code, message)
        return Outcome(state, reason, code)
