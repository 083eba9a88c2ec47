"""`om SVC confirm`: deciding a pending confirmation of a scheduled run (SPEC 8.7)."""

from __future__ import annotations

from sqlalchemy import select

from omtasks import statemachine as sm
from omtasks.cli.errors import OmError
from omtasks.db.runs import LostRace, transition
from omtasks.db.schema import confirmations, runs
from omtasks.timeutil import from_utc_naive


def _pending(conn, service: str, rid: str | None):
    c = confirmations.c
    q = select(confirmations).where(c.service == service, c.state == "pending").order_by(c.run_id)
    if rid:
        q = q.where(c.rid == rid)
    return conn.execute(q).fetchall()


def choose(conn, service: str, rid: str | None, run_id: int | None):
    """The one confirmation row the selector names, or OmError with SPEC 8.7's messages."""
    if run_id is not None:
        run = conn.execute(select(runs.c.state, runs.c.service).where(runs.c.id == run_id)).first()
        if run is None:  # SPEC 12: `--run 99` not pending
            raise OmError(f"run {run_id} is not awaiting confirmation (state: none)")
        if run.service != service:
            raise OmError(f"run {run_id} is not a run of {service}")
        row = conn.execute(select(confirmations).where(confirmations.c.run_id == run_id,
                                                       confirmations.c.state == "pending")).first()
        if row is None or run.state != sm.AWAITING:
            raise OmError(f"run {run_id} is not awaiting confirmation (state: {run.state})")
        return row
    rows = _pending(conn, service, rid)
    if len(rows) > 1 and rid:
        rows = _pending(conn, service, None)  # --rid matching several behaves like no selector
    if not rows:
        raise OmError(f"no pending confirmation for {service}")
    if len(rows) > 1:
        ids = ", ".join(str(r.run_id) for r in rows)
        raise OmError(f"{len(rows)} pending confirmations for {service}: choose one with --run ({ids})", 2)
    return rows[0]


def decide(ctx, service: str, rid: str | None, run_id: int | None, yes: bool) -> str:
    """Answer the selected confirmation; returns the line to print.  Launches the run when it is ours."""
    with ctx.engine.begin() as conn:
        row = choose(conn, service, rid, run_id)
        run = conn.execute(select(runs).where(runs.c.id == row.run_id)).first()
        if run.trigger == "manual":
            raise OmError(f"run {row.run_id} is being confirmed on a terminal")
        expires = from_utc_naive(row.expires_at)
    if expires <= ctx.now:
        with ctx.engine.begin() as conn:
            _move(conn, ctx, row.run_id, sm.FAILED, "confirmation expired")
        shown = expires.astimezone(ctx.tz).strftime("%Y-%m-%d %H:%M:%S")
        raise OmError(f"run {row.run_id}: confirmation expired at {shown}")
    with ctx.engine.begin() as conn:
        if yes:
            _move(conn, ctx, row.run_id, sm.ELIGIBLE, f"confirmed by {ctx.actor}")
        else:
            _move(conn, ctx, row.run_id, sm.FAILED, "confirmation refused")
    if yes and run.node == ctx.node:
        from omtasks.runner.launch import spawn_worker

        spawn_worker(ctx, [row.run_id])
    word = "confirmed" if yes else "refused"
    return f"run {row.run_id} of {service} {run.rid or run.action} {word}"


def _move(conn, ctx, run_id: int, to: str, reason: str) -> None:
    try:
        transition(conn, run_id, sm.AWAITING, to, reason=reason, actor=ctx.actor, now=ctx.now)
    except LostRace as exc:
        raise OmError(f"run {run_id} is not awaiting confirmation (state: {exc.actual})") from None
