"""Runner benchmark: wall time of real `om` processes over many services.

Usage: python bench/runner_bench.py [--sizes 100,1000,10000] [--repeat 5] [--keep DIR]

For each size (number of services, 10 tasks each) it builds an OM_ROOT with a
SQLite database, primes it with one tick, then measures (median of --repeat):
  - `om runner tick` with nothing due,
  - `om runner tick` with 100 tasks due (claims 100 runs, launches up to
    node.max_running workers; the services' `status` action is unscheduled so
    that only these 100 are due),
  - `om SVC print schedule` of one service,
next to `python -c "import sqlalchemy"` and `om --help` measured in the same
run as baselines.  Targets (SPEC 14): a tick with nothing due over 10,000
entries under 0.6 s wall, growing far slower than the task count; `om --help`
under 0.15 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TASKS_PER_SERVICE = 10
DUE = 100
PRIME = "2026-11-27 11:00:00"
QUIET = "2026-11-27 11:01:00"
DUE_AT = "2026-11-27 12:00:20"


def service_text(index: int, due: bool) -> str:
    # status_schedule = @0: the status action of every service would otherwise come due in the
    # same minutes (all services are created at once) and hide the task figures
    lines = ["[DEFAULT]", "nodes = n1", "topology = flex", "status_schedule = @0", ""]
    for t in range(TASKS_PER_SERVICE):
        # one task in ten of the first services is due at 12:00; the others wait for 03:00
        schedule = "12:00" if due and t == 0 else f"03:{t:02d}"
        lines += [f"[task#{t}]", "command = /bin/true", f"schedule = {schedule}", ""]
    return "\n".join(lines)


def timed(argv: list[str], env: dict[str, str], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def om_argv() -> list[str]:
    return [sys.executable, "-m", "omtasks"]


def build(root: Path, services: int) -> dict[str, str]:
    etc = root / "etc"
    etc.mkdir(parents=True)
    due_services = DUE  # one due task in each of the first 100 services
    for i in range(services):
        (etc / f"svc{i:05d}.conf").write_text(service_text(i, i < due_services))
    env = dict(os.environ, OM_ROOT=str(root), OM_NODENAME="n1", TZ="UTC")
    env.pop("OM_DB_URL", None)
    (etc / "node.conf").write_text("[node]\nmax_running = 6\n")
    t0 = time.perf_counter()
    subprocess.run([*om_argv(), "runner", "tick", "--now", PRIME], env=env, check=True)
    print(f"  prime tick (parse {services} files, plan {services * TASKS_PER_SERVICE} entries): "
          f"{time.perf_counter() - t0:.2f} s")
    return env


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,1000,10000", help="numbers of services (10 tasks each)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--keep", help="build the roots in this directory and keep them")
    args = ap.parse_args()
    env0 = dict(os.environ)
    print(f"python -c 'import sqlalchemy': {timed([sys.executable, '-c', 'import sqlalchemy'], env0, args.repeat):.3f} s")
    print(f"python -c 'pass':             {timed([sys.executable, '-c', 'pass'], env0, args.repeat):.3f} s")
    print(f"om --help:                    {timed([*om_argv(), '--help'], env0, args.repeat):.3f} s (target 0.15)")
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="om-bench-"))
    try:
        print(f"{'tasks':>8} {'tick idle s':>12} {'tick 100 due s':>15} {'print schedule s':>17}")
        for services in (int(s) for s in args.sizes.split(",")):
            root = base / f"root{services}"
            if root.exists():
                shutil.rmtree(root)
            env = build(root, services)
            idle = timed([*om_argv(), "runner", "tick", "--now", QUIET], env, args.repeat)
            t0 = time.perf_counter()
            subprocess.run([*om_argv(), "runner", "tick", "--now", DUE_AT], env=env, check=True)
            due = time.perf_counter() - t0
            show = timed([*om_argv(), "svc00000", "print", "schedule"], env, args.repeat)
            print(f"{services * TASKS_PER_SERVICE:>8} {idle:>12.3f} {due:>15.3f} {show:>17.3f}")
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
