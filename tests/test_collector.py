"""The collector server (SPEC 9): a real `om collector serve` on loopback, real HTTP, real databases.

The helpers here (`running_collector`, `add_node`, `call`, `free_port`) are shared with
test_outbox.py.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

OM_BIN = str(Path(sys.executable).with_name("om"))


def om_env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OM_")}
    env["OM_ROOT"] = str(root)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def add_node(root: Path, node: str, db_url: str | None = None) -> str:
    """`om collector add-node NODE`: the printed token."""
    args = [OM_BIN, "collector", "add-node", node] + (["--db", db_url] if db_url else [])
    proc = subprocess.run(args, env=om_env(root), capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@dataclass
class Collector:
    port: int
    proc: subprocess.Popen
    stderr: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.stderr.read_text()


@contextmanager
def running_collector(root: Path, port: int | None = None, db_url: str | None = None) -> Iterator[Collector]:
    """`om collector serve` on 127.0.0.1:<port> until the block ends, then SIGTERM."""
    port = port or free_port()
    stderr = root.parent / f"collector-{port}.stderr"
    args = [OM_BIN, "collector", "serve", "--listen", f"127.0.0.1:{port}"] + (["--db", db_url] if db_url else [])
    with stderr.open("wb") as err:
        proc = subprocess.Popen(args, env=om_env(root), stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, f"collector exited: {stderr.read_text()}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "collector did not start listening"
                time.sleep(0.05)
        yield Collector(port, proc, stderr)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    # uvicorn shuts down gracefully, then re-raises the signal it caught
    assert proc.returncode in (0, -signal.SIGTERM), stderr.read_text()
    assert "Traceback" not in stderr.read_text()


def call(collector: Collector, method: str, path: str, *, token: str | None = None,
         body: Any = None, raw: bytes | None = None, auth: str | None = None) -> tuple[int, Any]:
    """One request; (status, decoded JSON answer)."""
    conn = http.client.HTTPConnection("127.0.0.1", collector.port, timeout=10)
    headers = {"Content-Type": "application/json"}
    if auth is not None:
        headers["Authorization"] = auth
    elif token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    try:
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def push_body(node: str = "n1", **over: Any) -> dict[str, Any]:
    body = {"uuid": str(uuid.uuid4()), "node": node, "service": "svc", "kind": "status",
            "created_at": "2026-11-27T10:00:00+01:00", "payload": {"instance": "up", "frozen": False,
                                                                   "resources": []}}
    body.update(over)
    return body


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Collector, Path, dict[str, str]]]:
    """One collector on its default database ($OM_ROOT/var/collector.db), with nodes n1 and n2."""
    root = tmp_path_factory.mktemp("collector") / "omroot"
    tokens = {node: add_node(root, node) for node in ("n1", "n2")}
    with running_collector(root) as collector:
        yield collector, root, tokens


def stored(root: Path, sql: str, **params: Any) -> list[Any]:
    engine = create_engine(f"sqlite:///{root / 'var' / 'collector.db'}")
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql), params).all()
    finally:
        engine.dispose()


def test_add_node_prints_a_token_stored_as_its_sha256(tmp_path: Path) -> None:
    root = tmp_path / "omroot"
    token = add_node(root, "n1")
    assert len(token) >= 43 and token.replace("-", "").replace("_", "").isalnum()
    rows = stored(root, "SELECT name, token_sha256 FROM collector_nodes")
    assert rows == [("n1", hashlib.sha256(token.encode()).hexdigest())]
    assert token.encode() not in (root / "var" / "collector.db").read_bytes()


def test_add_node_again_replaces_the_token(tmp_path: Path) -> None:
    root = tmp_path / "omroot"
    old = add_node(root, "n1")
    new = add_node(root, "n1")
    assert old != new
    with running_collector(root) as collector:
        assert call(collector, "GET", "/v1/services", token=old) == (401, {"error": "bad token"})
        assert call(collector, "GET", "/v1/services", token=new) == (200, [])


def test_a_token_replaced_while_serving_stops_working_at_once(tmp_path: Path) -> None:
    root = tmp_path / "omroot"
    old = add_node(root, "n1")
    with running_collector(root) as collector:
        assert call(collector, "POST", "/v1/push", token=old, body=push_body())[0] == 201
        assert call(collector, "GET", "/v1/services", token=old)[0] == 200
        new = add_node(root, "n1")
        assert call(collector, "POST", "/v1/push", token=old, body=push_body()) == (401, {"error": "bad token"})
        assert call(collector, "GET", "/v1/services", token=old) == (401, {"error": "bad token"})
        assert call(collector, "POST", "/v1/push", token=new, body=push_body())[0] == 201


def test_add_node_refuses_a_bad_node_name(tmp_path: Path) -> None:
    proc = subprocess.run([OM_BIN, "collector", "add-node", "bad name"], env=om_env(tmp_path / "omroot"),
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "not a node name" in proc.stderr
    assert not (tmp_path / "omroot").exists()
    proc = subprocess.run([OM_BIN, "collector", "add-node", "n" * 256], env=om_env(tmp_path / "omroot"),
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "longer than 255 characters" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) == 1


def test_collector_commands_on_an_unwritable_root_fail_in_one_line(tmp_path: Path) -> None:
    root = tmp_path / "omroot"
    root.mkdir()
    root.chmod(0o500)
    try:
        proc = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", OM_BIN,
                               "collector", "add-node", "n1"] if os.geteuid() == 0 else
                              [OM_BIN, "collector", "add-node", "n1"],
                              env=om_env(root), capture_output=True, text=True, timeout=30)
    finally:
        root.chmod(0o750)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("om: permission denied: ") and "(run as root or set OM_ROOT)" in proc.stderr
    assert len(proc.stderr.splitlines()) == 1


def test_serve_refuses_a_bad_listen_address(tmp_path: Path) -> None:
    proc = subprocess.run([OM_BIN, "collector", "serve", "--listen", "127.0.0.1:http"],
                          env=om_env(tmp_path / "omroot"), capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "--listen" in proc.stderr


def test_collector_files_and_directories_are_not_world_readable(server) -> None:
    _, root, _ = server
    for d in (root, root / "var"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o750, d
    files = [p for p in (root / "var").iterdir() if p.name.startswith("collector.db")]
    assert root / "var" / "collector.db" in files
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o640, f


def test_push_is_stored_once_201_then_200(server) -> None:
    collector, root, tokens = server
    body = push_body()
    assert call(collector, "POST", "/v1/push", token=tokens["n1"], body=body) == (
        201, {"uuid": body["uuid"], "stored": True})
    assert call(collector, "POST", "/v1/push", token=tokens["n1"], body=body) == (
        200, {"uuid": body["uuid"], "stored": False})
    rows = stored(root, "SELECT node, service, kind, created_at, payload FROM pushes WHERE uuid = :u",
                  u=body["uuid"])
    assert len(rows) == 1
    node, service, kind, created_at, payload = rows[0]
    assert (node, service, kind) == ("n1", "svc", "status")
    assert str(created_at).startswith("2026-11-27 09:00:00")  # naive UTC
    assert json.loads(payload) == body["payload"]


def test_push_without_service_is_stored(server) -> None:
    collector, _, tokens = server
    body = push_body(service=None, kind="compliance", payload={"results": []})
    assert call(collector, "POST", "/v1/push", token=tokens["n1"], body=body)[0] == 201


@pytest.mark.parametrize("auth", [None, "Bearer", "Bearer not-a-token", "Basic dXNlcjpwYXNz"])
def test_push_without_a_valid_token_is_401(server, auth: str | None) -> None:
    collector, root, _ = server
    body = push_body()
    status, answer = call(collector, "POST", "/v1/push", auth=auth, body=body)
    assert status == 401
    assert set(answer) == {"error"} and answer["error"] in ("missing bearer token", "bad token")
    assert stored(root, "SELECT id FROM pushes WHERE uuid = :u", u=body["uuid"]) == []


def test_push_for_another_node_is_403_and_logged(server) -> None:
    collector, root, tokens = server
    body = push_body(node="n2")
    status, answer = call(collector, "POST", "/v1/push", token=tokens["n1"], body=body)
    assert status == 403
    assert answer == {"error": "the token belongs to node 'n1', not 'n2'"}
    assert stored(root, "SELECT id FROM pushes WHERE uuid = :u", u=body["uuid"]) == []
    assert "push refused (403) from 127.0.0.1, node n1: the token belongs to node 'n1', not 'n2'" in collector.log()


BAD_BODIES = {
    "not json": (b"{nope", "body is not JSON"),
    "NaN": (b'{"payload": NaN}', "body is not JSON"),
    "not utf-8": (b"\xff\xfe", "body is not JSON"),
    "array": (b"[]", "body must be a JSON object"),
    "missing uuid": ({"uuid": None}, "missing key 'uuid'"),
    "missing payload": ({"payload": None}, "missing key 'payload'"),
    "missing service": ({"service": None}, "missing key 'service'"),
    "node not a string": ({"node": 7}, "'node' must be a non-empty string"),
    "empty kind": ({"kind": ""}, "'kind' must be a non-empty string"),
    "service a number": ({"service": 3}, "'service' must be a non-empty string or null"),
    "uuid not a uuid": ({"uuid": "12345"}, "'uuid' is not a UUID"),
    "unknown kind": ({"kind": "metrics"}, "unknown kind 'metrics'"),
    "created_at without offset": ({"created_at": "2026-11-27T10:00:00"}, "'created_at' is not ISO 8601"),
    "created_at garbage": ({"created_at": "yesterday"}, "'created_at' is not ISO 8601"),
    "payload a list": ({"payload": []}, "'payload' must be a JSON object"),
    # hostile input (issue 11): bounded nesting, valid Unicode, dates in range, a clock not far ahead
    "payload too deep": ({"payload": json.loads('{"a":' * 40 + "1" + "}" * 40)},
                         "'payload' nests deeper than 32 levels"),
    "body far too deep": (b'{"payload": ' + b"[" * 200_000 + b"]" * 200_000 + b"}", "body nests deeper than"),
    "lone surrogate": ({"payload": {"text": "\ud800"}}, "'payload' holds a lone surrogate"),
    "surrogate service": ({"service": "svc\udfff"}, "'service' is not a name"),
    "infinite number": (b'{"payload": {"x": 1e999}}', "body is not JSON: number out of range"),
    "created_at past year 9999": ({"created_at": "9999-12-31T23:59:59-23:59"}, "'created_at' is not ISO 8601"),
    "created_at before year 1": ({"created_at": "0001-01-01T00:00:00+01:00"}, "'created_at' is not ISO 8601"),
    "created_at from the future": ({"created_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat()},
                                   "'created_at' " + str((datetime.now(UTC) + timedelta(hours=1)).year)),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_bad_push_body_is_400_with_a_one_line_error(server, case: str) -> None:
    collector, root, tokens = server
    change, expected = BAD_BODIES[case]
    if isinstance(change, bytes):
        status, answer = call(collector, "POST", "/v1/push", token=tokens["n1"], raw=change)
    else:
        body = push_body()
        for key, value in change.items():
            if value is None and key in ("uuid", "payload", "service"):
                del body[key]
            else:
                body[key] = value
        status, answer = call(collector, "POST", "/v1/push", token=tokens["n1"], body=body)
    assert status == 400, answer
    assert set(answer) == {"error"}
    assert answer["error"].startswith(expected) and "\n" not in answer["error"]
    assert f"push refused (400) from 127.0.0.1, node n1: {expected}" in collector.log()


def test_unknown_paths_and_methods_answer_json_errors(server) -> None:
    collector, _, tokens = server
    assert call(collector, "GET", "/v1/nothing", token=tokens["n1"]) == (404, {"error": "Not Found"})
    assert call(collector, "GET", "/v1/push", token=tokens["n1"]) == (405, {"error": "Method Not Allowed"})


def test_services_answers_the_greatest_created_at_even_when_an_older_push_arrives_last(server) -> None:
    collector, _, tokens = server
    service = f"latest-{uuid.uuid4().hex[:8]}"
    newer = push_body(service=service, created_at="2026-11-27T12:00:00+00:00", payload={"n": "newer"})
    older = push_body(service=service, created_at="2026-11-27T13:00:00+02:00", payload={"n": "older"})
    other_kind = push_body(service=service, kind="config", created_at="2026-11-27T08:00:00+00:00",
                           payload={"checksum": "abc", "text": "[DEFAULT]\n"})
    other_node = push_body(node="n2", service=service, created_at="2026-11-27T09:00:00+00:00",
                           payload={"n": "n2"})
    for body, token in ((newer, "n1"), (other_kind, "n1"), (other_node, "n2"), (older, "n1")):
        assert call(collector, "POST", "/v1/push", token=tokens[token], body=body)[0] == 201
    status, answer = call(collector, "GET", "/v1/services", token=tokens["n2"])
    assert status == 200
    mine = [e for e in answer if e["service"] == service]
    assert [(e["node"], e["kind"], e["payload"]) for e in mine] == [
        ("n1", "config", other_kind["payload"]),
        ("n1", "status", {"n": "newer"}),
        ("n2", "status", {"n": "n2"}),
    ]
    latest = mine[1]
    assert set(latest) >= {"service", "node", "kind", "created_at", "received_at", "payload"}
    assert latest["created_at"] == "2026-11-27T12:00:00+00:00"
    status, every = call(collector, "GET", f"/v1/pushes?service={service}&node=n1&kind=status",
                         token=tokens["n1"])
    assert status == 200
    assert [e["uuid"] for e in every] == [newer["uuid"], older["uuid"]]  # in order of arrival


def test_reads_need_a_valid_token(server) -> None:
    collector, _, _ = server
    assert call(collector, "GET", "/v1/services")[0] == 401
    assert call(collector, "GET", "/v1/pushes", token="wrong") == (401, {"error": "bad token"})


def test_db_option_uses_another_database(tmp_path: Path) -> None:
    root = tmp_path / "omroot"
    url = f"sqlite:///{tmp_path / 'elsewhere' / 'c.db'}"
    token = add_node(root, "n1", url)
    with running_collector(root, db_url=url) as collector:
        assert call(collector, "POST", "/v1/push", token=token, body=push_body())[0] == 201
    assert (tmp_path / "elsewhere" / "c.db").exists()
    assert not (root / "var" / "collector.db").exists()


def test_a_push_within_the_allowed_skew_is_stored(server) -> None:
    collector, _, tokens = server
    soon = (datetime.now(UTC) + timedelta(minutes=2)).isoformat()
    assert call(collector, "POST", "/v1/push", token=tokens["n1"], body=push_body(created_at=soon))[0] == 201


def pages(collector: Collector, token: str, path: str) -> list[list[dict[str, Any]]]:
    """Every page of a listing, following its `Link: <...>; rel="next"` headers."""
    out = []
    while path:
        conn = http.client.HTTPConnection("127.0.0.1", collector.port, timeout=30)
        try:
            conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
            resp = conn.getresponse()
            assert resp.status == 200
            out.append(json.loads(resp.read()))
            link = resp.getheader("Link")
        finally:
            conn.close()
        path = link[1:link.index(">")] if link else None
        assert not link or link.endswith('; rel="next"')
    return out


def test_services_and_pushes_are_paginated_with_limit_and_after(server) -> None:
    collector, _, tokens = server
    prefix = f"page-{uuid.uuid4().hex[:8]}"
    for i in range(7):
        for node in ("n1", "n2"):
            body = push_body(node=node, service=f"{prefix}-{i}", created_at=f"2026-11-27T10:0{i}:00+00:00")
            assert call(collector, "POST", "/v1/push", token=tokens[node], body=body)[0] == 201
    _, everything = call(collector, "GET", "/v1/services", token=tokens["n1"])
    got = pages(collector, tokens["n1"], "/v1/services?limit=3")
    assert all(len(p) == 3 for p in got[:-1]) and 1 <= len(got[-1]) <= 3
    flat = [e for p in got for e in p]
    assert flat == everything  # the same elements in the same order, none twice
    assert [(e["service"], e["node"]) for e in flat if (e["service"] or "").startswith(prefix)] == [
        (f"{prefix}-{i}", node) for i in range(7) for node in ("n1", "n2")]
    got = pages(collector, tokens["n2"], "/v1/pushes?node=n2&kind=status&limit=2")
    flat = [e for p in got for e in p]
    _, every = call(collector, "GET", "/v1/pushes?node=n2&kind=status", token=tokens["n2"])
    assert flat == every and len(got) == (len(every) + 1) // 2
    assert [e["service"] for e in flat if (e["service"] or "").startswith(prefix)] == [f"{prefix}-{i}" for i in range(7)]


@pytest.mark.parametrize("query, expected", [
    ("limit=0", "'limit' must be an integer from 1 to 5000"),
    ("limit=5001", "'limit' must be an integer from 1 to 5000"),
    ("limit=x", "'limit' must be an integer from 1 to 5000"),
    ("after=nope", "'after' is not a cursor of this listing"),
])
def test_bad_page_arguments_are_400(server, query: str, expected: str) -> None:
    collector, _, tokens = server
    for path in ("/v1/services", "/v1/pushes"):
        status, answer = call(collector, "GET", f"{path}?{query}", token=tokens["n1"])
        assert status == 400 and answer["error"].startswith(expected), answer
    status, answer = call(collector, "GET", '/v1/services?after=["a",1]', token=tokens["n1"])
    assert status == 400


def test_a_page_stops_at_its_byte_bound(server) -> None:
    collector, _, tokens = server
    service = f"big-{uuid.uuid4().hex[:8]}"
    for i in range(3):
        body = push_body(service=service, kind="config", payload={"checksum": str(i), "text": "x" * 3_000_000})
        assert call(collector, "POST", "/v1/push", token=tokens["n1"], body=body)[0] == 201
    got = pages(collector, tokens["n1"], f"/v1/pushes?service={service}")
    assert [[e["payload"]["checksum"] for e in p] for p in got] == [["0"], ["1"], ["2"]]


def test_per_node_push_size_and_stored_bytes_quota(tmp_path: Path) -> None:
    root = tmp_path / "omroot"
    tokens = {node: add_node(root, node) for node in ("n1", "n2")}
    port = free_port()
    stderr = tmp_path / "serve.stderr"
    args = [OM_BIN, "collector", "serve", "--listen", f"127.0.0.1:{port}", "--max-push-mib", "1", "--quota-mib", "1"]
    with stderr.open("wb") as err:
        proc = subprocess.Popen(args, env=om_env(root), stdout=subprocess.DEVNULL, stderr=err)
    try:
        collector = Collector(port, proc, stderr)
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, stderr.read_text()
                time.sleep(0.05)
        half = {"checksum": "a", "text": "x" * 600_000}
        assert call(collector, "POST", "/v1/push", token=tokens["n1"],
                    body=push_body(kind="config", payload=half))[0] == 201
        status, answer = call(collector, "POST", "/v1/push", token=tokens["n1"],
                              body=push_body(kind="config", payload=half))
        assert status == 413 and answer["error"] == (
            f"node 'n1' would store more than its quota of {1024 * 1024} bytes")
        # the quota is per node
        assert call(collector, "POST", "/v1/push", token=tokens["n2"],
                    body=push_body(node="n2", kind="config", payload=half))[0] == 201
        status, answer = call(collector, "POST", "/v1/push", token=tokens["n2"], body=push_body(
            node="n2", kind="config", payload={"checksum": "b", "text": "x" * 1_100_000}))
        assert status == 413 and answer["error"] == f"body larger than {1024 * 1024} bytes"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
    assert "push refused (413) from 127.0.0.1, node n1: node 'n1' would store more" in stderr.read_text()
    rows = stored(root, "SELECT node, pushes, stored_bytes FROM collector_node_state ORDER BY node")
    assert [(r[0], r[1]) for r in rows] == [("n1", 1), ("n2", 1)] and all(600_000 < r[2] < 700_000 for r in rows)


def test_a_database_of_the_previous_release_gets_its_current_table(tmp_path: Path) -> None:
    """Pushes stored before `collector_current` existed are ranked once when the collector opens the database."""
    root = tmp_path / "omroot"
    (root / "var").mkdir(parents=True)
    db = root / "var" / "collector.db"
    engine = create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE collector_nodes (name VARCHAR PRIMARY KEY, token_sha256 VARCHAR NOT NULL, "
                          "created_at DATETIME NOT NULL)"))
        conn.execute(text("CREATE UNIQUE INDEX ux_collector_nodes_token ON collector_nodes (token_sha256)"))
        conn.execute(text("CREATE TABLE pushes (id INTEGER PRIMARY KEY AUTOINCREMENT, uuid VARCHAR NOT NULL, "
                          "node VARCHAR NOT NULL, service VARCHAR, kind VARCHAR NOT NULL, created_at DATETIME "
                          "NOT NULL, received_at DATETIME NOT NULL, payload TEXT NOT NULL)"))
        conn.execute(text("CREATE UNIQUE INDEX ux_pushes_uuid ON pushes (uuid)"))
        conn.execute(text("CREATE INDEX ix_pushes_latest ON pushes (service, node, kind, created_at)"))
        for created, n in (("2026-11-27 12:00:00", "newer"), ("2026-11-27 11:00:00", "older")):
            conn.execute(text("INSERT INTO pushes (uuid, node, service, kind, created_at, received_at, payload) "
                              "VALUES (:u, 'n1', 'svc', 'status', :c, :c, :p)"),
                         {"u": str(uuid.uuid4()), "c": created, "p": json.dumps({"n": n})})
    engine.dispose()
    token = add_node(root, "n1")
    with running_collector(root) as collector:
        status, answer = call(collector, "GET", "/v1/services", token=token)
        assert status == 200 and [e["payload"] for e in answer] == [{"n": "newer"}]
        newest = push_body(created_at="2026-11-27T13:00:00+00:00", payload={"n": "newest"})
        assert call(collector, "POST", "/v1/push", token=token, body=newest)[0] == 201
        assert [e["payload"] for e in call(collector, "GET", "/v1/services", token=token)[1]] == [{"n": "newest"}]
    assert stored(root, "SELECT node, pushes FROM collector_node_state") == [("n1", 3)]


def test_prune_deletes_old_pushes_that_are_not_current(tmp_path: Path) -> None:
    root = tmp_path / "omroot"
    token = add_node(root, "n1")
    with running_collector(root) as collector:
        for hour, service in ((10, "a"), (11, "a"), (12, "a"), (10, "b")):
            body = push_body(service=service, created_at=f"2026-11-27T{hour}:00:00+00:00")
            assert call(collector, "POST", "/v1/push", token=token, body=body)[0] == 201
    engine = create_engine(f"sqlite:///{root / 'var' / 'collector.db'}")
    with engine.begin() as conn:  # as if they had arrived 8 days ago
        conn.execute(text("UPDATE pushes SET received_at = datetime(received_at, '-8 days')"))
    engine.dispose()
    [(before,)] = stored(root, "SELECT stored_bytes FROM collector_node_state")
    proc = subprocess.run([OM_BIN, "collector", "prune", "--retention-days", "7"], env=om_env(root),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "deleted 2 push(es) received more than 7 day(s) ago that are no longer current\n"
    left = stored(root, "SELECT service, created_at FROM pushes ORDER BY service")
    assert [(r[0], str(r[1])[:13]) for r in left] == [("a", "2026-11-27 12"), ("b", "2026-11-27 10")]
    [(pushes_left, after)] = stored(root, "SELECT pushes, stored_bytes FROM collector_node_state")
    assert pushes_left == 2 and after == before // 2


@pytest.mark.pg
def test_collector_on_postgresql_keeps_current_pages_and_prunes(tmp_path: Path, pg_url: str) -> None:
    root = tmp_path / "omroot"
    token = add_node(root, "n1", pg_url)
    with running_collector(root, db_url=pg_url) as collector:
        bodies = [push_body(service=s, created_at=f"2026-11-27T{h}:00:00+00:00", payload={"h": h})
                  for s, h in (("a", 11), ("a", 12), ("a", 10), ("b", 10))]
        for body in bodies:
            assert call(collector, "POST", "/v1/push", token=token, body=body)[0] == 201
        assert call(collector, "POST", "/v1/push", token=token, body=bodies[0])[0] == 200
        got = pages(collector, token, "/v1/services?limit=1")
        assert [(e[0]["service"], e[0]["payload"]) for e in got] == [("a", {"h": 12}), ("b", {"h": 10})]
        assert [e["payload"]["h"] for p in pages(collector, token, "/v1/pushes?limit=3") for e in p] == [
            11, 12, 10, 10]
        # the task views on PostgreSQL: a failing task first, its exit code in /metrics
        ended = "2026-11-27T10:00:00+00:00"
        resinfo = push_body(service="a", kind="resinfo", payload={"resources": [
            {"rid": f"task#{i}", "command": "x", "user": None, "schedule": "@1h", "last_run": ended,
             "runs": {state: 1}, "last_success": ended if state == "done" else None,
             "recent": [{"id": i, "state": state, "exit_code": code, "reason": None, "started_at": ended,
                         "ended_at": ended}]} for i, (state, code) in enumerate((("done", 0), ("failed", 4)))]})
        assert call(collector, "POST", "/v1/push", token=token, body=resinfo)[0] == 201
        viewer = subprocess.run([OM_BIN, "collector", "add-viewer", "ops", "--db", pg_url], env=om_env(root),
                                capture_output=True, text=True, timeout=30).stdout.strip()
        auth = "Basic " + base64.b64encode(f"ops:{viewer}".encode()).decode()
        conn = http.client.HTTPConnection("127.0.0.1", collector.port, timeout=30)
        conn.request("GET", "/", headers={"Authorization": auth})
        page = conn.getresponse().read().decode()
        conn.request("GET", "/metrics", headers={"Authorization": auth})
        metrics = conn.getresponse().read().decode()
        conn.close()
        assert "1 failing" in page and page.index("task#1") < page.index("task#0")
        assert 'om_task_last_exit_code{node="n1",rid="task#1",service="a"} 4.0' in metrics
    engine = create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE pushes SET received_at = received_at - interval '8 days'"))
    engine.dispose()
    proc = subprocess.run([OM_BIN, "collector", "prune", "--db", pg_url], env=om_env(root),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("deleted 2 push(es)"), proc.stderr
