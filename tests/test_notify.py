"""node.conf `[notify]`: webhook and mail notifications through the outbox (issue 8 item 2).

Real parts: `om runner tick` processes, an HTTP server on 127.0.0.1 that goes
down and comes back, and an SMTP server on loopback (aiosmtpd).
"""

from __future__ import annotations

import json
import threading
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from omtest import db_rows, make_root, om, runner_log_text, tick, write_node_conf, write_service
from test_collector import free_port

DAY = "2026-12-01"
FAILING = """
[DEFAULT]
nodes = n1
status_schedule = @0

[task#bad]
command = /bin/sh -c 'for i in $(seq 1 30); do echo line $i; done; exit 4'
schedule = @10m
"""


class Hook:
    """A webhook receiver on 127.0.0.1:port; `refuse` answers that many requests 500 first."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.accepted: list[dict[str, Any]] = []
        self.refused: list[dict[str, Any]] = []
        self.refuse = 0
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                doc = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                doc["_key"] = self.headers.get("Idempotency-Key")
                status = 500 if hook.refuse > 0 else 200
                if status == 500:
                    hook.refuse -= 1
                (hook.refused if status == 500 else hook.accepted).append(doc)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def notifications(root: Path) -> list[dict[str, Any]]:
    return db_rows(root, "SELECT uuid, kind, attempts, last_error, sent_at FROM outbox WHERE kind LIKE 'notify.%' "
                         "ORDER BY id")


def test_webhook_survives_an_outage_nothing_lost_nothing_sent_twice(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    hook = Hook(free_port())
    write_node_conf(root, extra=f"[notify]\nwebhook = http://127.0.0.1:{hook.port}/hook\n")
    write_service(root, "svc", FAILING)
    # the receiver is down: two failures are queued with their state change, and kept
    tick(root, f"{DAY} 00:00")
    tick(root, f"{DAY} 00:10")
    rows = notifications(root)
    assert [(r["kind"], r["sent_at"]) for r in rows] == [("notify.webhook", None)] * 2
    assert all(r["last_error"] == "connection refused" for r in rows), rows
    assert "notify: webhook" in runner_log_text(root) and "connection refused" in runner_log_text(root)
    failed = db_rows(root, "SELECT id FROM runs WHERE state = 'failed' ORDER BY id")
    assert len(failed) == 2
    # it comes back and refuses the first request: that one waits for its next attempt, the others go
    hook.start()
    try:
        hook.refuse = 1
        tick(root, f"{DAY} 00:20")
        tick(root, f"{DAY} 00:30")
        tick(root, f"{DAY} 00:40")
    finally:
        hook.stop()
    runs = db_rows(root, "SELECT id, scheduled_for FROM runs WHERE state = 'failed' ORDER BY id")
    assert len(runs) == 5
    ids = [d["run_id"] for d in hook.accepted]
    assert sorted(ids) == [r["id"] for r in runs], "every failure notified once, none lost, none twice"
    assert len({d["id"] for d in hook.accepted}) == 5 and all(d["_key"] == d["id"] for d in hook.accepted)
    assert len(hook.refused) == 1 and hook.refused[0]["id"] in {d["id"] for d in hook.accepted}
    assert all(r["sent_at"] is not None for r in notifications(root))
    doc = next(d for d in hook.accepted if d["run_id"] == runs[0]["id"])
    assert {k: doc[k] for k in ("event", "service", "node", "rid", "trigger", "state", "exit_code", "reason")} == {
        "event": "failed", "service": "svc", "node": "n1", "rid": "task#bad", "trigger": "schedule",
        "state": "failed", "exit_code": 4, "reason": "exit code 4"}
    assert doc["scheduled_for"] == f"{DAY}T00:00:00+00:00" and doc["finished_at"]
    assert doc["output"].splitlines() == [f"line {i}" for i in range(11, 31)]  # the output's last 20 lines


def test_mail_through_a_real_smtp_server_and_the_chosen_events(tmp_path: Path) -> None:
    from aiosmtpd.controller import Controller

    class Inbox:
        def __init__(self) -> None:
            self.messages: list[Any] = []

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
            self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content)))
            return "250 OK"

    root = make_root(tmp_path)
    port = free_port()
    write_node_conf(root, extra=f"[notify]\nmail = ops@example.com, dba@example.com\nsmtp = 127.0.0.1:{port}\n"
                                "on = done, expired\nfrom = om@example.com\n")
    write_service(root, "svc", """
    [DEFAULT]
    nodes = n1
    status_schedule = @0

    [task#ok]
    command = /bin/echo all good
    schedule = @1h

    [task#bad]
    command = /bin/false
    schedule = @1h

    [task#ask]
    command = /bin/true
    schedule = @1h
    confirmation = true
    confirmation_timeout = 10m
    """)
    tick(root, f"{DAY} 00:00")  # SMTP server down: the `done` mail is kept; `failed` is not chosen
    [row] = notifications(root)
    assert row["kind"] == "notify.mail" and row["sent_at"] is None and row["last_error"].startswith("SMTP 127.0.0.1")
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        tick(root, f"{DAY} 00:15")  # the confirmation expired: its mail, and the kept one
    finally:
        controller.stop()
    assert len(inbox.messages) == 2
    subjects = sorted(m["Subject"] for _, m in inbox.messages)
    assert subjects == ["om: svc task#ask expired on n1", "om: svc task#ok done on n1"]
    for rcpts, m in inbox.messages:
        assert rcpts == ["ops@example.com", "dba@example.com"] and m["From"] == "om@example.com"
        assert m["Message-ID"].startswith("<") and "@om.n1>" in m["Message-ID"]
    body = next(m for _, m in inbox.messages if "task#ok" in m["Subject"]).get_payload()
    assert "state: done" in body and "exit_code: 0" in body and "all good" in body
    assert all(r["sent_at"] is not None for r in notifications(root))


def test_missed_cron_slots_are_notified(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    hook = Hook(free_port())
    hook.start()
    try:
        write_node_conf(root, extra=f"[notify]\nwebhook = http://127.0.0.1:{hook.port}/\non = missed\n")
        write_service(root, "cr", "[DEFAULT]\nnodes = n1\nstatus_schedule = @0\n\n[task#c]\n"
                                  "command = /bin/true\nschedule = */5 * * * *\n")
        tick(root, f"{DAY} 10:00:00")
        tick(root, f"{DAY} 10:06:30")  # the 10:05 slot is 90 s late
    finally:
        hook.stop()
    [doc] = hook.accepted
    assert (doc["event"], doc["state"], doc["rid"], doc["run_id"]) == ("missed", "missed", "task#c", None)
    assert doc["scheduled_for"] == f"{DAY}T10:05:00+00:00" and "late by 90 s" in doc["reason"]


def test_bad_notify_values_are_named_and_ignored(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    write_node_conf(root, extra="[notify]\nwebhook = ftp://x\nmail = not-an-address\non = failed, sometimes\n"
                                "smtp = host:99999\n")
    write_service(root, "svc", FAILING)
    tick(root, f"{DAY} 00:00")
    log = runner_log_text(root)
    node_conf = root / "etc" / "node.conf"
    for line, keyword, message in (  # write_node_conf starts the file with an empty line
            (3, "webhook", "'ftp://x' is not an http:// or https:// URL"),
            (4, "mail", "'not-an-address' is not a mail address"),
            (5, "on", "unknown event 'sometimes' (expected failed, lost, missed, expired, done)"),
            (6, "smtp", "'host:99999': port out of range")):
        assert f"error: {node_conf}:{line}: [notify] {keyword}: {message}; using the default" in log, log
    assert notifications(root) == []  # nothing configured survives: no notification queued
    assert om(root, "svc", "print", "runs").returncode == 0


def test_a_killed_worker_is_notified_as_lost_with_an_outcome_line(tmp_path: Path) -> None:
    from omtasks.runner.procinfo import is_alive
    from omtest import kill_worker, wait_until

    root = make_root(tmp_path)
    hook = Hook(free_port())
    hook.start()
    try:
        write_node_conf(root, extra=f"[notify]\nwebhook = http://127.0.0.1:{hook.port}/\n")
        write_service(root, "crash", "[DEFAULT]\nnodes = n1\nstatus_schedule = @0\n\n[task#long]\n"
                                     "command = sleep 30\nschedule = @10m\n")
        tick(root, f"{DAY} 10:00", wait=False)
        run = wait_until(lambda: db_rows(root, "SELECT * FROM runs WHERE state = 'running'"), what="the run")[0]
        kill_worker(run["pid"])
        wait_until(lambda: not is_alive(run["pid"], run["proc_start"], run["boot_id"]), what="the worker to die")
        tick(root, f"{DAY} 10:01")
    finally:
        hook.stop()
    [doc] = hook.accepted
    assert (doc["event"], doc["state"], doc["reason"], doc["run_id"]) == ("lost", "failed", "lost", run["id"])
    log = (root / "var" / "log" / "crash.log").read_text()
    assert f"run={run['id']} task#long   ERROR   outcome: run state=failed exit_code=- " in log
    assert log.count("outcome: ") == 1 and log.rstrip().endswith("node=n1 reason=lost")
