"""Parser of networker expressions: `[!] timeranges [days [weeks [months]]]`.

Strict: any malformed token raises ScheduleSyntaxError naming the token and its
1-based position in the value as the user gave it (`base` is the offset of the
expression inside that value).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from omtasks.schedule import limits
from omtasks.schedule.calendar import DateFilter, DayElement, MonthElement
from omtasks.schedule.errors import ScheduleSyntaxError
from omtasks.schedule.model import DAY, Member, TimeRange


def _digits(text: str) -> bool:
    """ASCII decimal digits only (str.isdigit() also accepts '²', which int() rejects)."""
    return text.isascii() and text.isdigit()


WEEKDAYS = {
    name: i
    for i, names in enumerate(
        (("mon", "monday"), ("tue", "tuesday"), ("wed", "wednesday"), ("thu", "thursday"),
         ("fri", "friday"), ("sat", "saturday"), ("sun", "sunday")),
        start=1,
    )
    for name in names
}
MONTHS = {
    name: i
    for i, names in enumerate(
        (("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"), ("may", "may"),
         ("jun", "june"), ("jul", "july"), ("aug", "august"), ("sep", "september"),
         ("oct", "october"), ("nov", "november"), ("dec", "december")),
        start=1,
    )
    for name in names
}
ORDINALS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5,
    "1st": 1, "2nd": 2, "3rd": 3, "4th": 4, "5th": 5, "last": -1,
}
_TIME_RE = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$", re.ASCII)
_DURATION_RE = re.compile(r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$", re.ASCII)
_INT_RE = re.compile(r"^[+-]?\d+$", re.ASCII)
_NAME_RE = re.compile(r"^[A-Za-z]+$", re.ASCII)
_UNIT_SECONDS = (7 * DAY, DAY, 3600, 60, 1)


class _Ctx:
    """The value being parsed, for error messages."""

    def __init__(self, value: object, base: int) -> None:
        self.value = value
        self.base = base

    def fail(self, detail: str, token: str, offset: int) -> ScheduleSyntaxError:
        return ScheduleSyntaxError(self.value, detail, token, self.base + offset + 1)

    def number(self, digits: str, token: str, offset: int) -> int:
        """int(digits), refusing more than limits.MAX_DIGITS digits (sign excluded) before converting."""
        if len(digits.lstrip("+-")) > limits.MAX_DIGITS:
            raise self.fail(f"number '{token}' too large (at most {limits.MAX_DIGITS} digits)", token, offset)
        return int(digits)


def _split(text: str, sep: str, offset: int) -> Iterator[tuple[str, int]]:
    """Split `text` on `sep`, yielding each piece with its offset."""
    pos = 0
    for piece in text.split(sep):
        yield piece, offset + pos
        pos += len(piece) + len(sep)


def _list(ctx: _Ctx, text: str, offset: int, what: str) -> Iterator[tuple[str, int]]:
    for piece, off in _split(text, ",", offset):
        if not piece:
            raise ctx.fail(f"empty element in {what} list '{text}'", text, offset)
        yield piece, off


def parse_duration(ctx: _Ctx, text: str, offset: int) -> int:
    """`@N` minutes or `<int><unit>` groups in w d h m s order; must be positive."""
    if not text:
        raise ctx.fail("empty interval after '@'", "@", offset - 1)
    if _digits(text):
        seconds = ctx.number(text, text, offset) * 60
    else:
        m = _DURATION_RE.match(text)
        if not m or not any(m.groups()):
            raise ctx.fail(
                f"invalid duration '{text}' (expected <int><unit>..., units s m h d w)", text, offset
            )
        seconds = sum(ctx.number(g, text, offset) * u for g, u in zip(m.groups(), _UNIT_SECONDS, strict=True) if g)
    if seconds <= 0:
        raise ctx.fail(f"interval '{text}' must be positive", text, offset)
    if seconds > limits.MAX_INTERVAL:
        raise ctx.fail(f"interval '{text}' too long (at most {limits.MAX_INTERVAL // DAY} days)", text, offset)
    return seconds


def _time(ctx: _Ctx, text: str, offset: int) -> int:
    m = _TIME_RE.match(text)
    if not m:
        raise ctx.fail(f"invalid time '{text}' (expected HH:MM or HH:MM:SS)", text, offset)
    h, mi, s = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
    if h > 23 or mi > 59 or s > 59:
        raise ctx.fail(f"time '{text}' out of range", text, offset)
    return h * 3600 + mi * 60 + s


def parse_range(ctx: _Ctx, text: str, offset: int) -> TimeRange:
    body, off = text, offset
    probabilistic = body.startswith("~")
    if probabilistic:
        body, off = body[1:], off + 1
    if body.count("@") > 1:
        raise ctx.fail(f"only one '@' allowed in '{text}'", text, offset)
    interval = None
    if "@" in body:
        body, _, itext = body.partition("@")
        interval = parse_duration(ctx, itext, off + len(body) + 1)
    if body in ("", "*"):
        begin, end, whole = 0, DAY - 1, True
    else:
        whole = False
        parts = body.split("-")
        if len(parts) > 2:
            raise ctx.fail(f"invalid time range '{body}'", body, off)
        begin = _time(ctx, parts[0], off)
        end = _time(ctx, parts[1], off + len(parts[0]) + 1) if len(parts) == 2 else begin
        if end == begin:
            end = (begin + 1) % DAY  # a single time covers itself and the next second
    return TimeRange.build(begin, end, interval, probabilistic, whole, text)


def _weekday(ctx: _Ctx, text: str, offset: int) -> int:
    low = text.lower()
    if low in WEEKDAYS:
        return WEEKDAYS[low]
    if _INT_RE.match(text):
        n = ctx.number(text, text, offset)
        if 1 <= n <= 7 and _digits(text):
            return n
        raise ctx.fail(f"weekday {text} out of range 1-7", text, offset)
    raise ctx.fail(f"unknown calendar name '{text}'", text, offset)


def _nth(ctx: _Ctx, text: str, offset: int, limit: int) -> int:
    low = text.lower()
    if low in ORDINALS:
        return ORDINALS[low]
    if not _INT_RE.match(text):
        raise ctx.fail(f"invalid day position '{text}'", text, offset)
    n = ctx.number(text, text, offset)
    if n == 0 or abs(n) > limit:
        raise ctx.fail(f"day position {text} out of range 1..{limit} or -{limit}..-1", text, offset)
    return n


def parse_days(ctx: _Ctx, text: str, offset: int) -> tuple[DayElement, ...] | None:
    if text == "*":
        return None
    elements = []
    for piece, off in _list(ctx, text, offset, "days"):
        head, colon, ntext = piece.partition(":")
        if colon and not ntext:
            raise ctx.fail(f"missing day position in '{piece}'", piece, off)
        weekdays = None if head in ("", "*") else _span(ctx, head, off, _weekday, 7, "weekday")
        if head == "" and not colon:
            raise ctx.fail(f"empty element in days list '{text}'", text, offset)
        nth = _nth(ctx, ntext, off + len(head) + 1, 31 if weekdays is None else 5) if colon else None
        elements.append(DayElement(weekdays, nth))
    return tuple(elements)


def _bounded_int(ctx: _Ctx, text: str, offset: int, low: int, high: int, what: str) -> int:
    if not _digits(text):
        raise ctx.fail(f"invalid {what} '{text}'", text, offset)
    n = ctx.number(text, text, offset)
    if not low <= n <= high:
        raise ctx.fail(f"{what} {text} out of range {low}-{high}", text, offset)
    return n


def _span(ctx: _Ctx, head: str, off: int, one, size: int, what: str) -> frozenset[int]:
    """A name or number, or a wrapping range `A-B` of them (`fri-mon`, `nov-feb`), as the set of values 1..size."""
    ends = head.split("-")
    if len(ends) > 2 or not all(ends):
        raise ctx.fail(f"invalid {what} range '{head}'", head, off)
    a = one(ctx, ends[0], off)
    b = one(ctx, ends[-1], off + len(ends[0]) + 1) if len(ends) == 2 else a
    return _wrapping(a, b, 1, size)


def _wrapping(a: int, b: int, low: int, high: int) -> frozenset[int]:
    size = high - low + 1
    return frozenset(low + (a - low + i) % size for i in range((b - a) % size + 1))


def parse_weeks(ctx: _Ctx, text: str, offset: int) -> frozenset[int] | None:
    if text == "*":
        return None
    weeks: set[int] = set()
    for piece, off in _list(ctx, text, offset, "weeks"):
        ends = piece.split("-")
        if len(ends) > 2:
            raise ctx.fail(f"invalid week range '{piece}'", piece, off)
        a = _bounded_int(ctx, ends[0], off, 1, 53, "week")
        b = _bounded_int(ctx, ends[-1], off + len(ends[0]) + 1, 1, 53, "week") if len(ends) == 2 else a
        weeks |= _wrapping(a, b, 1, 53)
    return frozenset(weeks)


def _month(ctx: _Ctx, text: str, offset: int) -> int:
    low = text.lower()
    if low in MONTHS:
        return MONTHS[low]
    if _NAME_RE.match(text):
        raise ctx.fail(f"unknown calendar name '{text}'", text, offset)
    return _bounded_int(ctx, text, offset, 1, 12, "month")


def parse_months(ctx: _Ctx, text: str, offset: int) -> tuple[MonthElement, ...] | None:
    if text == "*":
        return None
    elements = []
    for piece, off in _list(ctx, text, offset, "months"):
        head, pct, ftext = piece.partition("%")
        modulo, shift = None, 0
        if pct:
            ptext, plus, stext = ftext.partition("+")
            foff = off + len(head) + 1
            if not _digits(ptext) or not ptext.strip("0"):
                raise ctx.fail(f"invalid month filter '%{ftext}' (expected %P or %P+S, P >= 1)", ftext, foff)
            if plus and not _digits(stext):
                raise ctx.fail(f"invalid month filter '%{ftext}' (expected %P or %P+S, S >= 0)", ftext, foff)
            modulo, shift = ctx.number(ptext, ftext, foff), ctx.number(stext or "0", ftext, foff)
            if modulo > limits.MAX_MONTH_FILTER or shift > limits.MAX_MONTH_FILTER:
                raise ctx.fail(f"month filter '%{ftext}' out of range (P and S at most "
                               f"{limits.MAX_MONTH_FILTER})", ftext, foff)
        if head in ("", "*"):
            if head == "" and not pct:
                raise ctx.fail(f"empty element in months list '{text}'", text, offset)
            months = None
        else:
            months = _span(ctx, head, off, _month, 12, "month")
        elements.append(MonthElement(months, modulo, shift))
    return tuple(elements)


def parse_member(value: object, text: str, base: int) -> Member:
    """Parse one expression `text` found at offset `base` of `value`."""
    ctx = _Ctx(value, base)
    body, off = text, 0
    lead = len(body) - len(body.lstrip())
    body, off = body.strip(), lead
    exclude = body.startswith("!")
    if exclude:
        rest = body[1:]
        lead = len(rest) - len(rest.lstrip())
        body, off = rest.strip(), off + 1 + lead
        if not body:
            raise ctx.fail("'!' must be followed by an expression", "!", off - 1 - lead)
    if not body:
        raise ctx.fail("empty expression", text, 0)
    fields = [(m.group(0), off + m.start()) for m in re.finditer(r"\S+", body)]
    if len(fields) > 4:
        extra, eoff = fields[4]
        raise ctx.fail(f"too many fields ({len(fields)}) in '{text.strip()}'", extra, eoff)
    ranges_text, roff = fields[0]
    ranges = tuple(parse_range(ctx, piece, o) for piece, o in _list(ctx, ranges_text, roff, "time ranges"))
    days = parse_days(ctx, *fields[1]) if len(fields) > 1 else None
    weeks = parse_weeks(ctx, *fields[2]) if len(fields) > 2 else None
    months = parse_months(ctx, *fields[3]) if len(fields) > 3 else None
    return Member(exclude, ranges, DateFilter(days, weeks, months), text.strip())
