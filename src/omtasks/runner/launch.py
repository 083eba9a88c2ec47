"""Start a detached worker (`om runner exec`) for claimed runs (SPEC 8.5)."""

from __future__ import annotations

import os
import sys

from sqlalchemy import update

from omtasks import statemachine as sm
from omtasks.db.schema import runs
from omtasks.paths import ensure_dir
from omtasks.runner import procinfo
from omtasks.runner.logs import runner_log


def spawn_worker(ctx, run_ids: list[int]) -> int | None:
    """Launch `om runner exec RUN_ID...` without waiting and record it on the runs; its pid, or None."""
    from omtasks.runner.execute import CommandError, spawn_detached

    env = dict(os.environ)
    env.update(OM_ROOT=str(ctx.root), OM_NODENAME=ctx.node)
    if ctx.explicit_now:
        env["OM_NOW"] = ctx.now.isoformat()  # a tick given --now passes it to its workers (SPEC 8.3)
    argv = [sys.executable, "-m", "omtasks", "runner", "exec", *map(str, run_ids)]
    try:
        pid = spawn_detached(argv, log_path=str(ensure_dir(ctx.log_dir) / "runner.log"), env=env)
    except CommandError as exc:
        runner_log(ctx, f"cannot start a worker for runs {run_ids}: {exc}")
        return None
    c = runs.c
    with ctx.engine.begin() as conn:
        conn.execute(update(runs)
                     .where(c.id.in_(run_ids), c.state.in_((sm.ELIGIBLE, sm.RUNNING)), c.pid.is_(None))
                     .values(pid=pid, proc_start=procinfo.proc_start(pid), boot_id=procinfo.boot_id()))
    return pid
