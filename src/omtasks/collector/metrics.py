"""The collector's `GET /metrics` families, in the Prometheus text format by `prometheus_client`.

Built from the tables ingest keeps current (never from the push history), as
one snapshot per build: `app.MetricsCache` rebuilds it in the background.
Instants are exported as Unix timestamps (Prometheus' convention: `time() - x`
is an age that never goes stale), plus each node's push age at build time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any


def _ts(dt: datetime | None) -> float | None:
    return dt.replace(tzinfo=UTC).timestamp() if dt is not None else None


def render(nodes: list[Any], tasks: list[Any]) -> bytes:
    """The exposition text of `nodes` (collector_node_state rows) and `tasks` (collector_tasks rows)."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.registry import Collector

    class Snapshot(Collector):
        def collect(self) -> Iterator[Any]:
            now = time.time()
            last = GaugeMetricFamily("om_collector_node_last_push_timestamp_seconds",
                                     "When the collector last stored a push of the node", labels=["node"])
            age = GaugeMetricFamily("om_collector_node_last_push_age_seconds",
                                    "Seconds since the node's last stored push, when the metrics were built",
                                    labels=["node"])
            stored = GaugeMetricFamily("om_collector_node_stored_bytes",
                                       "Payload bytes the collector stores for the node (its quota applies)",
                                       labels=["node"])
            for n in nodes:
                at = _ts(n.last_push_at)
                last.add_metric([n.node], at)
                age.add_metric([n.node], max(now - at, 0.0))
                stored.add_metric([n.node], n.stored_bytes)
            yield from (last, age, stored)
            labels = ["node", "service", "rid"]
            code = GaugeMetricFamily("om_task_last_exit_code", "Exit code of the task's last finished run",
                                     labels=labels)
            end = GaugeMetricFamily("om_task_last_end_timestamp_seconds", "When the task's last run ended",
                                    labels=labels)
            success = GaugeMetricFamily("om_task_last_success_timestamp_seconds",
                                        "When the task's last successful run ended", labels=labels)
            runs = GaugeMetricFamily("om_task_runs", "Runs of the task the node keeps, by state",
                                     labels=[*labels, "state"])
            for t in tasks:
                key = [t.node, t.service, t.rid]
                if t.exit_code is not None:
                    code.add_metric(key, t.exit_code)
                if t.ended_at is not None:
                    end.add_metric(key, _ts(t.ended_at))
                if t.last_success_at is not None:
                    success.add_metric(key, _ts(t.last_success_at))
                for state, count in json.loads(t.runs).items():
                    runs.add_metric([*key, state], count)
            yield from (code, end, success, runs)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Snapshot())
    return generate_latest(registry)
