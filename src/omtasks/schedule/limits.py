"""Bounds every schedule value is checked against at parse time (docs/security.md).

A value that passes the parser can be evaluated for any instant between the
years 1970 and 2999 (the range of `--now`) without overflowing a date: the
largest interval, anacron period and delay keep `last + interval` and the
400-year search horizon of `next` far below year 9999.
"""

from __future__ import annotations

DAY = 86400

#: characters in one schedule value (a JSON list included)
MAX_CHARS = 4096
#: brackets a JSON list value may nest (a list of strings needs one)
MAX_NESTING = 8
#: members of a schedule list
MAX_MEMBERS = 64
#: digits of any number in a schedule (bigger numbers are refused before int())
MAX_DIGITS = 9
#: networker `@INTERVAL`: ten years
MAX_INTERVAL = 3660 * DAY
#: anacron period in days, and delay in minutes (one week)
MAX_ANACRON_PERIOD = 3660
MAX_ANACRON_DELAY = 7 * 24 * 60
#: networker month filter `%P+S`
MAX_MONTH_FILTER = 1200


def too_long(text: str, limit: int = MAX_DIGITS) -> bool:
    """True when a digit string has more than `limit` digits (leading zeros count)."""
    return len(text) > limit


def nesting_depth(text: str, limit: int) -> int | None:
    """0-based index of the first `[`/`{` that nests deeper than `limit` outside JSON strings, else None.

    A linear scan, so a thousand brackets never reach the recursive JSON decoder.
    """
    depth = 0
    in_string = escaped = False
    for i, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return i
        elif char in "]}":
            depth -= 1
    return None
