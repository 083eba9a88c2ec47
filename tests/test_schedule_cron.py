"""Cron dialect (SPEC 4.5) and dialect detection (SPEC 4.1)."""

from datetime import UTC, datetime, timedelta
from itertools import islice
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from omtasks.schedule import ScheduleSyntaxError, parse_schedule

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
FMT = "%Y-%m-%dT%H:%M:%S"


def at(text, tz=UTC):
    return datetime.strptime(text, FMT).replace(tzinfo=tz)


def utc(dt):
    return dt.astimezone(UTC)


def slots(expr, start, count, tz=UTC):
    schedule = parse_schedule(expr)
    out, t = [], schedule.next_run(at(start, tz), None)
    while t is not None and len(out) < count:
        out.append(t)
        t = schedule.next_run(t, t)
    return out


# -- dialect detection -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "dialect"),
    [
        ("", "none"), ("@0", "none"), ("[]", "none"), ("  ", "none"),
        ("cron 0 0 * * *", "cron"), ("cron @daily", "cron"), ("  cron\t30 2 * * 1-5 ", "cron"),
        ("anacron 1", "anacron"), ("anacron @weekly 15", "anacron"),
        ("0 0 * * *", "cron"), ("*/5 * * * *", "cron"), ("* * * * *", "cron"),
        ("09:00", "networker"), ("* * * *", "networker"), ('["09:00", "! * sat"]', "networker"),
        ("@1h", "networker"), ("! 09:00 sat", "networker"), (["09:00"], "networker"),
    ],
)
def test_dialect_detection(value, dialect):
    assert parse_schedule(value).dialect == dialect


def test_five_fields_starting_with_bang_is_a_networker_error():
    with pytest.raises(ScheduleSyntaxError) as info:
        parse_schedule("! 0 0 * * *")
    assert "too many fields (5)" in str(info.value)


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        ('["0 0 * * *"]', "too many fields (5)"),
        (["0 0 * * *"], "too many fields (5)"),
        ('["09:00", "cron 0 0 * * *"]', "cron and anacron schedules cannot be list members"),
        ('["anacron 1"]', "cron and anacron schedules cannot be list members"),
        (["cron @daily"], "cron and anacron schedules cannot be list members"),
    ],
)
def test_list_members_cannot_be_cron(value, detail):
    with pytest.raises(ScheduleSyntaxError) as info:
        parse_schedule(value)
    assert detail in str(info.value)


def test_word_cron_alone_is_not_the_cron_dialect():
    # `cron` must be followed by a blank; alone it is a (malformed) networker expression
    with pytest.raises(ScheduleSyntaxError) as info:
        parse_schedule("cron")
    assert "bad cron expression" not in str(info.value)


# -- slots and aliases ---------------------------------------------------------------------


def test_weekday_slots_of_the_worked_example():
    got = slots("cron 30 2 * * 1-5", "2026-11-27T10:00:00", 3, PARIS)
    assert [t.strftime("%Y-%m-%d %H:%M %a") for t in got] == [
        "2026-11-30 02:30 Mon", "2026-12-01 02:30 Tue", "2026-12-02 02:30 Wed",
    ]


@pytest.mark.parametrize(
    ("alias", "first", "second"),
    [
        ("@hourly", "2026-11-27T11:00:00", "2026-11-27T12:00:00"),
        ("@daily", "2026-11-28T00:00:00", "2026-11-29T00:00:00"),
        ("@midnight", "2026-11-28T00:00:00", "2026-11-29T00:00:00"),
        ("@weekly", "2026-11-29T00:00:00", "2026-12-06T00:00:00"),
        ("@monthly", "2026-12-01T00:00:00", "2027-01-01T00:00:00"),
        ("@yearly", "2027-01-01T00:00:00", "2028-01-01T00:00:00"),
        ("@annually", "2027-01-01T00:00:00", "2028-01-01T00:00:00"),
        ("@DAILY", "2026-11-28T00:00:00", "2026-11-29T00:00:00"),
    ],
)
def test_aliases(alias, first, second):
    got = slots(f"cron {alias}", "2026-11-27T10:05:00", 2)
    assert [t.strftime(FMT) for t in got] == [first, second]


def test_names_and_sunday_seven():
    assert slots("0 0 * * SUN", "2026-11-27T00:00:00", 1)[0] == at("2026-11-29T00:00:00")
    assert slots("0 0 * * 7", "2026-11-27T00:00:00", 1)[0] == at("2026-11-29T00:00:00")
    assert slots("0 0 * Jan 7", "2026-11-27T00:00:00", 1)[0] == at("2027-01-03T00:00:00")
    assert slots("0 12 1 jan-mar/2 *", "2026-11-27T00:00:00", 2) == [
        at("2027-01-01T12:00:00"), at("2027-03-01T12:00:00"),
    ]


def test_a_slot_equal_to_now_is_the_next_run():
    s = parse_schedule("cron 30 2 * * *")
    now = at("2026-12-01T02:30:00")
    assert s.next_run(now, None) == now
    assert s.next_run(now, now) == at("2026-12-02T02:30:00")


# -- day-of-month / day-of-week (Vixie rule) ---------------------------------------------


def _vixie_days(expr, start, count):
    """Dates of the first `count` slots by the Vixie rule, computed by hand on naive days."""
    minute, hour, dom, month, dow = expr.split()

    def field(text, low, high):
        values = set()
        for part in text.split(","):
            rng, _, step = part.partition("/")
            a, b = (low, high) if rng == "*" else (int(rng.split("-")[0]), int(rng.split("-")[-1]))
            values |= set(range(a, b + 1, int(step or 1)))
        return values

    doms, dows = field(dom, 1, 31), {d % 7 for d in field(dow, 0, 7)}
    both_restricted = not dom.startswith("*") and not dow.startswith("*")
    out, d = [], start
    while len(out) < count:
        ok_dom, ok_dow = d.day in doms, (d.isoweekday() % 7) in dows
        if (ok_dom or ok_dow) if both_restricted else (ok_dom and ok_dow):
            out.append(d.strftime("%Y-%m-%d"))
        d += timedelta(days=1)
    return out


@pytest.mark.parametrize(
    "expr",
    ["0 0 13 * 5", "0 0 1,15 * 1", "0 0 */2 * 5", "0 0 13 * */2", "0 0 1-7 * 1", "0 0 * * 1",
     "0 0 13 * *", "0 0 */10 * 1-3", "0 0 31 * */3", "0 0 */2,4 * 5", "0 0 *,13 * 1", "0 0 13 * 0-6"],
)
def test_day_of_month_day_of_week_rule(expr):
    got = [t.strftime("%Y-%m-%d") for t in slots(expr, "2026-01-01T00:00:00", 25)]
    assert got == _vixie_days(expr, datetime(2026, 1, 1), 25)
    it = croniter(expr, datetime(2025, 12, 31, 23, 59), implement_cron_bug=True)
    assert got == [it.get_next(datetime).strftime("%Y-%m-%d") for _ in range(25)]


@pytest.mark.parametrize("expr", ["0 0 13 * 1,*", "0 0 1,* * 5", "0 0 13 * 5-5", "0 0 1,*/3 * 0-6",
                                  "0 0 1,*/3 * 0,*", "0 0 */3,1 * 0-6"])
def test_day_rule_depends_on_the_first_character_only(expr):
    # a field that does not start with `*` is restricted even when it allows every value (Vixie)
    got = [t.strftime("%Y-%m-%d") for t in slots(expr, "2026-01-01T00:00:00", 25)]
    assert got == _vixie_days(expr.replace("5-5", "5"), datetime(2026, 1, 1), 25)


def test_both_restricted_is_or_star_step_is_and():
    # Friday 13th rule: OR -> every Friday and every 13th
    days = [t.strftime("%d %a") for t in slots("0 0 13 * 5", "2026-01-01T00:00:00", 4)]
    assert days == ["02 Fri", "09 Fri", "13 Tue", "16 Fri"]
    # `*/2` starts with `*`: AND -> odd days that are Fridays
    days = [t.strftime("%m-%d %a") for t in slots("0 0 */2 * 5", "2026-01-01T00:00:00", 3)]
    assert days == ["01-09 Fri", "01-23 Fri", "02-13 Fri"]


# -- DST mapping -------------------------------------------------------------------------


def test_spring_gap_slots_collapse_into_one():
    got = list(islice(parse_schedule("*/20 2 * * *").slots_from(at("2026-03-28T23:00:00", PARIS)), 4))
    assert [t.isoformat() for t in got] == [
        "2026-03-29T03:00:00+02:00", "2026-03-30T02:00:00+02:00",
        "2026-03-30T02:20:00+02:00", "2026-03-30T02:40:00+02:00",
    ]
    assert [t.isoformat() for t in slots("cron 30 2 * * *", "2026-03-28T10:00:00", 2, PARIS)] == [
        "2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00",
    ]


def test_spring_gap_new_york():
    got = slots("*/20 2 * * *", "2026-03-08T00:00:00", 2, NEW_YORK)
    assert [t.isoformat() for t in got] == ["2026-03-08T03:00:00-04:00", "2026-03-09T02:00:00-04:00"]


def test_autumn_repeated_hour_runs_once():
    got = slots("30 * * * *", "2026-11-01T00:00:00", 4, NEW_YORK)
    assert [t.isoformat() for t in got] == [
        "2026-11-01T00:30:00-04:00", "2026-11-01T01:30:00-04:00",
        "2026-11-01T02:30:00-05:00", "2026-11-01T03:30:00-05:00",
    ]
    assert utc(got[2]) - utc(got[1]) == timedelta(hours=2)


def test_every_ten_minutes_pauses_for_the_repeated_hour():
    got = slots("*/10 * * * *", "2026-11-01T01:40:00", 4, NEW_YORK)
    assert [t.isoformat() for t in got] == [
        "2026-11-01T01:40:00-04:00", "2026-11-01T01:50:00-04:00",
        "2026-11-01T02:00:00-05:00", "2026-11-01T02:10:00-05:00",
    ]
    assert utc(got[2]) - utc(got[1]) == timedelta(minutes=70)
    # Paris, 2026-10-25: same rule
    got = slots("*/30 * * * *", "2026-10-25T02:00:00", 3, PARIS)
    assert [t.isoformat() for t in got] == [
        "2026-10-25T02:00:00+02:00", "2026-10-25T02:30:00+02:00", "2026-10-25T03:00:00+01:00",
    ]


def test_next_run_from_the_second_pass_is_not_in_the_past():
    start = datetime(2026, 11, 1, 6, 40, tzinfo=UTC).astimezone(NEW_YORK)  # 01:40 EST, second pass
    assert start.fold == 1
    t = parse_schedule("*/10 * * * *").next_run(start, None)
    assert utc(t) >= utc(start), t.isoformat()
    assert t.isoformat() == "2026-11-01T02:00:00-05:00"


def test_grace_is_measured_in_utc_across_the_repeated_hour():
    # 01:00 EDT is the only 01:00 slot; at 01:00:30 EST it is 3630 s late (SPEC 4.5 item 4)
    s = parse_schedule("0 1 * * *")
    now = datetime(2026, 11, 1, 6, 0, 30, tzinfo=UTC).astimezone(NEW_YORK)
    assert now.fold == 1
    decision = s.validate(now, None, grace=60)
    assert decision.verdict == "not_allowed"
    assert "3630 s" in decision.reason
    assert s.validate(now, None, grace=3700).verdict == "allowed"


# -- grace and missed slots (SPEC 4.1) ------------------------------------------------------


def test_validate_grace_and_missed_slots():
    s = parse_schedule("cron 30 2 * * 1-5")
    prev = at("2026-11-30T02:30:00", PARIS)
    slot = at("2026-12-01T02:30:00", PARIS)
    assert s.validate(slot, prev, grace=60).verdict == "allowed"
    assert s.validate(slot + timedelta(seconds=60), prev, grace=60).verdict == "allowed"
    late = s.validate(slot + timedelta(seconds=61), prev, grace=60)
    assert late.verdict == "not_allowed" and "late by 61 s" in late.reason
    missed = s.validate(at("2026-12-01T02:45:00", PARIS), prev, grace=60)
    assert missed.verdict == "not_allowed" and "late by 900 s (grace 60 s)" in missed.reason
    # the slot already ran
    assert s.validate(slot + timedelta(seconds=30), slot, grace=60).verdict == "not_allowed"
    # grace defaults to 0: only the exact minute
    assert s.validate(slot, None).verdict == "allowed"
    assert s.validate(slot + timedelta(seconds=1), None).verdict == "not_allowed"
    # before the slot
    assert s.validate(slot - timedelta(seconds=1), prev, grace=60).verdict == "not_allowed"
    # the next run after a missed slot is the next slot
    assert s.next_run(at("2026-12-01T02:45:00", PARIS), prev) == at("2026-12-02T02:30:00", PARIS)


def test_only_the_latest_slot_counts():
    s = parse_schedule("*/5 * * * *")
    # two slots since last: the older one (10:00) is missed, the latest (10:05) is on time
    assert s.validate(at("2026-01-01T10:05:30"), at("2026-01-01T09:55:00"), grace=60).verdict == "allowed"
    assert s.validate(at("2026-01-01T10:06:30"), at("2026-01-01T09:55:00"), grace=60).verdict == "not_allowed"


# -- syntax errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "token", "position"),
    [
        ("0 0 L * *", "L", 5),
        ("cron 0 0 L * *", "L", 10),
        ("0 0 * * 1W", "W", 9),
        ("0 0 15W * *", "W", 5),
        ("0 0 * * 5#2", "#", 9),
        ("H 0 * * *", "H", 1),
        ("0 0 ? * *", "?", 5),
    ],
)
def test_unsupported_tokens(value, token, position):
    with pytest.raises(ScheduleSyntaxError) as info:
        parse_schedule(value)
    body = value.removeprefix("cron ")
    assert str(info.value) == f"invalid schedule '{value}': bad cron expression '{body}': unsupported token '{token}'"
    assert info.value.position == position
    assert token in info.value.token


@pytest.mark.parametrize(
    ("value", "fragment", "position"),
    [
        ("cron 0 0 * * * *", "expected 5 fields, got 6", 16),
        ("cron @reboot", "unsupported alias '@reboot'", 6),
        ("@reboot", None, 2),
        ("61 * * * *", "value 61 out of range 0-59 in minute field", 1),
        ("cron 0 24 * * *", "value 24 out of range 0-23 in hour field", 8),
        ("0 0 0 * *", "value 0 out of range 1-31 in day-of-month field", 5),
        ("0 0 * 13 *", "value 13 out of range 1-12 in month field", 7),
        ("0 0 * * 8", "value 8 out of range 0-7 in day-of-week field", 9),
        ("0 0 * * mon-", None, 9),
        ("*/0 * * * *", "step 0", 1),
        ("0 0 * * 5-1", "reversed range", 9),
        ("0 0 * foo *", "invalid token 'foo' in month field", 7),
        ("cron 0 0 * *", "expected 5 fields, got 4", 6),
    ],
)
def test_cron_syntax_errors(value, fragment, position):
    with pytest.raises(ScheduleSyntaxError) as info:
        parse_schedule(value)
    if fragment is not None:
        assert "bad cron expression" in str(info.value)
        assert fragment in str(info.value)
    assert info.value.position == position


def test_sixth_field_of_a_bare_line_is_a_networker_error():
    with pytest.raises(ScheduleSyntaxError) as info:
        parse_schedule("0 0 * * * *")
    assert "too many fields (6)" in str(info.value)


@pytest.mark.parametrize(
    ("value", "position"), [("09:00 * * * 1", 1), ("cron 09:00 * * * *", 6), ("  09:00-10:00 * * * mon", 3)]
)
def test_networker_hint_on_five_field_values(value, position):
    with pytest.raises(ScheduleSyntaxError) as info:
        parse_schedule(value)
    assert str(info.value).endswith("(a networker expression has at most 4 fields)")
    assert info.value.position == position


def test_no_hint_without_colon():
    with pytest.raises(ScheduleSyntaxError) as info:
        parse_schedule("61 * * * *")
    assert "networker" not in str(info.value)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("0 3-3 * * *", ["2026-01-01T03:00:00", "2026-01-02T03:00:00"]),
        ("0 0 5-5 * *", ["2026-01-05T00:00:00", "2026-02-05T00:00:00"]),
        ("0 0 * feb-feb *", ["2026-02-01T00:00:00", "2026-02-02T00:00:00"]),
        ("0 0 * * 3-3/2", ["2026-01-07T00:00:00", "2026-01-14T00:00:00"]),
        ("7-7 12 * * *", ["2026-01-01T12:07:00", "2026-01-02T12:07:00"]),
    ],
)
def test_single_value_ranges(expr, expected):
    # `a-a` is the single value a (croniter alone would read it as `*`)
    assert [t.strftime(FMT) for t in slots(expr, "2026-01-01T00:00:00", 2)] == expected
