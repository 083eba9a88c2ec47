"""The collector server (SPEC 9): a real `om collector serve` on loopback, real HTTP, real databases.

The helpers here (`running_collector`, `add_node`, `call`, `free_port`) are shared with
test_outbox.py.
"""

from __future__ import annotations

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


def test_add_node_refuses_a_bad_node_name(tmp_path: Path) -> None:
    proc = subprocess.run([OM_BIN, "collector", "add-node", "bad name"], env=om_env(tmp_path / "omroot"),
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "not a node name" in proc.stderr
    assert not (tmp_path / "omroot").exists()


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
