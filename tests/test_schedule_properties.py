"""Property tests of the schedule engine (hypothesis).

A small reference model of the networker language (written from the conformance
README, independently of the engine) judges generated schedules; cron is checked
against a brute-force minute scan.
"""

import calendar
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omtasks.schedule import ScheduleSyntaxError, parse_schedule

PARIS = ZoneInfo("Europe/Paris")
DAY = 86400
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
WEEKDAY_NAMES = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAY_LONG = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
MONTH_NAMES = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5,
            "1st": 1, "2nd": 2, "3rd": 3, "4th": 4, "5th": 5, "last": -1}


# -- reference model -------------------------------------------------------------------------


def _wrap(a, b, low, high):
    size = high - low + 1
    return {low + (a - low + i) % size for i in range((b - a) % size + 1)}


@dataclass
class Range:
    text: str
    spans: list  # [(a, b)] seconds of day, both included
    interval: int


@dataclass
class Member:
    text: str
    exclude: bool
    ranges: list
    days: list | None  # [(weekdays set | None, nth | None)]
    weeks: set | None
    months: list | None  # [(months set | None, P | None, S)]

    def date_ok(self, d):
        if self.months is not None and not any(
            (ms is None or d.month in ms) and (p is None or (d.month + s) % p == 0) for ms, p, s in self.months
        ):
            return False
        if self.weeks is not None and d.isocalendar()[1] not in self.weeks:
            return False
        if self.days is None:
            return True
        dim = calendar.monthrange(d.year, d.month)[1]
        for weekdays, nth in self.days:
            if weekdays is not None and d.isoweekday() not in weekdays:
                continue
            if nth is None:
                return True
            if weekdays is None:
                if d.day == (nth if nth > 0 else dim + 1 + nth):
                    return True
            elif nth > 0 and (d.day - 1) // 7 + 1 == nth:
                return True
            elif nth < 0 and (dim - d.day) // 7 + 1 == -nth:
                return True
        return False

    def covering(self, wall):
        """Ranges covering the naive wall-clock datetime `wall` (its own date is checked)."""
        if not self.date_ok(wall.date()):
            return []
        tod = wall.hour * 3600 + wall.minute * 60 + wall.second
        return [r for r in self.ranges if any(a <= tod <= b for a, b in r.spans)]


def ref_verdict(members, wall, last_wall):
    if any(m.exclude and m.covering(wall) for m in members):
        return "excluded"
    for m in members:
        if m.exclude:
            continue
        for r in m.covering(wall):
            if last_wall is None or (wall - last_wall).total_seconds() >= r.interval:
                return "allowed"
    return "not_allowed"


# -- strategies: valid networker values, rendered with their model --------------------------------

tods = st.integers(0, DAY - 1)


def _tod_text(tod, seconds):
    h, m, s = tod // 3600, tod % 3600 // 60, tod % 60
    return f"{h:02d}:{m:02d}:{s:02d}" if seconds or s else f"{h:02d}:{m:02d}"


@st.composite
def intervals(draw):
    if draw(st.booleans()):
        minutes = draw(st.integers(1, 600))
        return str(minutes), minutes * 60
    parts, total = [], 0
    for unit, size, top in (("w", 7 * DAY, 2), ("d", DAY, 3), ("h", 3600, 30), ("m", 60, 90), ("s", 1, 90)):
        if draw(st.integers(0, 3)) == 0:
            n = draw(st.integers(0, top))
            parts.append(f"{n}{unit}")
            total += n * size
    if total == 0:
        parts, total = ["1h"], 3600
    return "".join(parts), total


@st.composite
def time_ranges(draw):
    kind = draw(st.sampled_from(["star", "at", "single", "range", "range"]))
    interval = draw(st.none() | intervals())
    if kind in ("star", "at"):
        head = "*" if kind == "star" else ""
        if kind == "at" and interval is None:
            interval = draw(intervals())
        spans, length = [(0, DAY - 1)], DAY - 1
    else:
        begin = draw(tods.map(lambda t: t - t % 60) | tods)
        seconds = draw(st.booleans())
        if kind == "single":
            end = (begin + 1) % DAY
            head = _tod_text(begin, seconds)
        else:
            end = draw(tods.map(lambda t: t - t % 60) | tods)
            head = f"{_tod_text(begin, seconds)}-{_tod_text(end, seconds)}"
            if end == begin:
                end = (begin + 1) % DAY
        if begin > end:
            spans, length = [(0, end), (begin, DAY - 1)], end - begin + DAY
        else:
            spans, length = [(begin, end)], end - begin
        if draw(st.integers(0, 4)) == 0:
            head = "~" + head
    if interval is None:
        text, every = head, (DAY if kind == "star" else length + 1)
    else:
        text, every = f"{head}@{interval[0]}", interval[1]
    return Range(text, spans, every)


def _weekday_text(draw, n):
    return draw(st.sampled_from([str(n), WEEKDAY_NAMES[n - 1], WEEKDAY_LONG[n - 1], WEEKDAY_NAMES[n - 1].upper()]))


@st.composite
def day_elements(draw):
    kind = draw(st.sampled_from(["wd", "wdrange", "star"]))
    if kind == "star":
        text, weekdays = draw(st.sampled_from(["*", ""])), None
    else:
        a = draw(st.integers(1, 7))
        if kind == "wd":
            text, weekdays = _weekday_text(draw, a), {a}
        else:
            b = draw(st.integers(1, 7))
            text, weekdays = f"{_weekday_text(draw, a)}-{_weekday_text(draw, b)}", _wrap(a, b, 1, 7)
    nth = None
    if text == "" or draw(st.booleans()):
        if weekdays is None:
            nth = draw(st.integers(1, 31) | st.integers(-31, -1))
            ntext = draw(st.sampled_from([str(nth), f"+{nth}" if nth > 0 else str(nth)]))
        elif draw(st.booleans()):
            ntext = draw(st.sampled_from(sorted(ORDINALS)))
            nth = ORDINALS[ntext]
        else:
            nth = draw(st.integers(1, 5) | st.integers(-5, -1))
            ntext = str(nth)
        if ntext == "-1" and weekdays is None and draw(st.booleans()):
            ntext = "last"
        text = f"{text}:{ntext}"
    return text, (weekdays, nth)


@st.composite
def month_elements(draw):
    kind = draw(st.sampled_from(["one", "range", "star", "filter"]))
    if kind == "one":
        m = draw(st.integers(1, 12))
        text, months = draw(st.sampled_from([str(m), MONTH_NAMES[m - 1]])), {m}
    elif kind == "range":
        a, b = draw(st.integers(1, 12)), draw(st.integers(1, 12))
        text, months = f"{MONTH_NAMES[a - 1]}-{MONTH_NAMES[b - 1]}", _wrap(a, b, 1, 12)
    else:
        text, months = ("*" if kind == "star" else ""), None
    p, s = None, 0
    if kind == "filter" or draw(st.integers(0, 3)) == 0:
        p, s = draw(st.integers(1, 4)), draw(st.integers(0, 3))
        text += f"%{p}" + (f"+{s}" if s or draw(st.booleans()) else "")
    return text, (months, p, s)


@st.composite
def week_field(draw):
    if draw(st.integers(0, 2)):
        return "*", None
    parts, weeks = [], set()
    for _ in range(draw(st.integers(1, 3))):
        a = draw(st.integers(1, 53))
        if draw(st.booleans()):
            b = draw(st.integers(1, 53))
            parts.append(f"{a}-{b}")
            weeks |= _wrap(a, b, 1, 53)
        else:
            parts.append(str(a))
            weeks.add(a)
    return ",".join(parts), weeks


@st.composite
def members(draw, exclude=None):
    exclude = draw(st.integers(0, 3).map(lambda n: n == 0)) if exclude is None else exclude
    ranges = draw(st.lists(time_ranges(), min_size=1, max_size=3))
    nfields = draw(st.integers(1, 4))
    fields = [",".join(r.text for r in ranges)]
    days = weeks = months = None
    if nfields > 1:
        if draw(st.integers(0, 2)) == 0:
            fields.append("*")
        else:
            elements = draw(st.lists(day_elements(), min_size=1, max_size=3))
            fields.append(",".join(t for t, _ in elements))
            days = [e for _, e in elements]
    if nfields > 2:
        text, weeks = draw(week_field())
        fields.append(text)
    if nfields > 3:
        if draw(st.integers(0, 2)) == 0:
            fields.append("*")
        else:
            elements = draw(st.lists(month_elements(), min_size=1, max_size=2))
            fields.append(",".join(t for t, _ in elements))
            months = [e for _, e in elements]
    text = " ".join(fields)
    if exclude:
        text = draw(st.sampled_from(["!", "! "])) + text
    return Member(text, exclude, ranges, days, weeks, months)


@st.composite
def schedules(draw):
    """(value, [Member]): one expression, a JSON list text or a Python list."""
    ms = draw(st.lists(members(), min_size=1, max_size=3))
    if not any(not m.exclude for m in ms):
        ms.append(draw(members(exclude=False)))
    if len(ms) == 1 and not ms[0].exclude and draw(st.booleans()):
        value = ms[0].text
        if len(value.split()) == 5:  # unreachable (at most 4 fields), kept as a guard
            value = [value]
    else:
        value = draw(st.sampled_from([json.dumps([m.text for m in ms]), [m.text for m in ms]]))
    return value, ms


# -- instants ----------------------------------------------------------------------------------

DST_CHANGES = [datetime(y, m, d, 1, tzinfo=UTC) for y in (2026, 2027) for m, d in ((3, 29), (10, 25))]
DST_CHANGES[2:] = [datetime(2027, 3, 28, 1, tzinfo=UTC), datetime(2027, 10, 31, 1, tzinfo=UTC)]


@st.composite
def instants(draw):
    """UTC instants, whole seconds, often within a few hours of a Paris DST change."""
    if draw(st.booleans()):
        base = draw(st.sampled_from(DST_CHANGES))
        return base + timedelta(seconds=draw(st.integers(-4 * 3600, 4 * 3600)))
    return datetime(2020, 1, 1, tzinfo=UTC) + timedelta(seconds=draw(st.integers(0, 15 * 365 * DAY)))


@st.composite
def now_and_last(draw):
    now = draw(instants())
    last = None
    if draw(st.booleans()):
        last = now - timedelta(seconds=draw(st.integers(0, 3 * DAY) | st.integers(0, 40 * DAY)))
    return now, last


def wall(dt, tz):
    return dt.astimezone(tz).replace(tzinfo=None)


def in_gap(naive, tz):
    return naive.replace(tzinfo=tz).astimezone(UTC).astimezone(tz).replace(tzinfo=None) != naive


# -- (a) parse_schedule raises nothing but ScheduleSyntaxError -----------------------------------

TOKENS = ["*", "!", "~", "@", ":", "-", ",", "%", "+", "09:00", "23:59:59", "9:5", "24:00", "mon", "SUN",
          "friday", "mnday", "last", "1st", "fifth", "0", "1", "5", "7", "8", "13", "31", "32", "53", "54",
          "-1", "+2", "jan", "dec", "nov-feb", "@1h30m", "@90", "@0", "@1h30", "1d", "cron", "anacron",
          "@daily", "@weekly", "@monthly", "@yearly", "@hourly", "@reboot", "L", "W", "#", "?", "H", "*/5",
          "1-5/2", "[", "]", '"', "[]", "null", "1.5", "x", "é", "\u00a0", "%2+1", "mon:last", "*:-31"]


def _check_error(value, exc):
    shown = value if isinstance(value, str) else json.dumps(value)
    assert str(exc).startswith("invalid schedule '")
    assert isinstance(exc.token, str) and isinstance(exc.position, int)
    assert 1 <= exc.position <= len(shown) + 1, (value, exc.position)


def _exercise(value):
    try:
        s = parse_schedule(value)
    except ScheduleSyntaxError as exc:
        _check_error(value, exc)
        return
    assert s.dialect in ("networker", "cron", "anacron", "none")
    now = datetime(2026, 3, 29, 1, 30, tzinfo=PARIS)
    assert s.validate(now, None).verdict in ("allowed", "not_allowed", "excluded")
    assert s.validate(now, now - timedelta(hours=1), grace=60).reason
    t = s.next_run(now, now - timedelta(days=1))
    assert t is None or t.astimezone(UTC) >= now.astimezone(UTC)


@SETTINGS
@given(st.text(max_size=40))
def test_random_text_raises_only_syntax_errors(value):
    _exercise(value)


@SETTINGS
@given(st.lists(st.sampled_from(TOKENS), max_size=8), st.lists(st.sampled_from([" ", "", ",", "  ", "-"]), max_size=8))
def test_random_token_soup_raises_only_syntax_errors(tokens, seps):
    value = "".join(t + (seps[i] if i < len(seps) else " ") for i, t in enumerate(tokens))
    _exercise(value)
    _exercise(value.split())


# -- (b) next_run is the earliest allowed instant ----------------------------------------------


def _aware(naive, tz):
    return naive.replace(tzinfo=tz)


def _check_next(value, ms, tz, now, last, data):
    s = parse_schedule(value)
    now, last = now.astimezone(tz), (last.astimezone(tz) if last is not None else None)
    wn, wl = wall(now, tz), (wall(last, tz) if last is not None else None)
    t = s.next_run(now, last)
    if t is None:
        # never: no sampled wall-clock second of the next 30 years is allowed
        for _ in range(50):
            u = wn + timedelta(seconds=data.draw(st.integers(0, 30 * 365 * DAY)))
            assert ref_verdict(ms, u, wl) != "allowed", (value, u)
        return
    assert t.tzinfo is not None and t.microsecond == 0
    assert t.astimezone(UTC) >= now.astimezone(UTC), (value, now, t)
    wt = wall(t, tz)
    shifted = wt - timedelta(hours=1)
    if tz is not UTC and shifted >= wn and in_gap(shifted, tz) and ref_verdict(ms, shifted, wl) == "allowed":
        w = shifted  # the wall-clock answer is inside a spring-forward gap: shifted by the gap
        assert s.validate(_aware(w, tz), last).verdict == "allowed"
    else:
        w = wt
        assert s.validate(t, last).verdict == "allowed", (value, now, last, t)
        assert ref_verdict(ms, wt, wl) == "allowed", (value, now, last, t)
    span = int((w - wn).total_seconds())
    assert span >= 0
    samples = {data.draw(st.integers(0, span - 1)) for _ in range(200)} if span > 0 else set()
    samples |= set(range(max(0, span - 120), span))
    for k in samples:
        u = wn + timedelta(seconds=k)
        assert s.validate(_aware(u, tz), last).verdict != "allowed", (value, now, last, t, u)
        assert ref_verdict(ms, u, wl) != "allowed", (value, now, last, t, u)


@SETTINGS
@given(schedules(), now_and_last(), st.data())
def test_networker_next_run_utc(schedule, times, data):
    _check_next(*schedule, UTC, *times, data)


@SETTINGS
@given(schedules(), now_and_last(), st.data())
def test_networker_next_run_paris(schedule, times, data):
    _check_next(*schedule, PARIS, *times, data)


# -- (d) exclusions and the reference model --------------------------------------------------------


@st.composite
def excluded_cases(draw):
    """A schedule with exclusions and an instant chosen inside an exclusion's time ranges."""
    includes = draw(st.lists(members(exclude=False), min_size=1, max_size=2))
    excludes = draw(st.lists(members(exclude=True), min_size=1, max_size=2))
    ms = includes + excludes
    draw(st.randoms(use_true_random=False)).shuffle(ms)
    target = draw(st.sampled_from(excludes))
    a, b = draw(st.sampled_from(draw(st.sampled_from(target.ranges)).spans))
    day = datetime(2020, 1, 1) + timedelta(days=draw(st.integers(0, 15 * 365)))
    now = day + timedelta(seconds=draw(st.integers(a, b)))
    value = draw(st.sampled_from([json.dumps([m.text for m in ms]), [m.text for m in ms]]))
    return value, ms, now


@SETTINGS
@given(excluded_cases(), st.none() | st.integers(0, 10 * DAY), st.sampled_from([UTC, PARIS]))
def test_excluded_instants_are_never_allowed(case, ago, tz):
    value, ms, now_wall = case
    s = parse_schedule(value)
    last_wall = None if ago is None else now_wall - timedelta(seconds=ago)
    now = _aware(now_wall, tz)
    last = None if last_wall is None else _aware(last_wall, tz)
    got = s.validate(now, last).verdict
    expected = ref_verdict(ms, now_wall, last_wall)
    assert got == expected, (value, now_wall, last_wall)
    if any(m.exclude and m.covering(now_wall) for m in ms):
        assert got == "excluded"
    # next_run never lands on an excluded instant
    t = s.next_run(now, last)
    if t is not None:
        assert not any(m.exclude and m.covering(wall(t, tz)) for m in ms), (value, now_wall, t)


@SETTINGS
@given(schedules(), now_and_last(), st.integers(0, 10))
def test_validate_agrees_with_the_reference_model(schedule, times, shift):
    value, ms = schedule
    s = parse_schedule(value)
    now, last = times
    for k in range(3):
        t = now + timedelta(seconds=shift * k * 997)
        assert s.validate(t, last).verdict == ref_verdict(ms, wall(t, UTC), wall(last, UTC) if last else None), (
            value, t, last)


# -- (c) cron against a brute-force minute scan -------------------------------------------------------

CRON_FIELDS = [(0, 59, None), (0, 23, None), (1, 31, None), (1, 12, MONTH_NAMES),
               (0, 7, ["sun", "mon", "tue", "wed", "thu", "fri", "sat"])]


@st.composite
def cron_field(draw, index):
    low, high, names = CRON_FIELDS[index]
    elements, values = [], set()
    star = False
    for i in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["star", "step", "one", "range", "rangestep"]))
        if kind in ("star", "step"):
            if i == 0:
                star = True
            step = draw(st.integers(1, high - low + 1)) if kind == "step" else 1
            elements.append("*" if kind == "star" else f"*/{step}")
            values |= set(range(low, high + 1, step))
            continue

        def value_text(n):
            if names and n - (1 if index == 3 else 0) < len(names) and draw(st.booleans()):
                return names[n - (1 if index == 3 else 0)].capitalize()
            return str(n)

        a = draw(st.integers(low, high))
        if kind == "one":
            elements.append(value_text(a))
            values.add(a)
        else:
            b = draw(st.integers(a, high))
            step = draw(st.integers(1, max(1, b - a + 1))) if kind == "rangestep" else 1
            text = f"{value_text(a)}-{value_text(b)}"
            elements.append(text + (f"/{step}" if kind == "rangestep" else ""))
            values |= set(range(a, b + 1, step))
    if index == 4:
        values = {v % 7 for v in values}
    return ",".join(elements), values, star


@st.composite
def cron_expressions(draw):
    fields = [draw(cron_field(i)) for i in range(5)]
    # keep most expressions frequent enough to hit the horizon
    if draw(st.booleans()):
        fields[2] = ("*", set(range(1, 32)), True)
        fields[3] = ("*", set(range(1, 13)), True)
    text = " ".join(f[0] for f in fields)
    return text, fields


def cron_matches(fields, minute):
    (_, mins, _), (_, hours, _), (_, doms, dom_star), (_, months, _), (_, dows, dow_star) = fields
    if minute.minute not in mins or minute.hour not in hours or minute.month not in months:
        return False
    dom_ok, dow_ok = minute.day in doms, (minute.isoweekday() % 7) in dows
    if dom_star or dow_star:
        return dom_ok and dow_ok
    return dom_ok or dow_ok


HORIZON_MINUTES = 3 * 24 * 60


@SETTINGS
@given(cron_expressions(), instants(), st.none() | st.integers(0, 3 * DAY), st.integers(0, 900),
       st.booleans())
def test_cron_agrees_with_a_minute_scan(expr, now, ago, grace, prefixed):
    text, fields = expr
    s = parse_schedule(("cron " if prefixed else "") + text)
    assert s.dialect == "cron"
    naive_now = now.replace(tzinfo=None)
    last = None if ago is None else now - timedelta(seconds=ago)
    # next_run: the first matching minute >= now (and > last)
    first = naive_now.replace(second=0) + (timedelta(minutes=1) if naive_now.second else timedelta())
    lower = now if last is None else max(now, last + timedelta(seconds=1))
    expected = None
    for k in range(HORIZON_MINUTES):
        m = first + timedelta(minutes=k)
        if m.replace(tzinfo=UTC) >= lower and cron_matches(fields, m):
            expected = m.replace(tzinfo=UTC)
            break
    t = s.next_run(now, last)
    if expected is not None:
        assert t == expected, (text, now, last, t)
    else:
        assert t is None or t > first.replace(tzinfo=UTC) + timedelta(minutes=HORIZON_MINUTES - 1), (text, now, t)
    # validate: the latest slot s <= now is after last and within grace
    latest = None
    top = naive_now.replace(second=0)
    for k in range(grace // 60 + 2):
        m = top - timedelta(minutes=k)
        if cron_matches(fields, m):
            latest = m.replace(tzinfo=UTC)
            break
    allowed = (latest is not None and (now - latest).total_seconds() <= grace
               and (last is None or latest > last))
    assert (s.validate(now, last, grace=grace).verdict == "allowed") == allowed, (text, now, last, grace, latest)


def test_reference_model_sanity():
    # the reference itself reads the README's examples right
    m = Member("09:00 sat:last", False, [Range("09:00", [(32400, 32401)], 2)], [({6}, -1)], None, None)
    assert ref_verdict([m], datetime(2026, 11, 28, 9, 0), None) == "allowed"
    assert ref_verdict([m], datetime(2026, 11, 21, 9, 0), None) == "not_allowed"
    assert math.isclose(len(DST_CHANGES), 4)
