"""The schedule table of `print schedule`, computed live with the tick's code, read-only (SPEC 8.2, 10).

Nothing is claimed and no decision is written, so the table is right before
the first tick too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo

from sqlalchemy import select

from omtasks.db.connect import reading
from omtasks.db.schema import schedule_entries
from omtasks.runner import procinfo
from omtasks.runner.catalog import node_count
from omtasks.runner.entries import service_entries
from omtasks.runner.evaluate import ServiceState, evaluate
from omtasks.runner.liveness import stale_tick
from omtasks.runner.tick_errors import is_database_error, one_line
from omtasks.timeutil import from_utc_naive, iso, show


@dataclass
class ScheduleRow:
    service: str
    node: str
    action: str
    rid: str | None
    config_parameter: str
    definition: str
    dialect: str
    scope: str
    last_run: datetime | None
    last_success: datetime | None
    next_run: datetime | None
    verdict: str
    note: str | None

    def as_row(self, tz: tzinfo, with_service: bool = False) -> list[str | None]:
        row = [self.action, show(self.last_run, tz), show(self.next_run, tz), self.config_parameter,
               self.definition or None, self.note]
        return [self.service, *row] if with_service else row

    def as_json(self, tz: tzinfo) -> dict:
        return {"service": self.service, "node": self.node, "action": self.action, "rid": self.rid,
                "config_parameter": self.config_parameter, "schedule_definition": self.definition,
                "dialect": self.dialect, "scope": self.scope, "last_run": iso(self.last_run, tz),
                "last_success": iso(self.last_success, tz), "next_run": iso(self.next_run, tz),
                "verdict": self.verdict, "note": self.note}


def schedule_rows(ctx, names: list[str], rid_filter: str | None = None) -> list[ScheduleRow]:
    from omtasks.config import load_service
    from omtasks.paths import service_conf_path

    wanted = {r.strip() for r in rid_filter.split(",")} if rid_filter else None
    boot = procinfo.boot_time()
    out: list[ScheduleRow] = []
    with reading(ctx.engine) as conn:
        ctx.shared_nodes = node_count(conn)
        ctx.stale_tick = stale_tick(ctx, conn)
        se = schedule_entries.c
        stored = {(r.service, r.action, r.rid): r
                  for r in conn.execute(select(schedule_entries).where(se.node == ctx.node, se.service.in_(names)))}
        for name in names:
            cfg = load_service(service_conf_path(name, ctx.root), ctx.node, shared_nodes=ctx.shared_nodes)
            try:
                out.extend(_service_rows(ctx, conn, name, cfg, stored, wanted, boot))
            except Exception as exc:
                if is_database_error(exc):
                    raise
                # one service's failure is its own row, as the tick records it (config_invalid)
                out.append(ScheduleRow(name, ctx.node, "-", None, "-", "", "", "", None, None, None,
                                       "config_invalid", f"config invalid: evaluation failed: {one_line(exc)}"))
    return out


def _service_rows(ctx, conn, name, cfg, stored, wanted, boot) -> list[ScheduleRow]:
    out: list[ScheduleRow] = []
    state = ServiceState(conn, name, ctx.node)
    for entry in service_entries(cfg, ctx.node, ctx.node_config):
        if wanted and (entry.rid or entry.action) not in wanted and entry.action not in wanted:
            continue
        row = stored.get((name, entry.action, entry.rid or ""))
        first_seen = from_utc_naive(row.created_at) if row is not None else ctx.now
        v = evaluate(ctx, entry, cfg, state, boot=boot, first_seen=first_seen,
                     previous=row.verdict if row is not None else None,
                     previous_next=from_utc_naive(row.next_run_at) if row is not None else None)
        next_run, note = v.next_run, v.note
        if v.verdict == "due":
            next_run, note = v.scheduled_for, ("due: the next tick claims it" if ctx.stale_tick is None
                                               else "due: waiting for a runner tick (see the warning)")
        marker = state.marker(entry)
        out.append(ScheduleRow(name, ctx.node, entry.action, entry.rid, entry.config_parameter,
                               entry.definition, entry.dialect, entry.scope_name, marker.last_attempt_at,
                               marker.last_success_at, next_run, v.verdict, note))
    return out


def decisions(ctx, service: str, rows: list[ScheduleRow], limit: int = 10) -> dict[tuple[str, str], list[dict]]:
    """The last `limit` recorded decisions of each entry, newest first (`--explain`)."""
    from omtasks.db.schema import schedule_decisions

    d = schedule_decisions.c
    out: dict[tuple[str, str], list[dict]] = {}
    with reading(ctx.engine) as conn:
        for r in rows:
            q = (select(d.at, d.verdict, d.reason, d.slot, d.run_id)
                 .where(d.service == service, d.node == ctx.node, d.action == r.action, d.rid == (r.rid or ""))
                 .order_by(d.id.desc()).limit(limit))
            out[(r.action, r.rid or "")] = [
                {"at": show(from_utc_naive(x.at), ctx.tz), "verdict": x.verdict, "reason": x.reason,
                 "run_id": x.run_id} for x in conn.execute(q)]
    return out
