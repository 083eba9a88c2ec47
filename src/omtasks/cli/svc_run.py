"""`om SVC run` and `om SVC confirm`."""

from __future__ import annotations

import click

from omtasks.cli import completion
from omtasks.cli.errors import OmError
from omtasks.cli.service import service_name


@click.command()
@click.option("--rid", help="comma list of rids; 'task' means every task", shell_complete=completion.rids)
@click.option("--tags", help="a,b: any of the tags; a+b: all of them")
@click.option("--subsets", help="comma list of subsets")
@click.option("--confirm", is_flag=True, help="pre-confirm tasks that require a confirmation")
@click.option("--cron", is_flag=True, help="run as the scheduler would: claim the next slot")
def run(rid: str | None, tags: str | None, subsets: str | None, confirm: bool, cron: bool) -> int:
    """Run the selected tasks now, in the foreground."""
    from omtasks.runner.context import Context
    from omtasks.runner.logs import ServiceLog
    from omtasks.runner.manual import NO_MATCH, ManualRun, Selection, load_for_run, node_refusal, select_tasks

    name = service_name()
    ctx = Context.create()
    try:
        _count_nodes(ctx)
        cfg = load_for_run(ctx, name)
        if not cfg.valid:
            for problem in cfg.errors:
                click.echo(str(problem), err=True)
            raise OmError(f"service '{name}' has an invalid config: nothing run")
        if cfg.disable:
            ServiceLog(ctx, name, terminal=True).line(None, "INFO", "service disabled")
            return 0
        refusal = node_refusal(cfg, ctx.node)
        if refusal:
            raise OmError(refusal)
        tasks = select_tasks(cfg, Selection(rid, tags, subsets))
        if not tasks:
            raise OmError(NO_MATCH)
        broken = [p for t in tasks if not t.disable for p in t.errors]
        if broken:
            for problem in broken:
                click.echo(str(problem), err=True)
            raise OmError("the selected tasks have config errors: nothing run")
        return ManualRun(ctx, cfg, confirm=confirm, cron=cron).run(tasks)
    finally:
        ctx.close()


@click.command()
@click.option("--rid", help="the task whose pending confirmation is answered", shell_complete=completion.rids)
@click.option("--run", "run_id", type=click.IntRange(1, 2**63 - 1), help="the run whose pending confirmation is answered",
              shell_complete=completion.run_ids)
@click.option("--yes", "answer", flag_value="yes", help="confirm: the run becomes eligible")
@click.option("--no", "answer", flag_value="no", help="refuse: the run fails (confirmation refused)")
def confirm(rid: str | None, run_id: int | None, answer: str | None) -> None:
    """Answer a scheduled run's pending confirmation."""
    from omtasks.runner.confirm import decide
    from omtasks.runner.context import Context

    if answer is None:
        raise click.UsageError("one of --yes or --no is required")
    if rid and run_id is not None:
        raise click.UsageError("--rid and --run are mutually exclusive")
    name = service_name()
    ctx = Context.create()
    try:
        _require_service(ctx, name)
        click.echo(decide(ctx, name, rid, run_id, answer == "yes"))
    finally:
        ctx.close()


def _require_service(ctx, name: str) -> None:
    from omtasks.paths import service_conf_path

    if not service_conf_path(name, ctx.root).exists():
        raise OmError(f"service '{name}' does not exist")


def _count_nodes(ctx) -> None:
    from omtasks.runner.catalog import node_count

    with ctx.engine.begin() as conn:
        ctx.shared_nodes = node_count(conn)
