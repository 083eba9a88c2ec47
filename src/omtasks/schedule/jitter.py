"""The stable offset of probabilistic (`~`) windows (SPEC 4.4).

The delay is a hash of (node, service, entry, window start): reproducible, so
previews show the real start, and spread, so nodes and services do not all
start at the window's opening.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, tzinfo

from omtasks.schedule.networker import NetworkerSchedule, from_seconds, naive_seconds
from omtasks.timeutil import from_local_naive, to_local_naive


def offset(node: str, service: str, key: str, window_start: datetime, length: int) -> int:
    """Seconds into the window: sha256 of the key, modulo the window length."""
    text = f"{node}|{service}|{key}|{window_start:%Y-%m-%dT%H:%M:%S}"
    h = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")
    return h % length if length >= 1 else 0


def jittered_start(schedule: NetworkerSchedule, t: datetime, *, node: str, service: str, key: str) -> datetime | None:
    """The offset start `hs` of the `~` window holding instant `t`, or None when `t` is not in one."""
    tz: tzinfo = t.tzinfo
    window = schedule.window_holding(int(naive_seconds(to_local_naive(t, tz))))
    if window is None:
        return None
    ws = from_seconds(window.start)
    hs = window.at(offset(node, service, key, ws, window.length))
    return from_local_naive(from_seconds(hs), tz)
