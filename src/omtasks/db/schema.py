"""SQLAlchemy Core tables of SPEC 11 (the public SQL interface).

Core, not the ORM: the tick must start and finish fast.  Instants are naive
UTC `DateTime`.  Conventions shared by `last_runs`, `schedule_entries` and
`schedule_decisions`: `rid` is '' for service-level actions and `scope` is ''
for a cluster-scoped entry, else the node name; `runs.rid` is NULL for
service-level actions and `runs.scope` follows the same scope convention.

Migrations never import this module: revision 0001 spells its tables out and a
test checks that both agree.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData()

# Rows in these states give their slot back (SPEC 8.4): the unique index skips them.
SLOT_INDEX_WHERE = "state NOT IN ('skipped', 'cancelled')"

runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("service", String, nullable=False),
    Column("action", String, nullable=False),
    Column("rid", String),
    Column("scope", String, nullable=False),
    Column("node", String, nullable=False),
    Column("trigger", String, nullable=False),
    Column("state", String, nullable=False),
    Column("reason", Text),
    Column("exit_code", Integer),
    Column("slot_key", String),
    Column("scheduled_for", DateTime),
    Column("created_at", DateTime, nullable=False),
    Column("started_at", DateTime),
    Column("ended_at", DateTime),
    Column("requested_by", String),
    Column("run_as", String),
    Column("command", Text),
    Column("pid", Integer),
    Column("proc_start", BigInteger),
    Column("boot_id", String),
    Column("placement_epoch", Integer),
    Column("output_tail", Text),
    Column("heartbeat_at", DateTime),
    Index("ix_runs_service_rid_started", "service", "rid", "started_at"),
    Index("ix_runs_node_state", "node", "state"),
    Index("ix_runs_state", "state"),
    Index("ix_runs_entry", "service", "action", "rid", "scope", "state"),
    Index(
        "ux_runs_slot_key",
        "slot_key",
        unique=True,
        sqlite_where=text(SLOT_INDEX_WHERE),
        postgresql_where=text(SLOT_INDEX_WHERE),
    ),
)

run_events = Table(
    "run_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("at", DateTime, nullable=False),
    Column("from_state", String),
    Column("to_state", String, nullable=False),
    Column("reason", Text),
    Column("actor", String),
    Index("ix_run_events_run_id", "run_id"),
)

last_runs = Table(
    "last_runs",
    metadata,
    Column("service", String, primary_key=True),
    Column("action", String, primary_key=True),
    Column("rid", String, primary_key=True),
    Column("scope", String, primary_key=True),
    Column("last_attempt_at", DateTime),
    Column("last_success_at", DateTime),
    Column("last_run_id", Integer),
)

confirmations = Table(
    "confirmations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("service", String, nullable=False),
    Column("rid", String),
    Column("node", String, nullable=False),
    Column("requested_at", DateTime, nullable=False),
    Column("expires_at", DateTime, nullable=False),
    Column("state", String, nullable=False),
    Column("decided_at", DateTime),
    Column("decided_by", String),
    Index("ux_confirmations_run_id", "run_id", unique=True),
    Index("ix_confirmations_state", "state"),
)

schedule_entries = Table(
    "schedule_entries",
    metadata,
    Column("service", String, primary_key=True),
    Column("node", String, primary_key=True),
    Column("action", String, primary_key=True),
    Column("rid", String, primary_key=True),
    Column("config_parameter", String),
    Column("definition", Text),
    Column("dialect", String),
    Column("scope", String),
    Column("next_run_at", DateTime),
    # what the stored verdict was computed from: `<config checksum>|<boot time>` and the
    # marker; the tick re-plans an entry only when one of them changes (SPEC 14)
    Column("plan_key", Text),
    Column("plan_marker", DateTime),
    Column("verdict", String),
    Column("reason", Text),
    Column("evaluated_at", DateTime),
    Column("created_at", DateTime),
)

schedule_decisions = Table(
    "schedule_decisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime, nullable=False),
    Column("service", String, nullable=False),
    Column("node", String, nullable=False),
    Column("action", String, nullable=False),
    Column("rid", String, nullable=False),
    Column("scope", String, nullable=False),
    Column("slot", DateTime),
    Column("verdict", String, nullable=False),
    Column("reason", Text),
    Column("run_id", Integer),
    Index("ix_schedule_decisions_service_at", "service", "at"),
    Index("ux_schedule_decisions_slot", "service", "action", "rid", "scope", "slot", unique=True),
)

compliance_results = Table(
    "compliance_results",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("service", String, nullable=False),
    Column("node", String, nullable=False),
    Column("module", String, nullable=False),
    Column("action", String, nullable=False),
    Column("status", String, nullable=False),
    Column("output_tail", Text),
    Column("at", DateTime, nullable=False),
    Index("ix_compliance_results_service_node", "service", "node", "at"),
)

services = Table(
    "services",
    metadata,
    Column("name", String, primary_key=True),
    Column("node", String, primary_key=True),
    Column("path", String),
    Column("checksum", String),
    Column("mtime", Float),
    Column("size", BigInteger),
    Column("valid", Boolean),
    Column("errors", Text),
    Column("topology", String),
    Column("loaded_at", DateTime),
)

placements = Table(
    "placements",
    metadata,
    Column("service", String, primary_key=True),
    Column("active_node", String),
    Column("epoch", Integer, nullable=False),
    Column("changed_at", DateTime),
    Column("changed_by", String),
)

instances = Table(
    "instances",
    metadata,
    Column("service", String, primary_key=True),
    Column("node", String, primary_key=True),
    Column("state", String, nullable=False),
    Column("frozen", Boolean, nullable=False),
    Column("updated_at", DateTime),
)

resource_status = Table(
    "resource_status",
    metadata,
    Column("service", String, primary_key=True),
    Column("node", String, primary_key=True),
    Column("rid", String, primary_key=True),
    Column("status", String, nullable=False),
    Column("detail", Text),
    Column("updated_at", DateTime),
)

nodes = Table(
    "nodes",
    metadata,
    Column("name", String, primary_key=True),
    Column("last_seen_at", DateTime),
    Column("boot_time", DateTime),
    Column("boot_id", String),
    Column("version", String),
)

# One row (id = 1): the zone every node of the cluster must run in (SPEC 2).
cluster = Table(
    "cluster",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("tz", String, nullable=False),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("uuid", String, nullable=False),
    Column("node", String, nullable=False),
    Column("kind", String, nullable=False),
    Column("service", String),
    Column("payload", Text, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", DateTime),
    Column("last_error", Text),
    Column("sent_at", DateTime),
    Index("ux_outbox_uuid", "uuid", unique=True),
    Index("ix_outbox_pending", "node", "sent_at", "next_attempt_at"),
)
