"""Wall-clock helpers shared by the engine, the runner and the CLI.

Schedules are evaluated on naive local wall-clock values; the database stores
naive UTC.  Every conversion between the two goes through this module so the
DST rules (gap shifted forward, ambiguous time = first occurrence) live in one
place.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class TimeOptionError(ValueError):
    """A time or zone given by a user cannot be understood."""


@lru_cache(maxsize=64)
def zone(name: str) -> tzinfo:
    """Return the zone called `name` ('UTC', 'Europe/Paris', ...)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise TimeOptionError(f"unknown time zone '{name}'") from exc


def local_zone() -> tzinfo:
    """The node's zone: $TZ, else /etc/localtime, else UTC."""
    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        try:
            return zone(name)
        except TimeOptionError:
            pass
    return _system_zone()


@lru_cache(maxsize=1)
def _system_zone() -> tzinfo:
    link = "/etc/localtime"
    try:
        target = os.path.realpath(link)
        marker = "/zoneinfo/"
        if marker in target:
            return zone(target.split(marker, 1)[1])
        with open(link, "rb") as f:
            return ZoneInfo.from_file(f, key="localtime")
    except (OSError, TimeOptionError, ValueError):
        return UTC


def zone_name(tz: tzinfo) -> str:
    return getattr(tz, "key", None) or str(tz)


def to_local_naive(dt: datetime, tz: tzinfo) -> datetime:
    """Aware instant -> naive wall-clock time in `tz`."""
    return dt.astimezone(tz).replace(tzinfo=None)


def from_local_naive(naive: datetime, tz: tzinfo) -> datetime:
    """Naive wall-clock time -> aware instant.

    A time inside a spring-forward gap moves forward by the gap (02:30 becomes
    03:30 in Europe/Paris); an ambiguous time is its first occurrence.
    """
    aware = naive.replace(tzinfo=tz, fold=0)
    back = aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None)
    if back == naive:
        return aware
    # Inside a gap: fold=0 used the offset before the gap, so the round trip
    # lands `gap` later, which is exactly the forward shift we want.
    return aware.astimezone(UTC).astimezone(tz)


def in_gap(naive: datetime, tz: tzinfo) -> bool:
    aware = naive.replace(tzinfo=tz, fold=0)
    return aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != naive


def to_utc_naive(dt: datetime) -> datetime:
    """Aware instant -> naive UTC, the storage form of every *_at column."""
    if dt.tzinfo is None:
        raise ValueError("naive datetime where an aware one is required")
    return dt.astimezone(UTC).replace(tzinfo=None)


def from_utc_naive(naive: datetime | None) -> datetime | None:
    """Stored naive UTC -> aware UTC."""
    if naive is None:
        return None
    return naive.replace(tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


_OPTION_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?$"
)


#: years a user time (--now, --from, --last, OM_NOW) may name: schedules are evaluated up to
#: 400 years past it, well inside the datetime range (docs/security.md)
MIN_YEAR, MAX_YEAR = 1970, 2999


def parse_time_option(text: str, tz: tzinfo) -> datetime:
    """Parse a user time: local 'YYYY-MM-DD HH:MM[:SS]' ('T' accepted) or with an offset.

    Without an offset an ambiguous local time is its first occurrence and a
    nonexistent one moves forward by the gap (SPEC 8.3).
    """
    shown = text if len(text) <= 64 else f"{text[:64]}..."
    m = _OPTION_RE.match(text.strip()) if len(text) <= 64 else None
    if not m:
        raise TimeOptionError(f"invalid time '{shown}' (expected YYYY-MM-DD HH:MM[:SS])")
    y, mo, d, h, mi, s, off = m.groups()
    if not MIN_YEAR <= int(y) <= MAX_YEAR:
        raise TimeOptionError(f"invalid time '{text}': year {int(y)} out of range {MIN_YEAR}-{MAX_YEAR}")
    try:
        naive = datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0))
    except ValueError as exc:
        raise TimeOptionError(f"invalid time '{text}': {exc}") from exc
    if off:
        if off == "Z":
            return naive.replace(tzinfo=UTC)
        sign = 1 if off[0] == "+" else -1
        digits = off[1:].replace(":", "")
        hours, minutes = int(digits[:2]), int(digits[2:])
        if hours > 23 or minutes > 59:
            raise TimeOptionError(f"invalid time '{text}': offset {off} out of range (-23:59 to +23:59)")
        delta = timedelta(hours=hours, minutes=minutes)
        return naive.replace(tzinfo=timezone(sign * delta)).astimezone(tz)
    try:
        return from_local_naive(naive, tz)
    except (OverflowError, ValueError) as exc:
        raise TimeOptionError(f"invalid time '{text}': {exc}") from exc


def read_now(tz: tzinfo | None = None, explicit: str | None = None) -> datetime:
    """The evaluation instant: `explicit` (--now), else $OM_NOW, else the clock; whole seconds."""
    tz = tz or local_zone()
    text = explicit or os.environ.get("OM_NOW")
    if text:
        value = parse_time_option(text, tz)
    else:
        value = datetime.now(tz)
    return value.replace(microsecond=0)


def iso(dt: datetime | None, tz: tzinfo) -> str | None:
    """ISO 8601 with offset in `tz` (JSON output)."""
    if dt is None:
        return None
    return dt.astimezone(tz).isoformat()


def show(dt: datetime | None, tz: tzinfo) -> str:
    """'YYYY-MM-DD HH:MM:SS' local time (table output), '-' for none."""
    if dt is None:
        return "-"
    return dt.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")
