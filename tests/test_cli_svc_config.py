"""`om SVC create|delete|set|unset|validate config|enable|disable` and `om ls`, through the real binary (SPEC 10, 12)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from omtasks.cli.output import table
from omtasks.config import load_service
from omtasks.db import open_engine
from omtasks.db.runs import create_run, transition
from omtasks.db.schema import (
    confirmations,
    instances,
    placements,
    run_events,
    runs,
    schedule_entries,
    services,
)

T0 = datetime(2026, 11, 28, 2, 0, tzinfo=UTC)
FLEX = "[DEFAULT]\ntopology = flex\n\n[task#0]\ncommand = true\n"
NOT_FOUND = "om: service 'nope' does not exist\n"

Om = Callable[..., subprocess.CompletedProcess]


@pytest.fixture
def om(om_root: Path) -> Om:
    """Run the real `om` as node n1 in UTC on this test's OM_ROOT."""
    env = {k: v for k, v in os.environ.items() if k not in ("OM_DB_URL", "OM_NOW")}
    env.update(OM_ROOT=str(om_root), OM_NODENAME="n1", TZ="UTC")

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "omtasks", *args],
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )

    return run


def conf(root: Path, name: str) -> Path:
    return root / "etc" / f"{name}.conf"


def write_conf(root: Path, name: str, text: str | bytes) -> Path:
    path = conf(root, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def lines(stream: str) -> list[str]:
    return stream.splitlines()


# -- create ----------------------------------------------------------------------------------------------------


def test_create_from_kw_writes_a_private_file(om: Om, om_root: Path) -> None:
    r = om("pgdb", "create", "--kw", "DEFAULT.topology=flex", "--kw", "task#0.command=echo a; echo b")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    path = conf(om_root, "pgdb")
    assert path.read_text() == "[DEFAULT]\ntopology = flex\n\n[task#0]\ncommand = echo a; echo b\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o750
    assert stat.S_IMODE(om_root.stat().st_mode) == 0o750


def test_create_from_file_keeps_its_bytes_and_applies_kw(om: Om, om_root: Path, tmp_path: Path) -> None:
    source = tmp_path / "src.conf"
    source.write_bytes(b"; imported\r\n[DEFAULT]\r\ntopology = flex\r\n\r\n[task#0]\r\ncommand=true\r\n")
    r = om("pgdb", "create", "--from", str(source), "--kw", "task#0.schedule=02:00")
    assert (r.returncode, r.stderr) == (0, "")
    assert conf(om_root, "pgdb").read_bytes() == source.read_bytes() + b"schedule = 02:00\r\n"


def test_create_from_stdin(om: Om, om_root: Path) -> None:
    r = om("pgdb", "create", "--from", "-", stdin=FLEX)
    assert r.returncode == 0, r.stderr
    assert conf(om_root, "pgdb").read_text() == FLEX


def test_create_with_errors_writes_nothing(om: Om, om_root: Path) -> None:
    r = om("pgdb", "create", "--kw", "DEFAULT.topology=flex", "--kw", "task#0.max_parallel=0")
    path = conf(om_root, "pgdb")
    assert r.returncode == 1
    assert lines(r.stderr) == [
        f"error: {path}:4: [task#0] command: required keyword missing",
        f"error: {path}:5: [task#0] max_parallel: '0' must be >= 1",
        "nothing written",
    ]
    assert r.stdout == ""
    assert not path.exists()


def test_create_prints_warnings_and_writes(om: Om, om_root: Path) -> None:
    r = om("pgdb", "create", "--kw", "DEFAULT.topology=flex", "--kw", "fs#1.dev=/dev/sda")
    path = conf(om_root, "pgdb")
    assert r.returncode == 0
    assert lines(r.stderr) == [
        f"warning: {path}:4: [fs#1] section ignored: resource type 'fs' is not supported"
    ]
    assert path.is_file()


def test_create_existing_service_is_refused(om: Om, om_root: Path) -> None:
    path = write_conf(om_root, "pgdb", FLEX)
    r = om("pgdb", "create", "--kw", "task#1.command=true")
    assert (r.returncode, r.stderr) == (1, "om: service 'pgdb' already exists\n")
    assert path.read_text() == FLEX


@pytest.mark.parametrize("name", ["PgDB", "pgdb-", "a_b"])
def test_create_bad_name(om: Om, om_root: Path, name: str) -> None:
    r = om(name, "create")
    assert r.returncode == 1
    assert r.stderr.startswith(f"om: invalid service name '{name}': must match ")
    assert not (om_root / "etc").exists()


# -- set / unset -----------------------------------------------------------------------------------------------

STYLED = (
    "# pgdb: nightly backups\n"
    "[DEFAULT]\n"
    "topology   =   flex\n"
    "\n"
    "[task#backup]\n"
    "command = pg_dump pgdb | gzip > /backup/pgdb.gz; echo done # nightly\n"
    "environment = PGHOST=/run/postgresql\n"
    "    PGPORT=5433\n"
    "schedule=02:00\n"
    "\n"
    "; trailing comment\n"
    "[task#1]\n"
    "command = true\n"
)


def test_set_changes_one_line_and_keeps_the_rest_byte_for_byte(om: Om, om_root: Path) -> None:
    path = write_conf(om_root, "pgdb", STYLED)
    r = om("pgdb", "set", "--kw", "task#backup.schedule=03:00")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    before, after = STYLED.splitlines(keepends=True), path.read_text().splitlines(keepends=True)
    assert len(after) == len(before)
    changed = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
    assert changed == [8]
    assert after[8] == "schedule = 03:00\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_set_adds_keys_in_their_section(om: Om, om_root: Path) -> None:
    path = write_conf(om_root, "pgdb", STYLED)
    r = om("pgdb", "set", "--kw", "task#backup.timeout=1h", "--kw", "task#1.schedule@n1=@30m")
    assert r.returncode == 0, r.stderr
    expected = STYLED.replace("schedule=02:00\n", "schedule=02:00\ntimeout = 1h\n") + "schedule@n1 = @30m\n"
    assert path.read_text() == expected


def test_set_keeps_crlf_bytes(om: Om, om_root: Path) -> None:
    original = FLEX.replace("\n", "\r\n").encode()
    path = write_conf(om_root, "pgdb", original)
    assert om("pgdb", "set", "--kw", "task#0.command=false").returncode == 0
    assert path.read_bytes() == original.replace(b"command = true", b"command = false")


def test_set_refused_leaves_the_file_untouched(om: Om, om_root: Path) -> None:
    path = write_conf(om_root, "pgdb", STYLED)
    mtime = path.stat().st_mtime_ns
    r = om("pgdb", "set", "--kw", "task#backup.log=maybe", "--kw", "task#1.schedule=25:00")
    assert r.returncode == 1
    err = lines(r.stderr)
    assert err[-1] == "nothing written"
    assert f"error: {path}:10: [task#backup] log: 'maybe' is not a boolean" in err
    assert any(e.startswith(f"error: {path}:15: [task#1] schedule: invalid schedule '25:00'") for e in err)
    assert path.read_text() == STYLED
    assert path.stat().st_mtime_ns == mtime


def test_unset_removes_the_key_and_its_continuation_lines(om: Om, om_root: Path) -> None:
    path = write_conf(om_root, "pgdb", STYLED)
    r = om("pgdb", "unset", "--kw", "task#backup.environment", "--kw", "task#1.absent")
    assert (r.returncode, r.stderr) == (0, "")
    assert path.read_text() == STYLED.replace("environment = PGHOST=/run/postgresql\n    PGPORT=5433\n", "")


def test_unset_refused_when_the_result_is_invalid(om: Om, om_root: Path) -> None:
    path = write_conf(om_root, "pgdb", STYLED)
    r = om("pgdb", "unset", "--kw", "task#1.command")
    assert r.returncode == 1
    assert lines(r.stderr)[-1] == "nothing written"
    assert path.read_text() == STYLED


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("set", "--kw", "task#0.command"), "--kw expects SECTION.KEY=VALUE"),
        (("set", "--kw", "command=true"), "--kw expects SECTION.KEY=VALUE"),
        (("set", "--kw", "task#0.command=a", "--kw", ".x=1"), "--kw expects SECTION.KEY=VALUE"),
        (("unset", "--kw", "command"), "--kw expects SECTION.KEY"),
        (("unset", "--kw", "task#0.command=true"), "--kw expects SECTION.KEY"),
        (("create", "--kw", "topology=flex"), "--kw expects SECTION.KEY=VALUE"),
    ],
)
def test_kw_usage_errors(om: Om, om_root: Path, args: tuple[str, ...], message: str) -> None:
    path = write_conf(om_root, "pgdb", FLEX)
    name = "newsvc" if args[0] == "create" else "pgdb"
    r = om(name, *args)
    assert r.returncode == 2
    assert r.stderr.startswith(f"om: {message}")
    assert len(r.stderr.splitlines()) == 1  # one line (SPEC 12)
    assert path.read_text() == FLEX
    assert not conf(om_root, "newsvc").exists()


# -- validate config -------------------------------------------------------------------------------------------


def test_validate_config_lists_problems_sorted_then_counts(om: Om, om_root: Path) -> None:
    path = write_conf(
        om_root,
        "pgdb",
        "[DEFAULT]\ntopology = flex\n\n[task#0]\ncommand = true\nlog = maybe\nmax_parallel = 0\n\n"
        "[fs#1]\ndev = /dev/sda\n",
    )
    r = om("pgdb", "validate", "config")
    assert (r.returncode, r.stderr) == (1, "")
    assert lines(r.stdout) == [
        f"error: {path}:6: [task#0] log: 'maybe' is not a boolean",
        f"error: {path}:7: [task#0] max_parallel: '0' must be >= 1",
        f"warning: {path}:9: [fs#1] section ignored: resource type 'fs' is not supported",
        "2 error(s), 1 warning(s)",
    ]


def test_validate_config_clean_and_warnings_only_exit_0(om: Om, om_root: Path) -> None:
    write_conf(om_root, "pgdb", FLEX)
    r = om("pgdb", "validate", "config")
    assert (r.returncode, r.stdout, r.stderr) == (0, "0 error(s), 0 warning(s)\n", "")
    path = write_conf(om_root, "pgdb", FLEX + "\n[fs#1]\ndev = /dev/sda\n")
    r = om("pgdb", "validate", "config")
    assert r.returncode == 0
    assert lines(r.stdout) == [
        f"warning: {path}:7: [fs#1] section ignored: resource type 'fs' is not supported",
        "0 error(s), 1 warning(s)",
    ]


def test_validate_config_of_a_syntax_error(om: Om, om_root: Path) -> None:
    path = write_conf(om_root, "pgdb", FLEX + "[task#0]\n")
    r = om("pgdb", "validate", "config")
    assert r.returncode == 1
    assert lines(r.stdout) == [
        f"error: {path}:6: [task#0] duplicate section (first at line 4)",
        "1 error(s), 0 warning(s)",
    ]


# -- enable / disable ------------------------------------------------------------------------------------------

TOGGLED = (
    "[DEFAULT]\ntopology = flex\n\n"
    "[task#0]\ncommand = true\n\n"
    "[task#1]\ncommand = false\ndisable@n1 = false\n\n"
    "[app#0]\nstart = true\n"
)


def test_disable_then_enable_round_trip(om: Om, om_root: Path) -> None:
    path = write_conf(om_root, "pgdb", TOGGLED)
    r = om("pgdb", "disable", "--rid", "task")
    assert (r.returncode, r.stderr) == (0, "")
    assert path.read_text() == (
        "[DEFAULT]\ntopology = flex\n\n"
        "[task#0]\ncommand = true\ndisable = true\n\n"
        "[task#1]\ncommand = false\ndisable = true\n\n"
        "[app#0]\nstart = true\n"
    )
    cfg = load_service(path, "n1")
    assert [cfg.tasks["task#0"].disable, cfg.tasks["task#1"].disable, cfg.apps["app#0"].disable] == [
        True,
        True,
        False,
    ]
    r = om("pgdb", "enable", "--rid", "task#0,task#1")
    assert r.returncode == 0, r.stderr
    assert path.read_text() == TOGGLED.replace("disable@n1 = false\n", "")


def test_disable_with_repeated_rid_options(om: Om, om_root: Path) -> None:
    path = write_conf(om_root, "pgdb", TOGGLED)
    assert om("pgdb", "disable", "--rid", "app#0", "--rid", "task#0").returncode == 0
    cfg = load_service(path, "n1")
    assert [cfg.tasks["task#0"].disable, cfg.tasks["task#1"].disable, cfg.apps["app#0"].disable] == [
        True,
        False,
        True,
    ]


@pytest.mark.parametrize("rid", ["task#9", "sync", "DEFAULT"])
def test_enable_unknown_resource(om: Om, om_root: Path, rid: str) -> None:
    path = write_conf(om_root, "pgdb", TOGGLED)
    r = om("pgdb", "enable", "--rid", f"task#0,{rid}")
    assert (r.returncode, r.stderr) == (1, f"om: service 'pgdb' has no resource '{rid}'\n")
    assert path.read_text() == TOGGLED


def test_disable_refused_on_an_invalid_result(om: Om, om_root: Path) -> None:
    text = TOGGLED + "\n[task#2]\ncommand = true\nlog = maybe\n"
    path = write_conf(om_root, "pgdb", text)
    r = om("pgdb", "disable", "--rid", "task#0")
    assert r.returncode == 1
    assert lines(r.stderr)[-1] == "nothing written"
    assert path.read_text() == text


# -- delete ----------------------------------------------------------------------------------------------------


def test_delete_cancels_pending_scheduled_runs_and_keeps_history(om: Om, om_root: Path) -> None:
    path = write_conf(om_root, "pgdb", FLEX)
    engine = open_engine(root=om_root)
    common = {
        "service": "pgdb",
        "action": "run",
        "rid": "task#0",
        "now": T0,
        "scheduled_for": T0,
        "actor": "t",
    }
    with engine.begin() as conn:
        eligible = create_run(conn, node="n1", trigger="schedule", reason="claimed by n1", **common)
        transition(conn, eligible, "scheduled", "eligible", reason=None, actor="t", now=T0)
        awaiting = create_run(
            conn, node="n1", trigger="schedule", reason="claimed by n1", scope="n1", **common
        )
        transition(
            conn,
            awaiting,
            "scheduled",
            "awaiting_confirmation",
            reason="ask",
            actor="t",
            now=T0,
            expires_at=T0 + timedelta(hours=1),
        )
        manual = create_run(conn, node="n1", trigger="manual", reason="manual by t@n1", **common)
        elsewhere = create_run(
            conn, node="n2", trigger="schedule", reason="claimed by n2", scope="n2", **common
        )
        finished = create_run(
            conn, node="n1", trigger="schedule", reason="claimed by n1", scope="x", **common
        )
        transition(conn, finished, "scheduled", "eligible", reason=None, actor="t", now=T0)
        transition(conn, finished, "eligible", "running", reason=None, actor="t", now=T0)
        transition(conn, finished, "running", "done", reason=None, actor="t", now=T0, exit_code=0)
        for node in ("n1", "n2"):
            conn.execute(
                insert(schedule_entries).values(service="pgdb", node=node, action="run", rid="task#0")
            )
    engine.dispose()

    r = om("pgdb", "delete")
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout == f"pgdb: cancelled pending runs {eligible} {awaiting}\n"
    assert not path.exists()

    engine = open_engine(root=om_root)
    with engine.connect() as conn:
        states = dict(conn.execute(select(runs.c.id, runs.c.state)).all())
        reasons = dict(conn.execute(select(runs.c.id, runs.c.reason)).all())
        last = conn.execute(
            select(run_events.c.from_state, run_events.c.to_state, run_events.c.reason, run_events.c.actor)
            .where(run_events.c.run_id == eligible)
            .order_by(run_events.c.id.desc())
        ).first()
        confirmation = conn.execute(
            select(confirmations.c.state).where(confirmations.c.run_id == awaiting)
        ).scalar()
        entries = conn.execute(select(schedule_entries.c.node)).scalars().all()
    engine.dispose()
    assert states == {
        eligible: "cancelled",
        awaiting: "cancelled",
        manual: "scheduled",
        elsewhere: "scheduled",
        finished: "done",
    }
    assert reasons[eligible] == reasons[awaiting] == "service deleted"
    assert last[:3] == ("eligible", "cancelled", "service deleted")
    assert last[3].endswith("@n1")
    assert confirmation == "cancelled"
    assert entries == ["n2"]


def test_delete_without_pending_runs_prints_nothing(om: Om, om_root: Path) -> None:
    write_conf(om_root, "pgdb", FLEX)
    r = om("pgdb", "delete")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    assert not conf(om_root, "pgdb").exists()
    assert om("pgdb", "delete").stderr == "om: service 'pgdb' does not exist\n"


# -- unknown services ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("delete",),
        ("set", "--kw", "task#0.command=true"),
        ("unset", "--kw", "task#0.command"),
        ("validate", "config"),
        ("enable", "--rid", "task#0"),
        ("disable", "--rid", "task"),
    ],
)
def test_unknown_service(om: Om, om_root: Path, args: tuple[str, ...]) -> None:
    write_conf(om_root, "pgdb", FLEX)
    r = om("nope", *args)
    assert (r.returncode, r.stdout, r.stderr) == (1, "", NOT_FOUND)


def test_a_bad_name_is_an_unknown_service_and_touches_nothing(om: Om, om_root: Path) -> None:
    write_conf(om_root, "pgdb", FLEX)
    r = om("../pgdb", "set", "--kw", "task#0.command=false")
    assert r.returncode == 1
    assert r.stderr.startswith("om: invalid service name '../pgdb': must match ")
    assert conf(om_root, "pgdb").read_text() == FLEX
    assert not list(om_root.parent.glob("*.lock"))


# -- ls --------------------------------------------------------------------------------------------------------


def test_ls_text_and_json(om: Om, om_root: Path) -> None:
    write_conf(om_root, "alpha", FLEX)
    write_conf(om_root, "broken", "[DEFAULT]\ntopology = active\n")
    write_conf(om_root, "copied", FLEX)
    write_conf(om_root, "differs", FLEX)
    write_conf(om_root, "failover-db", "[task#0]\ncommand = true\n")  # warns: runs on every node
    same = hashlib.sha256(FLEX.encode()).hexdigest()
    engine = open_engine(root=om_root)
    with engine.begin() as conn:
        conn.execute(insert(placements).values(service="failover-db", active_node="n2", epoch=3))
        conn.execute(
            insert(instances),
            [
                {"service": "failover-db", "node": "n1", "state": "down", "frozen": True},
                {"service": "alpha", "node": "n1", "state": "up", "frozen": False},
                {"service": "copied", "node": "n2", "state": "up", "frozen": True},
            ],
        )
        conn.execute(
            insert(services),
            [
                {"name": "copied", "node": "n2", "checksum": same},
                {"name": "differs", "node": "n2", "checksum": "0" * 64},
            ],
        )
    engine.dispose()

    r = om("ls")
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout == (
        "NAME         TOPOLOGY  ACTIVE_NODE  LOCAL_STATE  FROZEN  CONFIG\n"
        "alpha        flex      -            up           no      ok\n"
        "broken       failover  -            -            -       invalid\n"
        "copied       flex      -            -            -       ok\n"
        "differs      flex      -            -            -       warnings\n"
        "failover-db  failover  n2           down         yes     warnings\n"
    )
    r = om("ls", "--format", "json")
    assert r.returncode == 0
    doc = json.loads(r.stdout)
    assert doc[0] == {
        "name": "alpha",
        "topology": "flex",
        "active_node": None,
        "local_state": "up",
        "frozen": False,
        "config": "ok",
    }
    assert [(d["name"], d["active_node"], d["frozen"], d["config"]) for d in doc] == [
        ("alpha", None, False, "ok"),
        ("broken", None, None, "invalid"),
        ("copied", None, None, "ok"),
        ("differs", None, None, "warnings"),
        ("failover-db", "n2", True, "warnings"),
    ]


def test_ls_without_services(om: Om) -> None:
    r = om("ls")
    assert (r.returncode, r.stdout) == (0, "NAME  TOPOLOGY  ACTIVE_NODE  LOCAL_STATE  FROZEN  CONFIG\n")
    assert json.loads(om("ls", "--format", "json").stdout) == []


def test_table_renders_empty_cells_as_dash_without_trailing_blanks() -> None:
    assert table(["a", "long_name"], [["x", None], ["wider", ""], ["y", "z"]]) == (
        "A      LONG_NAME\nx      -\nwider  -\ny      z"
    )
