"""`om SVC run`: manual runs in the foreground (SPEC 5).

Selection, then for each task in rid order: disabled check, run row (or a
claimed slot with --cron), requirements, confirmation, max_parallel, and the
shared pipeline.  Returns the exit code of SPEC 5.7.
"""

from __future__ import annotations

import select
import sys
from dataclasses import dataclass
from datetime import timedelta

from omtasks import statemachine as sm
from omtasks.cli.errors import OmError
from omtasks.db.runs import admit, claim, create_run, transition
from omtasks.runner import procinfo
from omtasks.runner.logs import ServiceLog
from omtasks.runner.pipeline import Outcome, Pipeline
from omtasks.runner.requires import unmet

PROMPT = (
    "This task run requires confirmation.\n"
    "Please make sure you fully understand its role and effects before confirming the run.\n"
    "Do you really want to run {rid} (yes/no) > "
)
PROMPT_TIMEOUT = 30
NO_MATCH = "no resource match the given --rid, --subset and --tags specifiers"


@dataclass
class Selection:
    rids: str | None
    tags: str | None
    subsets: str | None


def _tags_match(task, spec: str) -> bool:
    have = set(task.tags)
    return any(all(t in have for t in group.split("+") if t) for group in spec.split(","))


def select_tasks(service_cfg, sel: Selection) -> list:
    """Tasks matching --rid, --tags and --subsets (they intersect), in rid order (SPEC 5.1)."""
    chosen = []
    for rid in service_cfg.sorted_task_rids():
        task = service_cfg.tasks[rid]
        if sel.rids:
            wanted = [r.strip() for r in sel.rids.split(",") if r.strip()]
            if not any(r == rid if "#" in r else r == "task" for r in wanted):
                continue
        if sel.tags and not _tags_match(task, sel.tags):
            continue
        if sel.subsets and task.subset not in {s.strip() for s in sel.subsets.split(",")}:
            continue
        chosen.append(task)
    return chosen


def node_refusal(service_cfg, node: str) -> str | None:
    if service_cfg.is_node_of_service(node):
        return None
    nodes = " ".join(service_cfg.nodes) or "-"
    drp = " ".join(service_cfg.drpnodes) or "-"
    return f"this node '{node}' is not a node of service '{service_cfg.name}' (nodes: {nodes}, drpnodes: {drp})"


class ManualRun:
    def __init__(self, ctx, service_cfg, *, confirm: bool, cron: bool) -> None:
        self.ctx = ctx
        self.service = service_cfg
        self.confirm = confirm
        self.cron = cron
        self.log = ServiceLog(ctx, service_cfg.name, terminal=True)

    def run(self, tasks: list) -> int:
        for task in tasks:
            outcome = self.one(task)
            if outcome is None or outcome.state == sm.DONE:
                continue
            if outcome.state == sm.SKIPPED and self.cron:
                continue
            if task.optional:
                self.log.line(task.rid, "WARNING", "ignore run error on optional resource")
                continue
            self.log.line(None, "ERROR", f"'run' action stopped on execution error: {outcome.message}")
            return _exit_code(outcome, task)
        return 0

    def one(self, task) -> Outcome | None:
        ctx = self.ctx
        if task.disable:
            self.log.line(task.rid, "INFO", f"{task.rid} disabled")
            return None
        pid, start, boot = procinfo.self_identity()
        common = dict(service=self.service.name, action="run", rid=task.rid, node=ctx.node, now=ctx.now,
                      actor=ctx.actor, requested_by=ctx.actor, command=task.command, pid=pid, proc_start=start,
                      boot_id=boot)
        from omtasks.config import task_scope

        scope = "" if task_scope(self.service, task) == "cluster" else ctx.node
        from omtasks.runner.container import prefetch

        prefetch(self.service, [task])  # container/fs probes run here, outside the transactions below
        if self.cron:
            return self._cron(task, scope, common)
        with ctx.engine.begin() as conn:
            run_id = create_run(conn, trigger="manual", scheduled_for=ctx.now, scope=scope,
                                reason=f"manual by {ctx.actor}", **common)
            why = unmet(conn, self.service, task, ctx.node)
            if why is not None:
                transition(conn, run_id, sm.SCHEDULED, sm.SKIPPED, reason=f"requires not met: {why}",
                           actor=ctx.actor, now=ctx.now)
        if why is not None:
            self.log.line(task.rid, "ERROR", why)
            return Outcome(sm.SKIPPED, f"requires not met: {why}", None, why)
        state = sm.SCHEDULED
        if task.confirmation:
            if self.confirm:
                self.log.line(task.rid, "INFO", "run confirmed by --confirm")
            else:
                refused = self._prompt(task, run_id)
                if refused is not None:
                    return refused
                state = sm.ELIGIBLE
        if state == sm.SCHEDULED and not admit(ctx.engine, run_id, max_parallel=task.max_parallel, now=ctx.now,
                                               actor=ctx.actor):
            return self._busy(task)
        return self._pipeline(task, run_id, "manual")

    def _cron(self, task, scope: str, common: dict) -> Outcome | None:
        ctx = self.ctx
        timeout = task.confirmation_timeout if task.confirmation and not self.confirm else None
        for key in ("now", "actor"):
            common.pop(key)
        result = claim(ctx.engine, scope=scope, now=ctx.now, scheduled_for=ctx.now, max_parallel=task.max_parallel,
                       confirmation_timeout=timeout, actor=ctx.actor, trigger="cron",
                       reason=f"manual --cron by {ctx.actor}", **common)
        if result.run_id is None:
            print(f"{task.rid}: slot already claimed by run {result.winner_id} ({result.winner_state})")
            return None
        if result.state == sm.SKIPPED:
            return self._busy(task)
        with ctx.engine.begin() as conn:
            why = unmet(conn, self.service, task, ctx.node)
            if why is not None:
                transition(conn, result.run_id, result.state, sm.SKIPPED, reason=f"requires not met: {why}",
                           actor=ctx.actor, now=ctx.now)
        if why is not None:
            return Outcome(sm.SKIPPED, f"requires not met: {why}", None, why)
        if result.state == sm.AWAITING:
            _detach(ctx, result.run_id)  # the tick launches it once confirmed: this process is not its owner
            until = result.expires_at.astimezone(ctx.tz).strftime("%Y-%m-%d %H:%M:%S")
            print(f"{task.rid}: run {result.run_id} awaiting confirmation until {until}; "
                  f"confirm with: om {self.service.name} confirm --run {result.run_id} --yes")
            return None
        if task.confirmation:
            self.log.line(task.rid, "INFO", "run confirmed by --confirm")
        return self._pipeline(task, result.run_id, "cron", scheduled_for=result.scheduled_for)

    def _busy(self, task) -> Outcome:
        message = f"task is already running {task.max_parallel} times"
        self.log.line(task.rid, "INFO" if self.cron else "ERROR", message)
        return Outcome(sm.SKIPPED, "max parallel runs reached", None, message)

    def _prompt(self, task, run_id: int) -> Outcome | None:
        """The interactive confirmation (SPEC 5.4); None when confirmed (the run is then eligible)."""
        ctx = self.ctx
        expires = ctx.now + timedelta(seconds=PROMPT_TIMEOUT)
        with ctx.engine.begin() as conn:
            transition(conn, run_id, sm.SCHEDULED, sm.AWAITING, reason="confirmation requested on a terminal",
                       actor=ctx.actor, now=ctx.now, expires_at=expires)
        if not sys.stdin.isatty():
            self._refuse(run_id, "confirmation refused")
            return Outcome(sm.FAILED, "confirmation refused", None,
                           "run aborted (stdin is not a terminal; use --confirm)")
        sys.stderr.write(PROMPT.format(rid=task.rid))
        sys.stderr.flush()
        try:
            ready, _, _ = select.select([sys.stdin], [], [], PROMPT_TIMEOUT)
            answer = sys.stdin.readline() if ready else None
            if answer == "":  # end of input (Ctrl-D): the terminal echoed no newline
                sys.stderr.write("\n")
        except KeyboardInterrupt:
            sys.stderr.write("\n")
            answer = ""
        if answer is None:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self._refuse(run_id, "confirmation expired")
            return Outcome(sm.FAILED, "confirmation expired", None, "timeout waiting for confirmation")
        if answer.strip() != "yes":
            self._refuse(run_id, "confirmation refused")
            return Outcome(sm.FAILED, "confirmation refused", None, "run aborted")
        if not admit(ctx.engine, run_id, max_parallel=task.max_parallel, now=ctx.now, actor=ctx.actor,
                     reason=f"confirmed by {ctx.actor}"):
            return self._busy(task)
        self.log.line(task.rid, "INFO", "run confirmed")
        return None

    def _refuse(self, run_id: int, reason: str) -> None:
        with self.ctx.engine.begin() as conn:
            transition(conn, run_id, sm.AWAITING, sm.FAILED, reason=reason, actor=self.ctx.actor, now=self.ctx.now)

    def _pipeline(self, task, run_id: int, trigger: str, scheduled_for=None) -> Outcome:
        pipeline = Pipeline(self.ctx, self.log, self.service, task, run_id, trigger=trigger,
                            scheduled_for=scheduled_for or self.ctx.now, interactive=True)
        return pipeline.execute()


def _detach(ctx, run_id: int) -> None:
    from sqlalchemy import update

    from omtasks.db.schema import runs

    with ctx.engine.begin() as conn:
        conn.execute(update(runs).where(runs.c.id == run_id).values(pid=None, proc_start=None, boot_id=None))


def _exit_code(outcome: Outcome, task) -> int:
    """SPEC 5.7: the command's code when it ran and was not mapped to up (0 mapped elsewhere -> 1)."""
    if outcome.reason and outcome.reason.startswith("exit code") and outcome.exit_code:
        return outcome.exit_code
    return 1


def load_for_run(ctx, name: str):
    """The service config for a manual action, or OmError with the printed problems."""
    from omtasks.config import load_service
    from omtasks.paths import service_conf_path

    path = service_conf_path(name, ctx.root)
    if not path.exists():
        raise OmError(f"service '{name}' does not exist")
    return load_service(path, ctx.node, shared_nodes=ctx.shared_nodes)
