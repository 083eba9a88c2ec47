"""Worker side of the runs that are not tasks: instance start and stop (SPEC 6.2)."""

from __future__ import annotations

from omtasks.runner.instance import run_action
from omtasks.runner.logs import ServiceLog


def execute_builtin(ctx, service_cfg, run) -> None:
    log = ServiceLog(ctx, service_cfg.name, terminal=False)
    if run.action in ("start", "stop"):
        run_action(ctx, service_cfg, run.action, trigger=run.trigger, log=log.line, run_id=run.id)
