"""One run's history for `om SVC print run ID`: the row, its state changes and its output."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from omtasks.db.connect import reading
from omtasks.db.schema import run_events, runs
from omtasks.paths import run_log_path
from omtasks.timeutil import from_utc_naive, iso

#: the output printed in full up to this size; a longer run log keeps its end
OUTPUT_LIMIT = 1024 * 1024


def _output(ctx, row) -> tuple[str | None, str]:
    """The run's output and where it came from: its run log (whole, or its last OUTPUT_LIMIT bytes), else output_tail."""
    path = run_log_path(row.service, row.id, ctx.root)
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, 2)
            handle.seek(max(0, size - OUTPUT_LIMIT))
            return handle.read().decode("utf-8", "replace"), str(path)
    except OSError:
        return row.output_tail, "output_tail"


def run_document(ctx, run_id: int) -> dict[str, Any] | None:
    """The run as a JSON-ready dict, with `events` oldest first and `output`; None when there is no such run."""
    tz = ctx.tz
    with reading(ctx.engine) as conn:
        row = conn.execute(select(runs).where(runs.c.id == run_id)).first()
        if row is None:
            return None
        e = run_events.c
        events = conn.execute(select(run_events).where(e.run_id == run_id).order_by(e.id)).fetchall()
    output, source = _output(ctx, row)
    duration = (row.ended_at - row.started_at).total_seconds() if row.started_at and row.ended_at else None
    keys = ("id", "service", "action", "rid", "node", "trigger", "state", "reason", "exit_code",
            "requested_by", "run_as", "command")
    times = ("scheduled_for", "created_at", "started_at", "ended_at")
    return {
        **{k: getattr(row, k) for k in keys}, **{k: iso(from_utc_naive(getattr(row, k)), tz) for k in times},
        "duration": duration,
        "events": [{"at": iso(from_utc_naive(ev.at), tz), "from_state": ev.from_state, "to_state": ev.to_state,
                    "reason": ev.reason, "actor": ev.actor} for ev in events],
        "output": output, "output_source": source,
    }


def render_run(doc: dict[str, Any]) -> str:
    """The text form: a field list, the state changes, then the output."""
    fields = [("run", str(doc["id"])), ("service", doc["service"]), ("rid", doc["rid"] or doc["action"]),
              ("node", doc["node"]), ("trigger", doc["trigger"]), ("state", doc["state"]),
              ("reason", doc["reason"]), ("exit code", None if doc["exit_code"] is None else str(doc["exit_code"])),
              ("scheduled", doc["scheduled_for"]), ("started", doc["started_at"]), ("ended", doc["ended_at"]),
              ("duration", None if doc["duration"] is None else f"{doc['duration']:.1f}s"),
              ("run as", doc["run_as"]), ("command", doc["command"])]
    lines = [f"{name + ':':<11}{value if value not in (None, '') else '-'}" for name, value in fields]
    lines.append("events:")
    for ev in doc["events"]:
        move = f"{ev['from_state'] or '-'} -> {ev['to_state']}"
        lines.append(f"  {ev['at']}  {move}" + (f"  ({ev['reason']})" if ev["reason"] else "")
                     + (f"  by {ev['actor']}" if ev["actor"] else ""))
    lines.append(f"output ({doc['output_source']}):")
    if doc["output"]:
        lines.append(doc["output"].rstrip("\n"))
    return "\n".join(lines)
