"""Schedule engine benchmark: microseconds per next_run and validate on parsed schedules.

Usage: python bench/schedule_bench.py [--repeat N]

Each schedule is parsed once, then evaluated many times with the fixed
(now, last) inputs printed beside its figures; the median of `--repeat` timed
batches is reported.  A second line per schedule evaluates 1,000 random
(now, last) pairs (seed 1) for information.  croniter's own get_next figure for
the cron expression is measured in the same run as the baseline.
Targets (SPEC 14): median next_run <= 20 us and validate <= 10 us for every
networker schedule.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from datetime import UTC, datetime, timedelta

from croniter import croniter

from omtasks.schedule import parse_schedule

SCHEDULES = [
    "09:00",
    "00:00-23:59@10m",
    "~00:00-06:00@1h mon-fri",
    "16:00-17:00@1m sat:last,tue-mon:last * %2+1,feb-apr",
    '["06:00-07:00@1h *:1,*:-1", "! * * * feb"]',
    "@60",
    "cron */10 * * * *",
]
NOW = datetime(2026, 11, 27, 18, 40, 7, tzinfo=UTC)
LAST = datetime(2026, 11, 27, 16, 5, 0, tzinfo=UTC)


def per_call_us(fn, batch: int, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(batch):
            fn()
        samples.append((time.perf_counter() - t0) / batch * 1e6)
    return statistics.median(samples)


def random_pairs(seed: int = 1, count: int = 1000) -> list[tuple[datetime, datetime | None]]:
    rng = random.Random(seed)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    pairs = []
    for _ in range(count):
        now = base + timedelta(seconds=rng.randrange(0, 3 * 365 * 86400))
        last = None if rng.random() < 0.2 else now - timedelta(seconds=rng.randrange(0, 10 * 86400))
        pairs.append((now, last))
    return pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--batch", type=int, default=2000)
    args = ap.parse_args()
    pairs = random_pairs()
    print(f"fixed inputs: now={NOW.isoformat()} last={LAST.isoformat()}; random: 1000 pairs, seed 1")
    print(f"{'schedule':<58} {'next_run us':>11} {'validate us':>11} {'rand next us':>12}")
    worst_next = worst_validate = 0.0
    for text in SCHEDULES:
        s = parse_schedule(text)
        nxt = per_call_us(lambda s=s: s.next_run(NOW, LAST), args.batch, args.repeat)
        val = per_call_us(lambda s=s: s.validate(NOW, LAST), args.batch, args.repeat)
        t0 = time.perf_counter()
        for now, last in pairs:
            s.next_run(now, last)
        rand = (time.perf_counter() - t0) / len(pairs) * 1e6
        print(f"{text:<58} {nxt:>11.2f} {val:>11.2f} {rand:>12.2f}")
        if s.dialect == "networker":
            worst_next, worst_validate = max(worst_next, nxt), max(worst_validate, val)
    it = croniter("*/10 * * * *", NOW.replace(tzinfo=None))
    base = per_call_us(lambda: croniter("*/10 * * * *", NOW.replace(tzinfo=None)).get_next(datetime),
                       args.batch // 4, args.repeat)
    step = per_call_us(lambda: it.get_next(datetime), args.batch, args.repeat)
    print(f"{'croniter baseline: construct + get_next (*/10 * * * *)':<58} {base:>11.2f}")
    print(f"{'croniter baseline: get_next on a live iterator':<58} {step:>11.2f}")
    print(f"worst networker median: next_run {worst_next:.2f} us (target 20), "
          f"validate {worst_validate:.2f} us (target 10)")


if __name__ == "__main__":
    main()
