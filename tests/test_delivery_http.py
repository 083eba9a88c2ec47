"""The outbox client on httpx: a wall-clock budget, proxies from the environment, private CAs (issues 8, 11).

Real `om runner tick` processes push to real servers on 127.0.0.1: one that
trickles its answer a byte at a time, a forward proxy, and an HTTPS server
whose certificate comes from a CA made for the test with openssl.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from omtest import db_rows, make_root, om, write_node_conf, write_service

SVC = "[DEFAULT]\nnodes = n1\n"
NOW = "2026-12-01 00:00"


def pushes(root: Path) -> list[dict]:
    return db_rows(root, "SELECT kind, attempts, last_error, sent_at FROM outbox ORDER BY id")


@contextmanager
def trickling_server(interval: float, count: int) -> Iterator[tuple[int, list[float]]]:
    """Reads a request, then answers one byte every `interval` s, `count` bytes at most."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    srv.settimeout(0.2)
    stop = threading.Event()
    closed: list[float] = []

    def handle(conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            conn.recv(65536)
            for b in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"x" * count:
                if stop.is_set():
                    break
                conn.sendall(bytes([b]))
                time.sleep(interval)
        except OSError:
            pass
        finally:
            closed.append(time.monotonic())
            conn.close()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield srv.getsockname()[1], closed
    finally:
        stop.set()
        thread.join()
        srv.close()


def test_a_trickling_collector_cannot_hold_a_tick_beyond_the_budget(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    write_service(root, "svc", SVC)
    # one byte a second never trips the 10 s read timeout: only the wall-clock budget ends the delivery
    with trickling_server(1.0, 120) as (port, _):
        write_node_conf(root, url=f"http://127.0.0.1:{port}", token="tok", extra="budget = 3s\n")
        started = time.monotonic()
        proc = om(root, "runner", "tick", "--now", NOW, timeout=120)
        elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert elapsed < 3 + 4, f"the tick took {elapsed:.1f} s with a 3 s delivery budget"
    rows = pushes(root)
    assert rows and all(r["sent_at"] is None and r["last_error"] == "delivery budget of 3 s exhausted"
                        for r in rows), rows


class _Recorder(BaseHTTPRequestHandler):
    seen: list[tuple[str, str]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append((self.path, json.loads(body)["kind"]))
        answer = b'{"stored": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def serving(handler: type, context: ssl.SSLContext | None = None) -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_pushes_go_through_the_proxy_of_the_environment_unless_no_proxy(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    write_service(root, "svc", SVC)
    # a host only the proxy can reach: a direct connection cannot even resolve it
    write_node_conf(root, url="http://collector.om-test.invalid:8080", token="tok")
    _Recorder.seen = []
    with serving(_Recorder) as proxy_port:
        proxy = f"http://127.0.0.1:{proxy_port}"
        bypass = om(root, "runner", "tick", "--now", NOW,
                    env={"HTTP_PROXY": proxy, "NO_PROXY": "collector.om-test.invalid"})
        assert bypass.returncode == 0 and _Recorder.seen == []
        assert all(r["sent_at"] is None and "collector.om-test.invalid" in r["last_error"] for r in pushes(root))
        proc = om(root, "runner", "tick", "--now", "2026-12-01 00:30", env={"HTTP_PROXY": proxy})
    assert proc.returncode == 0, proc.stderr
    assert sorted(_Recorder.seen) == [("http://collector.om-test.invalid:8080/v1/push", k)
                                      for k in sorted(k for _, k in _Recorder.seen)]
    assert len(_Recorder.seen) >= 2 and all(r["sent_at"] is not None for r in pushes(root))


def _private_ca(tmp_path: Path) -> tuple[Path, ssl.SSLContext]:
    """A CA and a certificate for 127.0.0.1 signed by it; returns the CA file and the server's context."""
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=tmp_path, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=om test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=127.0.0.1")
    (tmp_path / "ext.cnf").write_text("subjectAltName = IP:127.0.0.1\n")
    run("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out",
        "srv.pem", "-days", "2", "-extfile", "ext.cnf")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "srv.pem", tmp_path / "srv.key")
    return tmp_path / "ca.pem", context


def test_a_private_ca_with_collector_ca_or_verify_false(tmp_path: Path) -> None:
    ca, context = _private_ca(tmp_path)
    _Recorder.seen = []
    with serving(_Recorder, context) as port:
        url = f"https://127.0.0.1:{port}"
        for name, extra, sent in (("unknown", "", False), ("ca", f"ca = {ca}\n", True),
                                  ("noverify", "verify = false\n", True)):
            root = make_root(tmp_path / name)
            write_service(root, "svc", SVC)
            write_node_conf(root, url=url, token="tok", extra=extra)
            proc = om(root, "runner", "tick", "--now", NOW)
            assert proc.returncode == 0, proc.stderr
            rows = pushes(root)
            assert rows and all((r["sent_at"] is not None) == sent for r in rows), (name, rows)
            if not sent:
                assert all(r["last_error"].startswith("TLS: ") and "certificate verify failed" in r["last_error"]
                           for r in rows), rows
