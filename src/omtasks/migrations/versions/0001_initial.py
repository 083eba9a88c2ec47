"""Initial schema: the tables, indexes and views of SPEC 11.

Revision ID: 0001
Revises:
Create Date: 2026-11-27

The tables are spelled out here rather than taken from omtasks.db.schema, so
this revision stays what it was when later ones change the live metadata.
Views differ per dialect only in their date arithmetic; their columns match.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SLOT_INDEX_WHERE = "state NOT IN ('skipped', 'cancelled')"

RUN_COLUMNS = (
    "id, service, action, rid, scope, node, trigger, state, reason, exit_code, slot_key, scheduled_for, "
    "created_at, started_at, ended_at, requested_by, run_as, command, pid, proc_start, boot_id, "
    "placement_epoch, output_tail, heartbeat_at"
)
CONFIRMATION_COLUMNS = (
    "id, run_id, service, rid, node, requested_at, expires_at, state, decided_at, decided_by"
)

# Seconds between two naive-UTC columns, per dialect.
_SECONDS = {
    "sqlite": "ROUND((julianday({b}) - julianday({a})) * 86400.0, 3)",
    "postgresql": "CAST(EXTRACT(EPOCH FROM ({b} - {a})) AS DOUBLE PRECISION)",
}
_NOW_UTC = {
    "sqlite": "'now'",
    "postgresql": "(now() AT TIME ZONE 'UTC')",
}


def _views(dialect: str) -> list[tuple[str, str]]:
    secs = _SECONDS[dialect]
    if dialect == "sqlite":
        left = f"CAST(ROUND({secs.format(a=_NOW_UTC[dialect], b='expires_at')}) AS INTEGER)"
    else:
        left = f"CAST(ROUND(EXTRACT(EPOCH FROM (expires_at - {_NOW_UTC[dialect]}))) AS INTEGER)"
    return [
        (
            "v_runs",
            f"SELECT {RUN_COLUMNS}, "
            f"{secs.format(a='started_at', b='ended_at')} AS duration_s, "
            f"{secs.format(a='scheduled_for', b='started_at')} AS lateness_s "
            "FROM runs",
        ),
        (
            "v_last_runs",
            f"SELECT {RUN_COLUMNS}, duration_s, lateness_s FROM ("
            "SELECT v_runs.*, ROW_NUMBER() OVER "
            "(PARTITION BY service, action, rid, node ORDER BY id DESC) AS latest "
            "FROM v_runs WHERE state IN ('done', 'failed', 'skipped', 'cancelled')"
            ") AS terminal_runs WHERE latest = 1",
        ),
        (
            "v_pending_confirmations",
            f"SELECT {CONFIRMATION_COLUMNS}, {left} AS seconds_left "
            "FROM confirmations WHERE state = 'pending'",
        ),
        (
            "v_schedule",
            "SELECT e.service, e.node, e.action, e.rid, e.config_parameter, e.definition, e.dialect, "
            "e.scope, e.next_run_at, e.verdict, e.reason, e.evaluated_at, e.created_at, "
            "l.last_attempt_at, l.last_success_at "
            "FROM schedule_entries e LEFT JOIN last_runs l "
            "ON l.service = e.service AND l.action = e.action AND l.rid = e.rid AND l.scope = e.scope",
        ),
        (
            "v_task_stats",
            "SELECT service, rid, COUNT(*) AS runs, "
            "SUM(CASE WHEN state = 'done' THEN 1 ELSE 0 END) AS done, "
            "SUM(CASE WHEN state = 'failed' THEN 1 ELSE 0 END) AS failed, "
            "SUM(CASE WHEN state = 'skipped' THEN 1 ELSE 0 END) AS skipped, "
            "AVG(duration_s) AS avg_duration_s, MAX(duration_s) AS max_duration_s, "
            "MAX(CASE WHEN state = 'done' THEN ended_at END) AS last_success_at "
            "FROM v_runs WHERE rid IS NOT NULL GROUP BY service, rid",
        ),
    ]


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("service", sa.String, nullable=False),
        sa.Column("action", sa.String, nullable=False),
        sa.Column("rid", sa.String),
        sa.Column("scope", sa.String, nullable=False),
        sa.Column("node", sa.String, nullable=False),
        sa.Column("trigger", sa.String, nullable=False),
        sa.Column("state", sa.String, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("exit_code", sa.Integer),
        sa.Column("slot_key", sa.String),
        sa.Column("scheduled_for", sa.DateTime),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("started_at", sa.DateTime),
        sa.Column("ended_at", sa.DateTime),
        sa.Column("requested_by", sa.String),
        sa.Column("run_as", sa.String),
        sa.Column("command", sa.Text),
        sa.Column("pid", sa.Integer),
        sa.Column("proc_start", sa.BigInteger),
        sa.Column("boot_id", sa.String),
        sa.Column("placement_epoch", sa.Integer),
        sa.Column("output_tail", sa.Text),
        sa.Column("heartbeat_at", sa.DateTime),
    )
    op.create_index("ix_runs_service_rid_started", "runs", ["service", "rid", "started_at"])
    op.create_index("ix_runs_node_state", "runs", ["node", "state"])
    op.create_index("ix_runs_state", "runs", ["state"])
    op.create_index("ix_runs_entry", "runs", ["service", "action", "rid", "scope", "state"])
    op.create_index(
        "ux_runs_slot_key",
        "runs",
        ["slot_key"],
        unique=True,
        sqlite_where=sa.text(SLOT_INDEX_WHERE),
        postgresql_where=sa.text(SLOT_INDEX_WHERE),
    )

    op.create_table(
        "run_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("from_state", sa.String),
        sa.Column("to_state", sa.String, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("actor", sa.String),
    )
    op.create_index("ix_run_events_run_id", "run_events", ["run_id"])

    op.create_table(
        "last_runs",
        sa.Column("service", sa.String, primary_key=True),
        sa.Column("action", sa.String, primary_key=True),
        sa.Column("rid", sa.String, primary_key=True),
        sa.Column("scope", sa.String, primary_key=True),
        sa.Column("last_attempt_at", sa.DateTime),
        sa.Column("last_success_at", sa.DateTime),
        sa.Column("last_run_id", sa.Integer),
    )

    op.create_table(
        "confirmations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("service", sa.String, nullable=False),
        sa.Column("rid", sa.String),
        sa.Column("node", sa.String, nullable=False),
        sa.Column("requested_at", sa.DateTime, nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=False),
        sa.Column("state", sa.String, nullable=False),
        sa.Column("decided_at", sa.DateTime),
        sa.Column("decided_by", sa.String),
    )
    op.create_index("ux_confirmations_run_id", "confirmations", ["run_id"], unique=True)
    op.create_index("ix_confirmations_state", "confirmations", ["state"])

    op.create_table(
        "schedule_entries",
        sa.Column("service", sa.String, primary_key=True),
        sa.Column("node", sa.String, primary_key=True),
        sa.Column("action", sa.String, primary_key=True),
        sa.Column("rid", sa.String, primary_key=True),
        sa.Column("config_parameter", sa.String),
        sa.Column("definition", sa.Text),
        sa.Column("dialect", sa.String),
        sa.Column("scope", sa.String),
        sa.Column("next_run_at", sa.DateTime),
        sa.Column("plan_key", sa.Text),
        sa.Column("plan_marker", sa.DateTime),
        sa.Column("verdict", sa.String),
        sa.Column("reason", sa.Text),
        sa.Column("evaluated_at", sa.DateTime),
        sa.Column("created_at", sa.DateTime),
    )

    op.create_table(
        "schedule_decisions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("service", sa.String, nullable=False),
        sa.Column("node", sa.String, nullable=False),
        sa.Column("action", sa.String, nullable=False),
        sa.Column("rid", sa.String, nullable=False),
        sa.Column("scope", sa.String, nullable=False),
        sa.Column("slot", sa.DateTime),
        sa.Column("verdict", sa.String, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("run_id", sa.Integer),
    )
    op.create_index("ix_schedule_decisions_service_at", "schedule_decisions", ["service", "at"])
    op.create_index(
        "ux_schedule_decisions_slot",
        "schedule_decisions",
        ["service", "action", "rid", "scope", "slot"],
        unique=True,
    )

    op.create_table(
        "compliance_results",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("service", sa.String, nullable=False),
        sa.Column("node", sa.String, nullable=False),
        sa.Column("module", sa.String, nullable=False),
        sa.Column("action", sa.String, nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("output_tail", sa.Text),
        sa.Column("at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_compliance_results_service_node", "compliance_results", ["service", "node", "at"])

    op.create_table(
        "services",
        sa.Column("name", sa.String, primary_key=True),
        sa.Column("node", sa.String, primary_key=True),
        sa.Column("path", sa.String),
        sa.Column("checksum", sa.String),
        sa.Column("mtime", sa.Float),
        sa.Column("size", sa.BigInteger),
        sa.Column("valid", sa.Boolean),
        sa.Column("errors", sa.Text),
        sa.Column("topology", sa.String),
        sa.Column("loaded_at", sa.DateTime),
    )

    op.create_table(
        "placements",
        sa.Column("service", sa.String, primary_key=True),
        sa.Column("active_node", sa.String),
        sa.Column("epoch", sa.Integer, nullable=False),
        sa.Column("changed_at", sa.DateTime),
        sa.Column("changed_by", sa.String),
    )

    op.create_table(
        "instances",
        sa.Column("service", sa.String, primary_key=True),
        sa.Column("node", sa.String, primary_key=True),
        sa.Column("state", sa.String, nullable=False),
        sa.Column("frozen", sa.Boolean, nullable=False),
        sa.Column("updated_at", sa.DateTime),
    )

    op.create_table(
        "resource_status",
        sa.Column("service", sa.String, primary_key=True),
        sa.Column("node", sa.String, primary_key=True),
        sa.Column("rid", sa.String, primary_key=True),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("detail", sa.Text),
        sa.Column("updated_at", sa.DateTime),
    )

    op.create_table(
        "nodes",
        sa.Column("name", sa.String, primary_key=True),
        sa.Column("last_seen_at", sa.DateTime),
        sa.Column("boot_time", sa.DateTime),
        sa.Column("boot_id", sa.String),
        sa.Column("version", sa.String),
    )

    op.create_table(
        "cluster",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("tz", sa.String, nullable=False),
    )

    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("uuid", sa.String, nullable=False),
        sa.Column("node", sa.String, nullable=False),
        sa.Column("kind", sa.String, nullable=False),
        sa.Column("service", sa.String),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.DateTime),
        sa.Column("last_error", sa.Text),
        sa.Column("sent_at", sa.DateTime),
    )
    op.create_index("ux_outbox_uuid", "outbox", ["uuid"], unique=True)
    op.create_index("ix_outbox_pending", "outbox", ["node", "sent_at", "next_attempt_at"])

    for name, select in _views(op.get_bind().dialect.name):
        op.execute(f"CREATE VIEW {name} AS {select}")


_TABLES = (
    "outbox",
    "cluster",
    "nodes",
    "resource_status",
    "instances",
    "placements",
    "services",
    "compliance_results",
    "schedule_decisions",
    "schedule_entries",
    "confirmations",
    "last_runs",
    "run_events",
    "runs",
)


def downgrade() -> None:
    for name, _select in reversed(_views(op.get_bind().dialect.name)):
        op.execute(f"DROP VIEW {name}")
    for name in _TABLES:
        op.drop_table(name)
