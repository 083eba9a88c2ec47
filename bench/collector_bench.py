"""Collector benchmark: ingest beside a bare Starlette app, reads at scale, memory under big pushes (issues 8, 11, 13).

Usage: python bench/collector_bench.py [--parts ingest,reads,rss] [--pushes 6000] [--clients 20]
                                       [--nodes 1000] [--services 20] [--tasks 5] [--history 1000000]

Every part runs a real `om collector serve` (the `om` next to this Python) on
127.0.0.1 with a fresh SQLite database in a temporary directory, and talks
HTTP/1.1 to it from separate client processes (keep-alive, one connection per
client), so the clients' CPU is not the server's.

- ingest: `--clients` clients send `--pushes` status pushes in all (distinct
  nodes' tokens, 2 KB payloads); pushes/s (wall, first send to last answer)
  and latency percentiles.  The same load against a bare Starlette app on the
  same uvicorn (one route answering 201 `{"stored": true}` after reading the
  body) is the floor.
- reads: `--nodes` x `--services` x `--tasks` is stored as it arrives (status
  and resinfo pushes through POST /v1/push), then `--history` older pushes are
  added straight into the `pushes` table (as months of status pushes would be).
  Timed, as a viewer or a node would ask: `GET /` (the fleet page), `GET
  /services/<one>`, `GET /metrics` (first build, then a scrape), `GET
  /v1/services` (first page, a middle page, every page), `GET /v1/pushes` (a
  page), 20 times each after one warm-up, median and max.
- rss: 40 config pushes of 15 MB, then 200 parallel `GET /v1/pushes` asking for
  them (each page holds one); the server's peak RSS (VmHWM) before and after.

Every number is printed; nothing is asserted.  The machine is shared: `uptime`
is printed before and after each part.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import multiprocessing as mp
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

OM_BIN = str(Path(sys.executable).with_name("om"))

BARE_APP = '''
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

async def push(request):
    await request.body()
    return JSONResponse({"stored": True}, status_code=201)

app = Starlette(routes=[Route("/v1/push", push, methods=["POST"])])
'''


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit("server did not listen") from None
            time.sleep(0.05)


def env_for(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OM_")}
    env["OM_ROOT"] = str(root)
    return env


def om(root: Path, *args: str) -> str:
    proc = subprocess.run([OM_BIN, *args], env=env_for(root), capture_output=True, text=True, check=True)
    return proc.stdout.strip()


class Server:
    def __init__(self, args: list[str], env: dict[str, str], port: int) -> None:
        self.port = port
        self.proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_port(port, self.proc)

    def hwm_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def collector(root: Path, *extra: str) -> Server:
    port = free_port()
    return Server([OM_BIN, "collector", "serve", "--listen", f"127.0.0.1:{port}", *extra], env_for(root), port)


def status_body(node: str, service: str, created: datetime, pad: int = 0) -> bytes:
    payload = {"instance": "up", "frozen": False, "resources": [{"rid": "app#0", "status": "up"}]}
    if pad:
        payload["note"] = "x" * pad
    return json.dumps({"uuid": str(uuid.uuid4()), "node": node, "service": service, "kind": "status",
                       "created_at": created.isoformat(), "payload": payload}).encode()


def resinfo_body(node: str, service: str, created: datetime, tasks: int, rng: random.Random) -> bytes:
    resources = []
    for t in range(tasks):
        failed = rng.random() < 0.02
        ended = (created - timedelta(minutes=rng.randint(1, 600))).isoformat()
        resources.append({
            "rid": f"task#{t}", "command": f"/usr/local/bin/job{t} --flag", "user": None, "schedule": "@10m",
            "last_run": ended, "runs": {"done": rng.randint(10, 200), **({"failed": 1} if failed else {})},
            "last_success": ended if not failed else None,
            "recent": [{"id": rng.randint(1, 10**6), "state": "failed" if failed else "done",
                        "exit_code": 2 if failed else 0, "reason": "exit code 2" if failed else None,
                        "started_at": ended, "ended_at": ended}]})
    return json.dumps({"uuid": str(uuid.uuid4()), "node": node, "service": service, "kind": "resinfo",
                       "created_at": created.isoformat(), "payload": {"resources": resources}}).encode()


def _client(port: int, jobs: list[tuple[str, bytes]], out: mp.Queue, start: float) -> None:
    """One keep-alive connection sending `jobs` (token, body) in order; puts (latencies, statuses, end)."""
    while time.time() < start:
        time.sleep(0.001)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    lat, statuses = [], {}
    for token, body in jobs:
        t0 = time.perf_counter()
        conn.request("POST", "/v1/push", body=body, headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        lat.append(time.perf_counter() - t0)
        statuses[resp.status] = statuses.get(resp.status, 0) + 1
    conn.close()
    out.put((lat, statuses, time.time()))


def blast(port: int, jobs: list[tuple[str, bytes]], clients: int) -> dict:
    """Send `jobs` over `clients` processes; pushes/s and latency percentiles."""
    out: mp.Queue = mp.Queue()
    start = time.time() + 1.0
    procs = [mp.Process(target=_client, args=(port, jobs[i::clients], out, start)) for i in range(clients)]
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    lat = sorted(x for r in results for x in r[0])
    statuses: dict[int, int] = {}
    for r in results:
        for k, v in r[1].items():
            statuses[k] = statuses.get(k, 0) + v
    wall = max(r[2] for r in results) - start
    q = statistics.quantiles(lat, n=100)
    return {"requests": len(lat), "wall_s": round(wall, 2), "per_s": round(len(lat) / wall),
            "p50_ms": round(q[49] * 1000, 1), "p99_ms": round(q[98] * 1000, 1),
            "max_ms": round(lat[-1] * 1000, 1), "statuses": statuses}


def part_ingest(args: argparse.Namespace, tmp: Path) -> None:
    print(f"\n## ingest: {args.pushes} status pushes, {args.clients} parallel clients\n{uptime()}")
    root = tmp / "ingest"
    nodes = [f"n{i}" for i in range(args.clients * 5)]
    tokens = {n: om(root, "collector", "add-node", n) for n in nodes}
    now = datetime.now(UTC) - timedelta(minutes=1)
    jobs = [(tokens[nodes[i % len(nodes)]], status_body(nodes[i % len(nodes)], f"svc{i % 20}", now, pad=1800))
            for i in range(args.pushes)]
    bare_dir = tmp / "bare"
    bare_dir.mkdir()
    (bare_dir / "bare_app.py").write_text(BARE_APP)
    port = free_port()
    bare = Server([sys.executable, "-m", "uvicorn", "--app-dir", str(bare_dir), "bare_app:app", "--host",
                   "127.0.0.1", "--port", str(port), "--log-level", "warning"], os.environ.copy(), port)
    try:
        blast(port, jobs[:200], args.clients)
        cpu0 = bare.cpu_s()
        result = blast(port, jobs, args.clients)
        result["server_cpu_ms_per_request"] = round((bare.cpu_s() - cpu0) * 1000 / len(jobs), 2)
        print("bare starlette:", json.dumps(result))
    finally:
        bare.stop()
    server = collector(root)
    try:
        warm = [(t, status_body(n, "warm", now)) for n, t in list(tokens.items())[:200]]
        blast(server.port, warm, args.clients)
        cpu0 = server.cpu_s()
        result = blast(server.port, jobs, args.clients)
        result["server_cpu_ms_per_request"] = round((server.cpu_s() - cpu0) * 1000 / len(jobs), 2)
        print("om collector:  ", json.dumps(result))
        again = blast(server.port, jobs[: len(jobs) // 2], args.clients)
        print("om collector, the same uuids again (200 already stored):", json.dumps(again))
    finally:
        server.stop()
    print(uptime())


def timed_get(port: int, path: str, auth: str, n: int = 20) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    times, size, status, headers = [], 0, 0, {}
    for i in range(n + 1):
        t0 = time.perf_counter()
        conn.request("GET", path, headers={"Authorization": auth})
        resp = conn.getresponse()
        body = resp.read()
        elapsed = time.perf_counter() - t0
        status, size, headers = resp.status, len(body), dict(resp.getheaders())
        if i:
            times.append(elapsed)
    conn.close()
    return {"path": path, "status": status, "bytes": size, "median_ms": round(statistics.median(times) * 1000, 1),
            "max_ms": round(max(times) * 1000, 1), "link": headers.get("Link")}


def first_get_ms(port: int, path: str, auth: str) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    t0 = time.perf_counter()
    conn.request("GET", path, headers={"Authorization": auth})
    conn.getresponse().read()
    conn.close()
    return round((time.perf_counter() - t0) * 1000, 1)


def part_reads(args: argparse.Namespace, tmp: Path) -> None:
    print(f"\n## reads: {args.nodes} nodes x {args.services} services x {args.tasks} tasks, "
          f"+{args.history} stored pushes\n{uptime()}")
    root = tmp / "reads"
    password = om(root, "collector", "add-viewer", "bench")
    viewer = "Basic " + base64.b64encode(f"bench:{password}".encode()).decode()
    db = root / "var" / "collector.db"
    # node tokens in bulk: the same table add-node writes, one transaction
    import hashlib
    import secrets

    from sqlalchemy import create_engine, text

    engine = create_engine(f"sqlite:///{db}")
    tokens = {f"node{i:04d}": secrets.token_urlsafe(32) for i in range(args.nodes)}
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO collector_nodes (name, token_sha256, created_at) VALUES (:n, :t, :c)"),
                     [{"n": n, "t": hashlib.sha256(t.encode()).hexdigest(), "c": datetime.now(UTC).replace(
                         tzinfo=None)} for n, t in tokens.items()])
    engine.dispose()
    rng = random.Random(7)
    now = datetime.now(UTC) - timedelta(minutes=1)
    jobs = []
    for node, token in tokens.items():
        for s in range(args.services):
            jobs.append((token, status_body(node, f"svc{s:02d}", now)))
            jobs.append((token, resinfo_body(node, f"svc{s:02d}", now, args.tasks, rng)))
    server = collector(root)
    try:
        t0 = time.perf_counter()
        fill = blast(server.port, jobs, 20)
        print(f"stored {len(jobs)} current pushes through POST /v1/push in {time.perf_counter() - t0:.1f} s:",
              json.dumps(fill))
    finally:
        server.stop()
    if args.history:
        t0 = time.perf_counter()
        engine = create_engine(f"sqlite:///{db}")
        old = (now - timedelta(days=3)).replace(tzinfo=None)
        payload = json.dumps({"instance": "up", "frozen": False, "resources": [{"rid": "app#0", "status": "up"}]})
        names = list(tokens)
        with engine.begin() as conn:
            batch = []
            for i in range(args.history):
                batch.append({"u": str(uuid.uuid4()), "n": names[i % len(names)], "s": f"svc{i % args.services:02d}",
                              "c": old + timedelta(seconds=i // 100), "p": payload, "z": len(payload)})
                if len(batch) == 20000:
                    conn.execute(text("INSERT INTO pushes (uuid, node, service, kind, created_at, received_at, "
                                      "payload, size) VALUES (:u, :n, :s, 'status', :c, :c, :p, :z)"), batch)
                    batch = []
            if batch:
                conn.execute(text("INSERT INTO pushes (uuid, node, service, kind, created_at, received_at, "
                                  "payload, size) VALUES (:u, :n, :s, 'status', :c, :c, :p, :z)"), batch)
        with engine.connect() as conn:
            total = conn.execute(text("SELECT count(*) FROM pushes")).scalar()
        engine.dispose()
        print(f"added {args.history} older pushes in {time.perf_counter() - t0:.1f} s: {total} stored, "
              f"database {db.stat().st_size / 1e6:.0f} MB")
    server = collector(root)
    try:
        node_token = "Bearer " + tokens["node0000"]
        print("GET /metrics first build (ms):", first_get_ms(server.port, "/metrics", viewer))
        for path, auth in (("/", viewer), ("/services/svc07", viewer), ("/metrics", viewer),
                           ("/v1/services", node_token), ("/v1/services?limit=100", node_token),
                           ('/v1/services?after=["svc10","node0500","status"]', node_token),
                           ("/v1/pushes?limit=100", node_token),
                           ("/v1/pushes?node=node0042&limit=100", node_token)):
            result = timed_get(server.port, path, auth)
            result.pop("link")
            print(json.dumps(result))
        t0 = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=600)
        path, count, pages = "/v1/services?limit=5000", 0, 0
        while path:
            conn.request("GET", path, headers={"Authorization": node_token})
            resp = conn.getresponse()
            count += len(json.loads(resp.read()))
            pages += 1
            link = resp.getheader("Link")
            path = link[1:link.index(">")] if link else None
        conn.close()
        print(f"every page of /v1/services (limit 5000): {count} elements, {pages} pages, "
              f"{(time.perf_counter() - t0) * 1000:.0f} ms")
        print(f"server peak RSS {server.hwm_mb():.0f} MB")
    finally:
        server.stop()
    print(uptime())


def _getter(port: int, token: str, after: int, out: list, lock: threading.Lock, start: threading.Event) -> None:
    start.wait()
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    conn.request("GET", f"/v1/pushes?limit=1&after={after}", headers={"Authorization": f"Bearer {token}"})
    resp = conn.getresponse()
    size = 0
    while chunk := resp.read(1 << 20):
        size += len(chunk)
    conn.close()
    with lock:
        out.append((resp.status, size, time.perf_counter() - t0))


def part_rss(args: argparse.Namespace, tmp: Path) -> None:
    print(f"\n## rss: 40 pushes of 15 MB, 200 parallel GET /v1/pushes\n{uptime()}")
    root = tmp / "rss"
    token = om(root, "collector", "add-node", "n1")
    server = collector(root)
    try:
        now = datetime.now(UTC) - timedelta(minutes=1)
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=600)
        for i in range(40):
            body = json.dumps({"uuid": str(uuid.uuid4()), "node": "n1", "service": "big", "kind": "config",
                               "created_at": now.isoformat(), "payload": {"checksum": str(i),
                                                                         "text": "x" * 15_000_000}}).encode()
            conn.request("POST", "/v1/push", body=body, headers={"Authorization": f"Bearer {token}"})
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 201, resp.status
        conn.close()
        print(f"after 40 pushes: server peak RSS {server.hwm_mb():.0f} MB")
        out: list = []
        lock, start = threading.Lock(), threading.Event()
        threads = [threading.Thread(target=_getter, args=(server.port, token, i % 40, out, lock, start))
                   for i in range(200)]
        for t in threads:
            t.start()
        t0 = time.perf_counter()
        start.set()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        statuses = {s: sum(1 for o in out if o[0] == s) for s in {o[0] for o in out}}
        print(f"200 parallel GETs: {statuses}, {sum(o[1] for o in out) / 1e9:.2f} GB in {wall:.1f} s, "
              f"slowest {max(o[2] for o in out):.1f} s; server peak RSS {server.hwm_mb():.0f} MB")
    finally:
        server.stop()
    print(uptime())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="ingest,reads,rss")
    parser.add_argument("--pushes", type=int, default=6000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--services", type=int, default=20)
    parser.add_argument("--tasks", type=int, default=5)
    parser.add_argument("--history", type=int, default=1_000_000)
    args = parser.parse_args()
    print(f"# collector bench: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, {datetime.now(UTC):%Y-%m-%d %H:%M}Z")
    with tempfile.TemporaryDirectory(prefix="om-collector-bench-") as tmp:
        for part in args.parts.split(","):
            {"ingest": part_ingest, "reads": part_reads, "rss": part_rss}[part](args, Path(tmp))


if __name__ == "__main__":
    main()
