"""Metric families in the Prometheus text format, shared by `om node print metrics` and the collector.

The node prints its own figures for node_exporter's textfile collector; the
collector's `GET /metrics` builds the same families from its stored pushes.
Both describe their figures as `TaskFacts` (and, on the collector, the age
of each node's last push), then call `render`:

    from omtasks.metrics import TaskFacts, render
    text = render([TaskFacts(node="n1", service="pg", rid="task#0", last_exit_code=0,
                             last_end=<aware datetime>, last_success=<aware datetime>,
                             runs_by_state={"done": 12, "failed": 1})],
                  push_ages={"n1": 42.0})

Families (gauges; run counts are of the stored history, which retention prunes,
so they are not counters):
  om_task_last_exit_code{node,service,rid}
  om_task_last_end_timestamp_seconds{node,service,rid}
  om_task_last_success_timestamp_seconds{node,service,rid}
  om_task_runs{node,service,rid,state}
  om_node_last_push_age_seconds{node}             (collector; push_ages)
  om_node_last_tick_timestamp_seconds{node}       (node; node_gauges)
  om_node_outbox_pending{node}                    (node; node_gauges)

`rid` is the task's rid, or the built-in action (`status`, `push_config`, ...).
prometheus_client is imported only when metrics are rendered.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

TASK_LABELS = ["node", "service", "rid"]


@dataclass
class TaskFacts:
    """One task (or built-in action) of a service on a node: its last run and its run counts."""

    node: str
    service: str
    rid: str
    last_exit_code: int | None = None
    last_end: datetime | None = None  # aware
    last_success: datetime | None = None  # aware
    runs_by_state: dict[str, int] = field(default_factory=dict)


def render(facts: Iterable[TaskFacts], *, push_ages: Mapping[str, float] | None = None,
           node_gauges: Mapping[str, Mapping[str, float]] | None = None) -> str:
    """The text exposition of `facts`, plus push ages per node and node gauges (`name -> {node: value}`)."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import GaugeMetricFamily

    facts = list(facts)
    code = GaugeMetricFamily("om_task_last_exit_code", "Exit code of the task's last finished run.",
                             labels=TASK_LABELS)
    end = GaugeMetricFamily("om_task_last_end_timestamp_seconds", "End time of the task's last finished run.",
                            labels=TASK_LABELS)
    success = GaugeMetricFamily("om_task_last_success_timestamp_seconds",
                                "End time of the task's last successful run.", labels=TASK_LABELS)
    count = GaugeMetricFamily("om_task_runs", "Stored runs of the task by state (retention prunes them).",
                              labels=[*TASK_LABELS, "state"])
    for f in facts:
        labels = [f.node, f.service, f.rid]
        if f.last_exit_code is not None:
            code.add_metric(labels, f.last_exit_code)
        if f.last_end is not None:
            end.add_metric(labels, f.last_end.timestamp())
        if f.last_success is not None:
            success.add_metric(labels, f.last_success.timestamp())
        for state, n in sorted(f.runs_by_state.items()):
            count.add_metric([*labels, state], n)
    families: list[Any] = [code, end, success, count]
    if push_ages is not None:
        age = GaugeMetricFamily("om_node_last_push_age_seconds", "Seconds since the node's last push.",
                                labels=["node"])
        for node, seconds in sorted(push_ages.items()):
            age.add_metric([node], seconds)
        families.append(age)
    helps = {"om_node_last_tick_timestamp_seconds": "Evaluation instant of the node's last runner tick.",
             "om_node_outbox_pending": "Unsent outbox rows (pushes and notifications) of the node."}
    for name, values in (node_gauges or {}).items():
        gauge = GaugeMetricFamily(name, helps.get(name, name), labels=["node"])
        for node, value in sorted(values.items()):
            gauge.add_metric([node], value)
        families.append(gauge)

    class _Families:
        def collect(self) -> Iterable[Any]:
            return families

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families())
    return generate_latest(registry).decode("utf-8")


def node_facts(conn: Any, node: str) -> list[TaskFacts]:
    """This node's TaskFacts from its database: one per (service, rid or action) that has runs here."""
    from sqlalchemy import func, select

    from omtasks import statemachine as sm
    from omtasks.db.schema import runs
    from omtasks.timeutil import from_utc_naive

    c = runs.c
    key = func.coalesce(c.rid, c.action)
    out: dict[tuple[str, str], TaskFacts] = {}

    def facts(service: str, rid: str) -> TaskFacts:
        return out.setdefault((service, rid), TaskFacts(node=node, service=service, rid=rid))

    for r in conn.execute(select(c.service, key.label("rid"), c.state, func.count().label("n"))
                          .where(c.node == node).group_by(c.service, key, c.state)):
        facts(r.service, r.rid).runs_by_state[r.state] = r.n
    finished = c.state.in_((sm.DONE, sm.FAILED))
    last_ids = select(func.max(c.id)).where(c.node == node, finished).group_by(c.service, key)
    for r in conn.execute(select(c.service, key.label("rid"), c.exit_code, c.ended_at).where(c.id.in_(last_ids))):
        f = facts(r.service, r.rid)
        f.last_exit_code = r.exit_code
        f.last_end = from_utc_naive(r.ended_at)
    for r in conn.execute(select(c.service, key.label("rid"), func.max(c.ended_at).label("at"))
                          .where(c.node == node, c.state == sm.DONE).group_by(c.service, key)):
        facts(r.service, r.rid).last_success = from_utc_naive(r.at)
    return [out[k] for k in sorted(out)]


def node_metrics_text(ctx: Any) -> str:
    """`om node print metrics`: this node's task families plus its last tick and outbox backlog."""
    from omtasks.db.connect import reading
    from omtasks.runner.liveness import heartbeat
    from omtasks.runner.outbox import pending_counts

    with reading(ctx.engine) as conn:
        facts = node_facts(conn, ctx.node)
        last = heartbeat(conn, ctx.node)
        pending, _ = pending_counts(conn, ctx.node)
    gauges: dict[str, dict[str, float]] = {"om_node_outbox_pending": {ctx.node: pending}}
    if last is not None:
        gauges["om_node_last_tick_timestamp_seconds"] = {ctx.node: last.timestamp()}
    return render(facts, node_gauges=gauges)
