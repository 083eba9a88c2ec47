"""Migrations against the live metadata, views and indexes of SPEC 11, on both databases."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from omtasks.db import HEAD_REVISION, migrate, open_engine, schema

RUN_COLUMNS = (
    "id service action rid scope node trigger state reason exit_code slot_key scheduled_for "
    "created_at started_at ended_at requested_by run_as command pid proc_start boot_id "
    "placement_epoch output_tail heartbeat_at"
).split()
VIEW_COLUMNS = {
    "v_runs": [*RUN_COLUMNS, "duration_s", "lateness_s"],
    "v_last_runs": [*RUN_COLUMNS, "duration_s", "lateness_s"],
    "v_pending_confirmations": (
        "id run_id service rid node requested_at expires_at state decided_at decided_by seconds_left"
    ).split(),
    "v_schedule": (
        "service node action rid config_parameter definition dialect scope next_run_at verdict "
        "reason evaluated_at created_at last_attempt_at last_success_at"
    ).split(),
    "v_task_stats": "service rid runs done failed skipped avg_duration_s max_duration_s last_success_at".split(),
}
SPEC_COLUMNS = {
    "runs": set(RUN_COLUMNS),
    "run_events": set("id run_id at from_state to_state reason actor".split()),
    "last_runs": set("service action rid scope last_attempt_at last_success_at last_run_id".split()),
    "confirmations": set(VIEW_COLUMNS["v_pending_confirmations"]) - {"seconds_left"},
    # plan_key is the tick's bookkeeping (what the verdict was computed from), not part of the view
    "schedule_entries": set(VIEW_COLUMNS["v_schedule"]) - {"last_attempt_at", "last_success_at"} | {"plan_key", "plan_marker"},
    "schedule_decisions": set("id at service node action rid scope slot verdict reason run_id".split()),
    "compliance_results": set("id service node module action status output_tail at".split()),
    "services": set("name node path checksum mtime size valid errors topology loaded_at".split()),
    "placements": set("service active_node epoch changed_at changed_by".split()),
    "instances": set("service node state frozen updated_at".split()),
    "resource_status": set("service node rid status detail updated_at".split()),
    "nodes": set("name last_seen_at boot_time boot_id version".split()),
    "cluster": set("id tz".split()),
    "outbox": set(
        "id uuid node kind service payload created_at attempts next_attempt_at last_error sent_at".split()
    ),
}


def test_head_constant_matches_the_scripts() -> None:
    assert migrate.head() == HEAD_REVISION


def test_metadata_has_the_spec_columns() -> None:
    assert {name: {c.name for c in t.columns} for name, t in schema.metadata.tables.items()} == SPEC_COLUMNS


def test_migrated_schema_matches_metadata(db_url: str, om_root: Path) -> None:
    engine = open_engine(db_url, root=om_root)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), schema.metadata)
        assert diff == []
    finally:
        engine.dispose()


def test_views_have_the_same_columns_everywhere(db_url: str, om_root: Path) -> None:
    engine = open_engine(db_url, root=om_root)
    try:
        insp = inspect(engine)
        assert set(insp.get_view_names()) == set(VIEW_COLUMNS)
        with engine.connect() as conn:
            for view, columns in VIEW_COLUMNS.items():
                assert list(conn.execute(text(f"SELECT * FROM {view} WHERE 1 = 0")).keys()) == columns
    finally:
        engine.dispose()


def test_indexes(db_url: str, om_root: Path) -> None:
    engine = open_engine(db_url, root=om_root)
    try:
        insp = inspect(engine)
        runs_ix = {ix["name"]: ix for ix in insp.get_indexes("runs")}
        assert runs_ix["ix_runs_service_rid_started"]["column_names"] == ["service", "rid", "started_at"]
        assert runs_ix["ix_runs_node_state"]["column_names"] == ["node", "state"]
        assert runs_ix["ix_runs_state"]["column_names"] == ["state"]
        slot = runs_ix["ux_runs_slot_key"]
        assert slot["unique"] and slot["column_names"] == ["slot_key"]
        where = slot["dialect_options"].get(f"{engine.dialect.name}_where")
        assert "skipped" in str(where) and "cancelled" in str(where)
        assert [ix["column_names"] for ix in insp.get_indexes("run_events")] == [["run_id"]]
        decisions = {ix["name"]: ix for ix in insp.get_indexes("schedule_decisions")}
        assert decisions["ix_schedule_decisions_service_at"]["column_names"] == ["service", "at"]
        unique = decisions["ux_schedule_decisions_slot"]
        assert unique["unique"]
        assert unique["column_names"] == ["service", "action", "rid", "scope", "slot"]
    finally:
        engine.dispose()


@pytest.mark.parametrize("table", ["runs", "schedule_decisions"])
def test_downgrade_then_upgrade(db_url: str, om_root: Path, table: str) -> None:
    engine = open_engine(db_url, root=om_root)
    try:
        with engine.begin() as conn:
            command.downgrade(migrate.alembic_config(conn), "base")
        assert table not in inspect(engine).get_table_names()
        migrate.upgrade_to_head(engine)
        assert table in inspect(engine).get_table_names()
    finally:
        engine.dispose()
