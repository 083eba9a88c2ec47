"""`om SVC print status`: one document for every node's view of a service (SPEC 10)."""

from __future__ import annotations

from sqlalchemy import func, select

from omtasks.db.schema import (
    compliance_results,
    confirmations,
    instances,
    resource_status,
    runs,
    services,
)
from omtasks.runner.catalog import node_count
from omtasks.runner.outbox import pending_counts
from omtasks.runner.requires import placement, task_status, unmet
from omtasks.timeutil import from_utc_naive, iso

RUN_KEYS = ("id", "state", "trigger", "reason", "exit_code")


def _run(r, tz) -> dict | None:
    if r is None:
        return None
    return {**{k: getattr(r, k) for k in RUN_KEYS}, "node": r.node,
            "scheduled_for": iso(from_utc_naive(r.scheduled_for), tz),
            "started_at": iso(from_utc_naive(r.started_at), tz), "ended_at": iso(from_utc_naive(r.ended_at), tz)}


def confirmation_doc(r, tz) -> dict:
    """A `confirmations` row as the JSON object of SPEC 10."""
    return {"id": r.id, "run_id": r.run_id, "service": r.service, "rid": r.rid, "node": r.node,
            "requested_at": iso(from_utc_naive(r.requested_at), tz),
            "expires_at": iso(from_utc_naive(r.expires_at), tz), "state": r.state,
            "decided_at": iso(from_utc_naive(r.decided_at), tz), "decided_by": r.decided_by}


def _last_run(conn, service: str, rid: str, node: str):
    c = runs.c
    return conn.execute(select(runs).where(c.service == service, c.rid == rid, c.node == node)
                        .order_by(c.id.desc()).limit(1)).first()


def service_status(ctx, name: str, path) -> dict:
    from omtasks.config import load_service

    from omtasks.db.connect import reading

    tz = ctx.tz
    with reading(ctx.engine) as conn:  # read-only: never waits for a writer
        ctx.shared_nodes = node_count(conn)
        cfg = load_service(path, ctx.node, shared_nodes=ctx.shared_nodes)
        p = placement(conn, name)
        inst = conn.execute(select(instances).where(instances.c.service == name)
                            .order_by(instances.c.node)).fetchall()
        recorded = {(r.node, r.rid): r for r in conn.execute(
            select(resource_status).where(resource_status.c.service == name))}
        node_names = sorted({ctx.node, *cfg.nodes, *cfg.drpnodes, *(i.node for i in inst),
                             *(n for n, _ in recorded)})
        resources = []
        for node in node_names:
            for rid in sorted(cfg.apps):
                rec = recorded.get((node, rid))
                resources.append({"node": node, "rid": rid, "status": rec.status if rec else "undef",
                                  "last_run": None})
            for rid in cfg.sorted_task_rids():
                task = cfg.tasks[rid]
                met = node != ctx.node or unmet(conn, cfg, task, node) is None
                status = task_status(conn, cfg, task, node, requirements_met=met) if task.valid else "invalid"
                resources.append({"node": node, "rid": rid, "status": status,
                                  "last_run": _run(_last_run(conn, name, rid, node), tz)})
            for rid in sorted(cfg.syncs):
                last = _last_run(conn, name, rid, node)
                status = "undef" if last is None or last.state not in ("done", "failed") else (
                    "up" if last.state == "done" else "down")
                resources.append({"node": node, "rid": rid, "status": status, "last_run": _run(last, tz)})
        cc = confirmations.c
        pending = [confirmation_doc(r, tz) for r in conn.execute(
            select(confirmations).where(cc.service == name, cc.state == "pending").order_by(cc.id))]
        cr = compliance_results.c
        latest = select(cr.module, cr.action, func.max(cr.id).label("id")).where(
            cr.service == name, cr.node == ctx.node).group_by(cr.module, cr.action).subquery()
        compliance = [{"module": r.module, "action": r.action, "status": r.status,
                       "at": iso(from_utc_naive(r.at), tz)}
                      for r in conn.execute(select(compliance_results).join(latest, cr.id == latest.c.id)
                                            .order_by(cr.module, cr.action))]
        unsent, last_error = pending_counts(conn, ctx.node, name)
        sums = {r.checksum for r in conn.execute(select(services.c.checksum).where(services.c.name == name))}
    warnings = []
    if len(sums - {None}) > 1:
        warnings.append("the config file differs between nodes (checksums differ): a slot may then run twice")
    return {
        "service": name, "topology": cfg.topology, "node": ctx.node,
        "config": {"path": str(path), "checksum": cfg.checksum, "valid": cfg.valid,
                   "errors": [str(e) for e in cfg.errors]},
        "placement": {"active_node": p.active_node, "epoch": p.epoch} if p is not None else None,
        "instances": [{"node": i.node, "state": i.state, "frozen": bool(i.frozen),
                       "updated_at": iso(from_utc_naive(i.updated_at), tz)} for i in inst],
        "resources": resources, "pending_confirmations": pending, "compliance": compliance,
        "outbox": {"pending": unsent, "last_error": last_error}, "warnings": warnings,
    }


def render_status(doc: dict) -> str:
    """A readable text form of the status document."""
    lines = [f"service:   {doc['service']} ({doc['topology']}), seen from {doc['node']}"]
    cfg = doc["config"]
    lines.append(f"config:    {cfg['path']} {'valid' if cfg['valid'] else 'INVALID'} "
                 f"(checksum {cfg['checksum'][:12]})")
    lines.extend(f"  {e}" for e in cfg["errors"])
    lines.extend(f"warning:   {w}" for w in doc["warnings"])
    p = doc["placement"]
    lines.append(f"placement: {p['active_node'] or '-'} (epoch {p['epoch']})" if p else "placement: -")
    by_node: dict[str, list[dict]] = {}
    for r in doc["resources"]:
        by_node.setdefault(r["node"], []).append(r)
    states = {i["node"]: i for i in doc["instances"]}
    for node, items in by_node.items():
        inst = states.get(node)
        head = f"{inst['state']}{' frozen' if inst['frozen'] else ''}" if inst else "undef"
        lines.append(f"node {node}: instance {head}")
        for r in items:
            last = r["last_run"]
            extra = f"  last run {last['id']} {last['state']}" + (f" ({last['reason']})" if last["reason"] else "") \
                if last else ""
            lines.append(f"  {r['rid']:<16} {r['status']:<8}{extra}")
    for c in doc["pending_confirmations"]:
        lines.append(f"pending confirmation: run {c['run_id']} {c['rid']} on {c['node']} until {c['expires_at']}")
    for c in doc["compliance"]:
        lines.append(f"compliance: {c['module']} {c['action']} {c['status']} at {c['at']}")
    o = doc["outbox"]
    lines.append(f"outbox:    {o['pending']} pending" + (f", last error: {o['last_error']}" if o["last_error"] else ""))
    return "\n".join(lines)

