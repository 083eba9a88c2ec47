"""Cluster claim benchmark: claims per second and duplicates with concurrent runners (SPEC 8.4, 14).

Usage: python bench/cluster_bench.py [--slots 10000] [--runners 4] [--entries 50] [--db sqlite,postgresql]

Method.  One fresh database per dialect (a SQLite file in a temporary
directory; a new PostgreSQL database created from OM_TEST_PG_URL, default the
local server, dropped afterwards: skipped with a printed note when
unreachable).  `--entries` cluster-scoped entries (service `bench`, action
`run`, rids `task#0...`) share `--slots` slots: entry e has slots k = 0..K-1
(K = slots / entries) scheduled at 2026-11-27 00:00 + k minutes.  `--runners`
processes (distinct node names r1..r4), started together, walk the same order
(k outer, entries inner), as ticks of several nodes evaluating the same
entries would.  For each (entry, k) a runner does what a tick and its worker do:

1. evaluate: read the entry's marker; if it is already at or past slot k's
   time, the slot is not due any more (another runner ran it): skip;
2. claim: `omtasks.db.runs.claim(...)` for slot k with the marker read in 1 as
   `expected_marker`, as the tick does (the real claim: marker row locked, a
   marker moved since the evaluation loses, slot key from the re-read marker,
   partial unique index);
3. if it won: `eligible -> running` (the marker moves to slot k) and
   `running -> done`, one transaction each, as a worker would.

Figures: claim calls per second (all runners, wall clock from the common start
to the last runner's end), won claims per second, and, read from the database
afterwards: runs (one per slot at most; a slot whose every runner found the
previous run still live ends `skipped`, `max_parallel`, and the bench never
returns to it), duplicate slot keys among runs that are not skipped/cancelled, runs
sharing a `scheduled_for` per entry (the two "exactly once" checks), runs per
slot beyond one, and "stale" runs whose `scheduled_for` is not a slot time
(a claim that re-read a marker moved since its evaluation and took the next
slot at marker + 1 s, SPEC 8.4).  Every number is printed; nothing is asserted.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import shutil
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
BASE = datetime(2026, 11, 27, 0, 0, 0, tzinfo=UTC)
SERVICE = "bench"


def slot_time(k: int) -> datetime:
    return BASE + timedelta(minutes=k)


def runner(url: str, node: str, entries: int, per_entry: int, start_at: float, queue) -> None:
    from omtasks import statemachine as sm
    from omtasks.db import open_engine
    from omtasks.db.markers import read_marker
    from omtasks.db.runs import claim, transition

    root = Path(tempfile.mkdtemp(prefix=f"omb-{node}-"))
    engine = open_engine(url, root=root)
    stats = Counter()
    while time.time() < start_at:
        time.sleep(0.001)
    t0 = time.perf_counter()
    for k in range(per_entry):
        sf = slot_time(k)
        now = sf + timedelta(seconds=1)
        for e in range(entries):
            rid = f"task#{e}"
            with engine.connect() as conn:
                marker = read_marker(conn, SERVICE, "run", rid, "").last_attempt_at
            if marker is not None and marker >= sf:
                stats["not_due"] += 1
                continue
            result = claim(engine, service=SERVICE, action="run", rid=rid, scope="", node=node, now=now,
                           scheduled_for=sf, max_parallel=1, confirmation_timeout=None, actor=f"bench@{node}",
                           placement_epoch=1, expected_marker=marker)
            stats["claims"] += 1
            stats[result.verdict] += 1
            if result.verdict != "due":
                continue
            with engine.begin() as conn:
                transition(conn, result.run_id, sm.ELIGIBLE, sm.RUNNING, reason=None, actor=node, now=now)
            with engine.begin() as conn:
                transition(conn, result.run_id, sm.RUNNING, sm.DONE, reason=None, actor=node, now=now,
                           exit_code=0)
    stats["seconds"] = time.perf_counter() - t0
    engine.dispose()
    shutil.rmtree(root, ignore_errors=True)
    queue.put((node, dict(stats)))


def check(url: str, per_entry: int) -> dict[str, int]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT rid, slot_key, scheduled_for, state FROM runs WHERE service = :s"), {"s": SERVICE}).fetchall()
    engine.dispose()
    kept = [r for r in rows if r.state not in ("skipped", "cancelled")]

    def stamp(value) -> str:
        return str(value)[:19].replace("T", " ")

    slot_times = {stamp(slot_time(k).replace(tzinfo=None)) for k in range(per_entry)}
    per_slot = Counter((r.rid, stamp(r.scheduled_for)) for r in kept)
    return {
        "runs": len(kept),
        "dup_keys": sum(n - 1 for n in Counter(r.slot_key for r in kept).values() if n > 1),
        "dup_times": sum(n - 1 for n in per_slot.values() if n > 1),
        "stale": sum(1 for r in kept if stamp(r.scheduled_for) not in slot_times),
        "skipped": sum(1 for r in rows if r.state == "skipped"),
    }


def bench(url: str, args) -> dict:
    from omtasks.db import open_engine

    tmp = Path(tempfile.mkdtemp(prefix="omb-"))
    open_engine(url, root=tmp).dispose()  # create the schema before the runners start
    per_entry = args.slots // args.entries
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    start_at = time.time() + 3.0  # let every process import before the common start
    procs = [ctx.Process(target=runner, args=(url, f"r{i + 1}", args.entries, per_entry, start_at, queue))
             for i in range(args.runners)]
    for p in procs:
        p.start()
    results = dict(queue.get() for _ in procs)
    for p in procs:
        p.join()
    wall = max(r["seconds"] for r in results.values())
    claims = sum(r.get("claims", 0) for r in results.values())
    won = sum(r.get("due", 0) for r in results.values())
    found = check(url, per_entry)
    shutil.rmtree(tmp, ignore_errors=True)
    return {"slots": per_entry * args.entries, "claims": claims, "won": won, "wall": wall,
            "lost": sum(r.get("claimed_elsewhere", 0) for r in results.values()),
            "not_due": sum(r.get("not_due", 0) for r in results.values()),
            "max_parallel": sum(r.get("max_parallel", 0) for r in results.values()), **found}


def pg_database(admin_url: str):
    """(url of a new database, drop function), or (None, reason) when PostgreSQL is unreachable."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = make_url(admin_url)
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any driver or network error means unreachable
        engine.dispose()
        return None, f"PostgreSQL unreachable at {admin.render_as_string(hide_password=True)}: {exc}"
    name = f"om_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()

    return admin.set(database=name).render_as_string(hide_password=False), drop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=10000)
    parser.add_argument("--runners", type=int, default=4)
    parser.add_argument("--entries", type=int, default=50)
    parser.add_argument("--db", default="sqlite,postgresql")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpu(s), python {platform.python_version()}; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{args.runners} runner processes, {args.entries} cluster-scoped entries, "
          f"{args.slots // args.entries} slots each")
    rows = []
    for dialect in args.db.split(","):
        if dialect == "sqlite":
            tmp = Path(tempfile.mkdtemp(prefix="omb-sqlite-"))
            rows.append(("SQLite", bench(f"sqlite:///{tmp}/om.db", args)))
            shutil.rmtree(tmp, ignore_errors=True)
        elif dialect == "postgresql":
            url, drop = pg_database(os.environ.get("OM_TEST_PG_URL", PG_DEFAULT))
            if url is None:
                print(f"note: PostgreSQL skipped: {drop}")
                continue
            try:
                rows.append(("PostgreSQL", bench(url, args)))
            finally:
                drop()
    header = ("database", "slots", "claim calls", "won", "lost", "max_par", "not due", "wall s", "claims/s",
              "won/s", "dup keys", "dup times", "stale")
    table = [header]
    for name, r in rows:
        table.append((name, str(r["slots"]), str(r["claims"]), str(r["won"]), str(r["lost"]),
                      str(r["max_parallel"]), str(r["not_due"]),
                      f"{r['wall']:.1f}", f"{r['claims'] / r['wall']:.0f}", f"{r['won'] / r['wall']:.0f}",
                      str(r["dup_keys"]), str(r["dup_times"]), str(r["stale"])))
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


if __name__ == "__main__":
    main()
