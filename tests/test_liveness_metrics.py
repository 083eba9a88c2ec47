"""`om node print status`, the stale-tick warning, `om node print metrics` and shell completion (issue 8)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from omtest import db_rows, make_root, om, tick, write_service

DAY = "2026-12-01"
SVC = """
[DEFAULT]
nodes = n1
status_schedule = @0

[task#ok]
command = /bin/true
schedule = @10m

[task#bad]
command = /bin/sh -c 'exit 5'
schedule = @10m
"""


def test_node_status_shows_the_heartbeat_and_the_stale_warning(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    write_service(root, "svc", SVC)
    fresh = om(root, "svc", "print", "schedule", env={"OM_NOW": f"{DAY} 00:00"})
    assert "om: warning: no runner tick recorded on n1 yet" in fresh.stderr
    tick(root, f"{DAY} 00:00")
    doc = json.loads(om(root, "node", "print", "status", "--format", "json", env={"OM_NOW": f"{DAY} 00:01"}).stdout)
    assert doc["node"] == "n1" and doc["last_tick"] == f"{DAY}T00:00:00+00:00"
    assert doc["lag"] == 60.0 and doc["last_tick_duration"] > 0
    assert (doc["workers_running"], doc["outbox"]["pending"], doc["warning"]) == (0, 0, None)
    assert doc["database"] == f"sqlite:///{root}/var/om.db"
    # within twice the interval the table promises the next tick; beyond, it warns instead
    ok = om(root, "svc", "print", "schedule", env={"OM_NOW": f"{DAY} 00:02"})
    assert ok.stderr == ""
    late = om(root, "svc", "print", "schedule", env={"OM_NOW": f"{DAY} 03:00"})
    assert late.returncode == 0
    assert late.stderr == ("om: warning: the last runner tick on n1 was at 2026-12-01 00:00:00 (3 h ago, more "
                           "than twice the 60s interval): is cron or 'om runner daemon' running? due entries wait "
                           "for the next tick\n")
    assert "due: the next tick claims it" not in late.stdout
    assert "due: waiting for a runner tick (see the warning)" in late.stdout
    node_late = om(root, "node", "print", "schedule", env={"OM_NOW": f"{DAY} 03:00"})
    assert node_late.stderr == late.stderr
    text = om(root, "node", "print", "status", env={"OM_NOW": f"{DAY} 03:00"}).stdout
    assert "last tick:   2026-12-01T00:00:00+00:00 (took " in text and "warning:     the last runner tick" in text


def test_a_database_password_is_never_printed(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    proc = om(root, "node", "print", "status",
              env={"OM_DB_URL": "postgresql+psycopg://om:s3cret@127.0.0.1:1/om"})
    assert "s3cret" not in proc.stdout + proc.stderr and "Traceback" not in proc.stderr


def test_node_metrics_in_the_prometheus_text_format(tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    root = make_root(tmp_path)
    write_service(root, "svc", SVC)
    tick(root, f"{DAY} 00:00")
    tick(root, f"{DAY} 00:10")
    proc = om(root, "node", "print", "metrics")
    assert proc.returncode == 0, proc.stderr
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(proc.stdout) for s in f.samples}

    def get(name: str, rid: str, **extra: str) -> float:
        return samples[(name, tuple(sorted({"node": "n1", "service": "svc", "rid": rid, **extra}.items())))]

    assert get("om_task_last_exit_code", "task#bad") == 5 and get("om_task_last_exit_code", "task#ok") == 0
    assert get("om_task_runs", "task#bad", state="failed") == 2 and get("om_task_runs", "task#ok", state="done") == 2
    assert get("om_task_last_success_timestamp_seconds", "task#ok") > 0
    assert ("om_task_last_success_timestamp_seconds",
            (("node", "n1"), ("rid", "task#bad"), ("service", "svc"))) not in samples  # it never succeeded
    assert get("om_task_last_end_timestamp_seconds", "task#bad") >= get(
        "om_task_last_success_timestamp_seconds", "task#ok") - 60
    last_tick = datetime(2026, 12, 1, 0, 10, tzinfo=UTC).timestamp()
    assert samples[("om_node_last_tick_timestamp_seconds", (("node", "n1"),))] == last_tick
    assert samples[("om_node_outbox_pending", (("node", "n1"),))] == 0


def complete(root: Path, words: str) -> list[str]:
    """What bash completion offers for `om <words>` (click's protocol, type,value lines)."""
    proc = om(root, env={"_OM_COMPLETE": "bash_complete", "COMP_WORDS": f"om {words}",
                         "COMP_CWORD": str(len(words.split(" ")))})
    assert proc.returncode == 0, proc.stderr
    return [line.split(",", 1)[1] for line in proc.stdout.splitlines() if line.startswith("plain,")]


def test_shell_completion_of_services_rids_and_run_ids(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    write_service(root, "svc", SVC)
    write_service(root, "sales", "[DEFAULT]\nnodes = n1\n")
    (root / "etc" / "node.conf").write_text("")
    tick(root, f"{DAY} 00:00")
    assert complete(root, "s") == ["schedule", "sales", "svc"]
    assert complete(root, "svc run --rid task#") == ["task#bad", "task#ok"]
    assert complete(root, "svc run --rid task#bad,task#o") == ["task#bad,task#ok"]
    assert complete(root, "svc logs --rid ") == ["task#bad", "task#ok"]
    ids = complete(root, "svc logs --run ")
    assert ids == [str(r["id"]) for r in db_rows(root, "SELECT id FROM runs WHERE service = 'svc' ORDER BY id DESC")]
    assert len(ids) == 2  # newest first, of this service only
    assert complete(root, "svc print run ") == ids
    assert complete(root, "nosuch logs --rid ") == []  # a broken word completes nothing, silently
    print_src = (Path(__file__).parents[1] / "README.md").read_text()
    assert '_OM_COMPLETE=bash_source om' in print_src


def test_metrics_status_history_and_notifications_on_both_dialects(tmp_path: Path, db_url: str) -> None:
    from omtest import write_node_conf
    from test_collector import free_port
    from test_notify import Hook

    root = make_root(tmp_path)
    env = {"OM_DB_URL": db_url}
    if not db_url.startswith("sqlite"):
        assert om(root, "db", "upgrade", env=env).returncode == 0
    hook = Hook(free_port())
    hook.start()
    try:
        write_node_conf(root, extra=f"[notify]\nwebhook = http://127.0.0.1:{hook.port}/\n")
        write_service(root, "svc", SVC)
        tick(root, f"{DAY} 00:00", env=env)
    finally:
        hook.stop()
    [doc] = hook.accepted
    assert (doc["rid"], doc["exit_code"]) == ("task#bad", 5)
    metrics = om(root, "node", "print", "metrics", env=env).stdout
    assert 'om_task_last_exit_code{node="n1",rid="task#bad",service="svc"} 5.0' in metrics
    status = json.loads(om(root, "node", "print", "status", "--format", "json", env={**env, "OM_NOW": f"{DAY} 00:01"})
                        .stdout)
    assert status["last_tick"] == f"{DAY}T00:00:00+00:00" and status["outbox"]["pending"] == 0
    run = json.loads(om(root, "svc", "print", "run", str(doc["run_id"]), "--format", "json", env=env).stdout)
    assert [e["to_state"] for e in run["events"]] == ["scheduled", "eligible", "running", "failed"]
