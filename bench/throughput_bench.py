"""Throughput bench: N tasks of `true` due in the same minute (issue 13).

Usage: python bench/throughput_bench.py [--sizes 10,100,1000] [--modes daemon,tick]
                                        [--dbs sqlite,postgresql] [--max-running 6]
                                        [--pg-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres]

For each size N, database and mode it builds an OM_ROOT (10 tasks per service,
`command = true`, all due at the same minute) and measures, until every run
is `done`:
  - wall time from the due second (daemon) or from the tick's start (tick mode),
  - CPU ms per run: tick, supervisor (or daemon) and the commands together,
    from the process accounting of the bench's descendants (the bench is a
    child subreaper, so the detached supervisor is counted too),
  - runs per second, and launch latency percentiles (the service log's
    millisecond stamp of each run's command line, minus the due second).
In the same run, and at the same concurrency (`--max-running`):
  - cron-like: fork/exec of `/bin/sh -c true` N times,
  - APScheduler (the `bench` extra): N date-triggered jobs each running
    `true` through subprocess, on a thread pool of the same size.
Daemon mode waits for a real minute boundary (the daemon reads the clock);
tick mode uses `--now`.  Figures only: nothing here is an assertion.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

TASKS_PER_SERVICE = 10
PR_SET_CHILD_SUBREAPER = 36
STAMP = re.compile(rb"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) \S+ run=(\d+) \S+\s+INFO\s+true$", re.M)


def write_root(base: Path, n: int, due: datetime, max_running: int) -> Path:
    root = base / "omroot"
    etc = root / "etc"
    etc.mkdir(parents=True)
    (etc / "node.conf").write_text(f"[node]\nmax_running = {max_running}\n")
    for s in range((n + TASKS_PER_SERVICE - 1) // TASKS_PER_SERVICE):
        lines = ["[DEFAULT]", "nodes = n1", "topology = flex", "status_schedule = @0", ""]
        for t in range(min(TASKS_PER_SERVICE, n - s * TASKS_PER_SERVICE)):
            lines += [f"[task#{t}]", "command = true", f"schedule = {due:%H:%M}", ""]
        (etc / f"s{s:05d}.conf").write_text("\n".join(lines))
    return root


def env_for(root: Path, url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OM_")}
    env.update(OM_ROOT=str(root), OM_NODENAME="n1", TZ="UTC")
    if url:
        env["OM_DB_URL"] = url
    return env


def om(*args: str) -> list[str]:
    return [sys.executable, "-m", "omtasks", *args]


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def reap_orphans() -> None:
    """Reap the detached descendants that were reparented to this subreaper (their CPU then counts)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.05)


def engine_for(root: Path, url: str | None):
    from sqlalchemy import create_engine

    return create_engine(url or f"sqlite:///{root / 'var' / 'om.db'}")


def count_done(engine) -> int:
    from sqlalchemy import text

    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM runs WHERE action = 'run' AND state = 'done'")).scalar()


def wait_done(engine, n: int, timeout: float) -> float:
    """Monotonic instant at which all n runs were seen done."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if count_done(engine) >= n:
                return time.monotonic()
        except Exception:  # the database is busy or not created yet
            pass
        time.sleep(0.05)
    raise SystemExit(f"bench: not all {n} runs done within {timeout:.0f} s")


def latencies(root: Path, due_epoch: float) -> list[float]:
    """Per run: seconds from `due_epoch` to the service log's stamp of its command line."""
    out = []
    for path in (root / "var" / "log").glob("s*.log"):
        for m in STAMP.finditer(path.read_bytes()):
            t = datetime.strptime(m.group(1).decode(), "%Y-%m-%d %H:%M:%S").timestamp() + int(m.group(2)) / 1000
            out.append(t - due_epoch)
    return out


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def report(label: str, n: int, wall: float, cpu: float, lat: list[float]) -> None:
    lat_ms = [x * 1000 for x in lat]
    print(f"{label:<28} N={n:<5} wall {wall:7.2f} s  {n / wall:7.1f} runs/s  cpu {cpu * 1000 / n:7.2f} ms/run"
          + (f"  latency p50 {pct(lat_ms, 50):7.1f} ms p99 {pct(lat_ms, 99):7.1f} ms max {max(lat_ms):7.1f} ms"
             if lat_ms else ""), flush=True)


def next_due(lead: float) -> datetime:
    """The first minute boundary at least `lead` seconds from now (local time = UTC here)."""
    t = datetime.now().replace(second=0, microsecond=0) + timedelta(minutes=1)
    while (t - datetime.now()).total_seconds() < lead:
        t += timedelta(minutes=1)
    return t


def proc_cpu(pid: int) -> float:
    """utime+stime+cutime+cstime of a live process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def bench_daemon(n: int, url: str | None, max_running: int) -> None:
    base = Path(tempfile.mkdtemp(prefix="om-tput-"))
    try:
        lead = 15 + n / 150  # the daemon's first pass evaluates every entry
        due = next_due(lead)
        root = write_root(base, n, due, max_running)
        env = env_for(root, url)
        subprocess.run(om("db", "upgrade"), env=env, check=True, stdout=subprocess.DEVNULL)
        proc = subprocess.Popen(om("runner", "daemon"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        engine = engine_for(root, url)
        due_epoch = due.timestamp()
        time.sleep(max(0.0, due_epoch - 0.5 - time.time()))
        cpu0 = proc_cpu(proc.pid)
        mono_due = time.monotonic() + (due_epoch - time.time())
        end = wait_done(engine, n, 600)
        cpu = proc_cpu(proc.pid) - cpu0
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        engine.dispose()
        report(f"om daemon {'pg' if url else 'sqlite'}", n, end - mono_due, cpu, latencies(root, due_epoch))
    finally:
        shutil.rmtree(base, ignore_errors=True)


def bench_tick(n: int, url: str | None, max_running: int) -> None:
    base = Path(tempfile.mkdtemp(prefix="om-tput-"))
    try:
        due = datetime(2026, 11, 27, 12, 0)
        root = write_root(base, n, due, max_running)
        env = env_for(root, url)
        # prime: the entries are planned (as a node does minute after minute), nothing is due
        subprocess.run(om("runner", "tick", "--now", "2026-11-27 11:59:00"), env=env, check=True)
        reap_orphans()
        engine = engine_for(root, url)
        cpu0 = children_cpu()
        start_epoch, start = time.time(), time.monotonic()
        subprocess.run(om("runner", "tick", "--now", "2026-11-27 12:00:00"), env=env, check=True)
        end = wait_done(engine, n, 600)
        while True:  # the supervisor exits once idle; then its CPU is accounted to us
            reap_orphans()
            try:
                os.kill(int((root / "var" / "run" / "supervisor.n1.lock").read_text().split()[0]), 0)
            except (OSError, ValueError, IndexError):
                break
            time.sleep(0.1)
        reap_orphans()
        cpu = children_cpu() - cpu0
        engine.dispose()
        report(f"om tick {'pg' if url else 'sqlite'}", n, end - start, cpu, latencies(root, start_epoch))
    finally:
        shutil.rmtree(base, ignore_errors=True)


def bench_cron(n: int, max_running: int) -> None:
    cpu0, start = children_cpu(), time.monotonic()
    lat: list[float] = []
    running: list[subprocess.Popen] = []
    for _ in range(n):
        while len(running) >= max_running:
            running.pop(0).wait()
        lat.append(time.monotonic() - start)
        running.append(subprocess.Popen(["/bin/sh", "-c", "true"]))
    for p in running:
        p.wait()
    report("cron-like fork/exec", n, time.monotonic() - start, children_cpu() - cpu0, lat)


def bench_apscheduler(n: int, max_running: int) -> None:
    try:
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler
    except ImportError:
        print("APScheduler: not installed (pip install 'om[bench]')")
        return
    done = threading.Semaphore(0)
    lat: list[float] = []
    due = datetime.now() + timedelta(seconds=2)
    due_epoch = due.timestamp()

    def job() -> None:
        lat.append(time.time() - due_epoch)
        subprocess.run(["true"])
        done.release()

    sched = BackgroundScheduler(executors={"default": ThreadPoolExecutor(max_running)},
                                job_defaults={"misfire_grace_time": None, "coalesce": False})
    for _ in range(n):
        sched.add_job(job, "date", run_date=due)
    self0 = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = children_cpu() + self0.ru_utime + self0.ru_stime
    sched.start()
    time.sleep(max(0.0, due_epoch - time.time()))
    start = time.monotonic()
    for _ in range(n):
        done.acquire()
    wall = time.monotonic() - start
    self1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = children_cpu() + self1.ru_utime + self1.ru_stime - cpu0
    sched.shutdown()
    report("APScheduler subprocess", n, wall, cpu, lat)


def pg_database(admin_url: str):
    """A fresh database on the server of `admin_url` (URL, drop function), or (None, None) when unreachable."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"om_tput_{os.getpid()}_{time.time_ns() % 10**9}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # unreachable server: the PostgreSQL rows are skipped
        print(f"PostgreSQL unavailable ({exc.__class__.__name__}): skipped")
        admin.dispose()
        return None, None

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return make_url(admin_url).set(database=name).render_as_string(hide_password=False), drop


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10,100,1000")
    ap.add_argument("--modes", default="daemon,tick")
    ap.add_argument("--dbs", default="sqlite,postgresql")
    ap.add_argument("--max-running", type=int, default=6)
    ap.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    args = ap.parse_args()
    os.environ["TZ"] = "UTC"
    time.tzset()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    print(f"load: {os.getloadavg()}  max_running={args.max_running}", flush=True)
    for n in [int(x) for x in args.sizes.split(",")]:
        bench_cron(n, args.max_running)
        bench_apscheduler(n, args.max_running)
        for db in args.dbs.split(","):
            for mode in args.modes.split(","):
                url, drop = (None, None) if db == "sqlite" else pg_database(args.pg_url)
                if db != "sqlite" and url is None:
                    continue
                try:
                    (bench_daemon if mode == "daemon" else bench_tick)(n, url, args.max_running)
                finally:
                    if drop is not None:
                        drop()
    print(f"load: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
