"""`om SVC start|stop|switch|freeze|thaw`: the service's instances and placement (SPEC 6)."""

from __future__ import annotations

import click

from omtasks.cli.errors import OmError
from omtasks.cli.service import service_name


def _prepare():
    """Context and config of the service, refusing a node outside the service (SPEC 6.3)."""
    from omtasks.runner.catalog import node_count
    from omtasks.runner.context import Context
    from omtasks.runner.manual import load_for_run

    ctx = Context.create()
    with ctx.engine.begin() as conn:
        ctx.shared_nodes = node_count(conn)
    cfg = load_for_run(ctx, service_name())
    if not cfg.valid:
        for problem in cfg.errors:
            click.echo(str(problem), err=True)
        ctx.close()
        raise OmError(f"service '{cfg.name}' has an invalid config")
    return ctx, cfg


def _local(ctx, cfg):
    from omtasks.runner.manual import node_refusal

    refusal = node_refusal(cfg, ctx.node)
    if refusal:
        raise OmError(refusal)


def _local_action(name: str) -> int:
    """Run `instance.start` or `instance.stop` on this node, logging to the terminal."""
    from omtasks.runner import instance
    from omtasks.runner.logs import ServiceLog

    ctx, cfg = _prepare()
    try:
        _local(ctx, cfg)
        return getattr(instance, name)(ctx, cfg, ServiceLog(ctx, cfg.name, terminal=True).line)
    finally:
        ctx.close()


@click.command()
def start() -> int:
    """Start the local instance (failover: this node becomes active if none is)."""
    return _local_action("start")


@click.command()
def stop() -> int:
    """Stop the local instance (failover, on the active node: also clears the placement)."""
    return _local_action("stop")


@click.command()
@click.option("--to", "to", required=True, metavar="NODE", help="the node that becomes active")
def switch(to: str) -> None:
    """Move a failover service's placement; each node's runner converges on its next tick."""
    from omtasks.runner import instance

    ctx, cfg = _prepare()
    try:
        click.echo(instance.switch(ctx, cfg, to))
    finally:
        ctx.close()


def _frozen(value: bool) -> None:
    from omtasks.runner import instance

    ctx, cfg = _prepare()
    try:
        _local(ctx, cfg)
        instance.freeze(ctx, cfg, value)
    finally:
        ctx.close()


@click.command()
def freeze() -> None:
    """Freeze the local instance: convergence never starts or stops it; tasks still run."""
    _frozen(True)


@click.command()
def thaw() -> None:
    """Thaw the local instance: convergence resumes."""
    _frozen(False)
