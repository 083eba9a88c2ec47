"""Outbox delivery (SPEC 9, 8.3 step 8) to a real collector on loopback, from a real node database.

Failure cases use real sockets too: a closed port, a server that accepts and
never answers, one that answers garbage.
"""

from __future__ import annotations

import fcntl
import os
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from omtasks.db.schema import outbox
from omtasks.runner.context import Context
from omtasks.runner.outbox import backoff, deliver, pending_counts, queue
from test_collector import Collector, add_node, call, free_port, running_collector

T0 = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Collector, dict[str, str]]]:
    """One collector shared by the tests of this module, which push under distinct service names."""
    root = tmp_path_factory.mktemp("collector") / "omroot"
    tokens = {"n1": add_node(root, "n1")}
    with running_collector(root) as c:
        yield c, tokens


def write_node_conf(root: Path, url: str | None, token: str | None) -> None:
    lines = ["[collector]"] + ([f"url = {url}"] if url else []) + ([f"token = {token}"] if token else [])
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "etc" / "node.conf").write_text("\n".join(lines) + "\n")


@pytest.fixture
def node(om_root: Path) -> Iterator[Context]:
    """A node n1 with its own database below OM_ROOT; `now` is set by each test."""
    om_root.mkdir(parents=True, exist_ok=True)
    ctx = Context(root=om_root, node="n1", now=T0, tz=UTC)
    yield ctx
    ctx.close()


def push(ctx: Context, service: str | None, kind: str = "status", at: datetime | None = None,
         payload: dict[str, Any] | None = None) -> str:
    ctx.now = at or ctx.now
    with ctx.engine.begin() as conn:
        return queue(conn, ctx, kind, service, payload or {"instance": "up", "frozen": False, "resources": []})


def rows(ctx: Context) -> list[Any]:
    with ctx.engine.connect() as conn:
        return conn.execute(select(outbox).order_by(outbox.c.id)).all()


def at(ctx: Context, when: datetime) -> Context:
    ctx.now = when
    return ctx


def collected(c: Collector, token: str, service: str) -> list[dict[str, Any]]:
    status, answer = call(c, "GET", f"/v1/pushes?service={service}", token=token)
    assert status == 200
    return answer


def runner_log(ctx: Context) -> str:
    path = ctx.root / "var" / "log" / "runner.log"
    return path.read_text() if path.exists() else ""


def test_backoff_doubles_from_one_minute_up_to_an_hour() -> None:
    assert [backoff(n) for n in range(1, 10)] == [timedelta(minutes=m) for m in (1, 2, 4, 8, 16, 32, 60, 60, 60)]


def test_queue_inserts_a_due_row_in_the_callers_transaction(node: Context) -> None:
    uid = push(node, "svc", "config", payload={"checksum": "abc", "text": "[DEFAULT]\n"})
    with pytest.raises(ValueError, match="unknown push kind"):
        push(node, "svc", "metrics")
    [row] = rows(node)
    assert (row.uuid, row.node, row.kind, row.service) == (uid, "n1", "config", "svc")
    assert row.created_at == row.next_attempt_at == T0.replace(tzinfo=None)
    assert (row.attempts, row.last_error, row.sent_at) == (0, None, None)
    with node.engine.connect() as conn:
        assert pending_counts(conn, "n1") == (1, None)


def test_without_a_collector_nothing_is_sent(node: Context) -> None:
    push(node, "svc")
    assert deliver(node).skipped == "no collector"
    assert rows(node)[0].attempts == 0


def test_rows_are_delivered_once_oldest_first(node: Context, collector) -> None:
    c, tokens = collector
    write_node_conf(node.root, c.url, tokens["n1"])
    service = "once"
    late = push(node, service, "resinfo", T0 + timedelta(minutes=2), {"resources": []})
    early = push(node, service, "status", T0)
    other = push(node, None, "compliance", T0 + timedelta(minutes=1), {"results": []})
    report = deliver(at(node, T0 + timedelta(minutes=3)))
    assert (report.sent, report.failed, report.left, report.skipped) == (3, 0, 0, None)
    assert all(r.sent_at == (T0 + timedelta(minutes=3)).replace(tzinfo=None) for r in rows(node))
    got = collected(c, tokens["n1"], service)
    assert [p["uuid"] for p in got] == [early, late]  # arrival order follows created_at
    assert got[0]["created_at"] == "2026-11-27T10:00:00+00:00"
    assert got[0]["payload"] == {"instance": "up", "frozen": False, "resources": []}
    status, compliance = call(c, "GET", "/v1/pushes?node=n1&kind=compliance", token=tokens["n1"])
    assert [p["service"] for p in compliance if p["uuid"] == other] == [None]
    assert deliver(node).sent == 0  # nothing left to send
    # a 2xx lost on the way back: the row is sent again, the collector keeps one copy
    with node.engine.begin() as conn:
        conn.execute(update(outbox).where(outbox.c.uuid == early).values(sent_at=None))
    assert deliver(node).sent == 1
    assert [p["uuid"] for p in collected(c, tokens["n1"], service)] == [early, late]
    with node.engine.connect() as conn:
        assert pending_counts(conn, "n1") == (0, None)


def test_collector_down_keeps_rows_with_backoff_then_drains_without_duplicates(node: Context,
                                                                               tmp_path: Path) -> None:
    croot = tmp_path / "croot"
    token = add_node(croot, "n1")
    port = free_port()  # nothing listens there yet
    write_node_conf(node.root, f"http://127.0.0.1:{port}", token)
    uids = [push(node, "down", at=T0 + timedelta(seconds=i)) for i in range(3)]
    now = T0 + timedelta(minutes=1)
    expected_waits = [1, 2, 4, 8, 16, 32, 60, 60]
    for attempt, wait in enumerate(expected_waits, start=1):
        report = deliver(at(node, now))
        assert (report.sent, report.failed) == (0, 3)
        for r in rows(node):
            assert (r.attempts, r.last_error, r.sent_at) == (attempt, "connection refused", None)
            assert r.next_attempt_at == (now + timedelta(minutes=wait)).replace(tzinfo=None)
        # not due again before its next attempt
        assert deliver(at(node, now + timedelta(minutes=wait) - timedelta(seconds=1))).failed == 0
        now += timedelta(minutes=wait)
    log = runner_log(node)
    assert log.count("connection refused") == len(expected_waits)
    assert "2 more push(es) deferred" in log
    with node.engine.connect() as conn:
        assert pending_counts(conn, "n1", "down") == (3, "connection refused")
        assert pending_counts(conn, "n1", "other") == (0, None)
    with running_collector(croot, port=port) as c:
        report = deliver(at(node, now))
        assert (report.sent, report.failed) == (3, 0)
        assert deliver(at(node, now + timedelta(hours=2))).sent == 0
        got = collected(c, token, "down")
    assert sorted(p["uuid"] for p in got) == sorted(uids) and len(got) == 3
    assert all(r.sent_at is not None for r in rows(node))


def test_wrong_token_is_refused_logged_and_kept(node: Context, collector) -> None:
    c, _ = collector
    write_node_conf(node.root, c.url, "not-the-token")
    uid = push(node, "badtoken")
    report = deliver(node)
    assert (report.sent, report.failed) == (0, 1)
    [row] = rows(node)
    assert (row.attempts, row.last_error, row.sent_at) == (1, "HTTP 401: bad token", None)
    assert row.next_attempt_at == (T0 + timedelta(minutes=1)).replace(tzinfo=None)
    assert f"outbox: push {uid} (status badtoken) refused: HTTP 401: bad token" in runner_log(node)
    with node.engine.connect() as conn:
        assert pending_counts(conn, "n1", "badtoken") == (1, "HTTP 401: bad token")


def test_a_refused_row_does_not_hold_back_the_others(node: Context, collector) -> None:
    c, tokens = collector
    write_node_conf(node.root, c.url, tokens["n1"])
    bad = push(node, "mixed", at=T0)
    good = push(node, "mixed", at=T0 + timedelta(seconds=1))
    with node.engine.begin() as conn:  # a row the collector refuses (400)
        conn.execute(update(outbox).where(outbox.c.uuid == bad).values(payload="[]"))
    report = deliver(at(node, T0 + timedelta(minutes=1)))
    assert (report.sent, report.failed) == (1, 1)
    by_uuid = {r.uuid: r for r in rows(node)}
    assert by_uuid[bad].last_error == "HTTP 400: 'payload' must be a JSON object"
    assert by_uuid[good].sent_at is not None
    assert [p["uuid"] for p in collected(c, tokens["n1"], "mixed")] == [good]


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server that accepts connections and never answers."""
    srv = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(srv.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for s in accepted:
            s.close()
        srv.close()


def test_a_hanging_collector_costs_no_more_than_the_budget(node: Context, silent_server: int) -> None:
    write_node_conf(node.root, f"http://127.0.0.1:{silent_server}", "tok")
    push(node, "hang", at=T0)
    push(node, "hang", at=T0 + timedelta(seconds=1))
    started = time.monotonic()
    report = deliver(at(node, T0 + timedelta(minutes=1)), budget=2.0)
    assert time.monotonic() - started < 8
    assert (report.sent, report.failed) == (0, 2)
    reason = "delivery budget of 2 s exhausted"  # the silent server outlasts the budget, not a read timeout
    assert [(r.attempts, r.last_error, r.sent_at) for r in rows(node)] == [(1, reason, None)] * 2
    assert reason in runner_log(node)


def test_a_spent_budget_leaves_the_rows_for_the_next_tick(node: Context, collector) -> None:
    c, tokens = collector
    write_node_conf(node.root, c.url, tokens["n1"])
    push(node, "budget")
    push(node, "budget")
    report = deliver(node, budget=0)
    assert (report.sent, report.failed, report.left) == (0, 0, 2)
    assert [(r.attempts, r.sent_at) for r in rows(node)] == [(0, None)] * 2
    assert deliver(node).sent == 2


def test_a_malformed_response_is_a_failed_send(node: Context) -> None:
    srv = socket.create_server(("127.0.0.1", 0))

    def answer_garbage() -> None:
        conn, _ = srv.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"this is not HTTP\r\n\r\n")

    thread = threading.Thread(target=answer_garbage, daemon=True)
    thread.start()
    try:
        write_node_conf(node.root, f"http://127.0.0.1:{srv.getsockname()[1]}", "tok")
        push(node, "garbage")
        report = deliver(node)
        thread.join(timeout=10)
    finally:
        srv.close()
    assert (report.sent, report.failed) == (0, 1)
    [row] = rows(node)
    assert row.last_error.startswith("malformed response: illegal status line")
    assert (row.attempts, row.sent_at) == (1, None)


def test_a_bad_collector_url_is_logged_once_and_the_rows_stay(node: Context) -> None:
    write_node_conf(node.root, "http://127.0.0.1:99999", "tok")
    push(node, "badurl")
    push(node, "badurl")
    report = deliver(node)
    assert (report.sent, report.failed) == (0, 2)
    assert [(r.attempts, r.sent_at) for r in rows(node)] == [(1, None)] * 2
    assert rows(node)[0].last_error.startswith("bad collector url: ")
    log = runner_log(node)
    assert log.count("bad collector.url") == 1 and "2 push(es) kept" in log


def test_a_delivery_finding_the_lock_held_sends_nothing(node: Context, collector) -> None:
    c, tokens = collector
    write_node_conf(node.root, c.url, tokens["n1"])
    push(node, "locked")
    lock = node.root / "var" / "run" / "outbox.n1.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        started = time.monotonic()
        assert deliver(node).skipped == "locked"
        assert time.monotonic() - started < 1
    finally:
        os.close(fd)
    assert rows(node)[0].sent_at is None
    assert collected(c, tokens["n1"], "locked") == []
    assert deliver(node).sent == 1
