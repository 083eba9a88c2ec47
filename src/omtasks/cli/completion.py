"""Shell completion (click's): service names after `om`, rids after `--rid`, run ids after `--run`.

Activated with `eval "$(_OM_COMPLETE=bash_source om)"` (zsh_source, fish_source);
see the README.  A completion never prints an error into the shell: any
failure (no database yet, a broken file) completes nothing.
"""

from __future__ import annotations

import click
from click.shell_completion import CompletionItem


def services(incomplete: str) -> list[CompletionItem]:
    """Service names of this node (`etc/*.conf`, node.conf aside)."""
    try:
        from omtasks.paths import om_root

        names = sorted(p.stem for p in (om_root() / "etc").glob("*.conf") if p.stem != "node")
    except OSError:
        return []
    return [CompletionItem(n, help="service") for n in names if n.startswith(incomplete)]


def _service(ctx: click.Context) -> str | None:
    return ctx.find_root().meta.get("om.service")


def rids(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """The rids of the service on the command line, from its config file; completes after a comma too."""
    try:
        from omtasks.config import load_service
        from omtasks.paths import nodename, om_root, service_conf_path

        cfg = load_service(service_conf_path(_service(ctx), om_root()), nodename())
        names = [*cfg.sorted_task_rids(), *sorted(cfg.apps), *sorted(cfg.syncs)]
    except Exception:  # noqa: BLE001 - completion never prints a traceback into the shell
        return []
    head, _, last = incomplete.rpartition(",")
    prefix = f"{head}," if head else ""
    return [CompletionItem(prefix + r) for r in names if r.startswith(last)]


def run_ids(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """The 20 newest run ids of the service on the command line, with their rid and state as help."""
    try:
        from sqlalchemy import select

        from omtasks.db.connect import reading
        from omtasks.db.schema import runs
        from omtasks.runner.context import Context

        octx = Context.create()
        try:
            c = runs.c
            with reading(octx.engine) as conn:
                rows = conn.execute(select(c.id, c.rid, c.state).where(c.service == _service(ctx))
                                    .order_by(c.id.desc()).limit(20)).fetchall()
        finally:
            octx.close()
    except Exception:  # noqa: BLE001 - completion never prints a traceback into the shell
        return []
    return [CompletionItem(str(r.id), help=f"{r.rid or '-'} {r.state}") for r in rows
            if str(r.id).startswith(incomplete)]
