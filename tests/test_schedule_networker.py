"""Networker dialect: documented behaviour of SPEC 4.2-4.4 and 4.7, the conformance README."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from omtasks.schedule import ScheduleSyntaxError, parse_schedule
from omtasks.schedule.jitter import jittered_start, offset

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
FMT = "%Y-%m-%dT%H:%M:%S"


def at(text, tz=UTC, fold=0):
    return datetime.strptime(text, FMT).replace(tzinfo=tz, fold=fold)


def nxt(expr, now, last=None, tz=UTC):
    """next_run as the conformance checker reads it: naive local text, or None."""
    t = parse_schedule(expr).next_run(at(now, tz), at(last, tz) if last else None)
    return None if t is None else t.astimezone(tz).strftime(FMT)


def verdict(expr, now, last=None, tz=UTC):
    return parse_schedule(expr).validate(at(now, tz), at(last, tz) if last else None).verdict


def utc(dt):
    return dt.astimezone(UTC)


# -- SPEC 4.3 worked answers ---------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "now", "op", "answer"),
    [
        ("09:00 sat:last", "2026-11-27T10:00:00", "next", "2026-11-28T09:00:00"),
        ("09:00 mon:2", "2026-11-01T00:00:00", "next", "2026-11-09T09:00:00"),
        ("09:00 mon:2", "2026-11-10T00:00:00", "next", "2026-12-14T09:00:00"),
        ("09:00 fri:-2", "2026-11-01T00:00:00", "next", "2026-11-20T09:00:00"),
        ("09:00 mon-fri:last", "2026-12-01T00:00:00", "next", "2026-12-25T09:00:00"),
        ("09:00 mon:2", "2026-11-02T09:00:00", "validate", "not_allowed"),
        ("09:00 sun:5 * feb", "2026-05-01T00:00:00", "next", "2032-02-29T09:00:00"),
        ("09:00 mon:29", "2026-05-01T00:00:00", "next", "syntax error"),
    ],
)
def test_worked_answers(expr, now, op, answer):
    if answer == "syntax error":
        with pytest.raises(ScheduleSyntaxError):
            parse_schedule(expr)
        return
    got = nxt(expr, now) if op == "next" else verdict(expr, now)
    assert got == answer


def test_nth_weekday_is_not_calendar_day():
    # mon:2 is the second Monday (2026-11-09), never "Monday the 2nd"
    assert verdict("09:00 mon:2", "2026-11-09T09:00:00") == "allowed"
    assert verdict("09:00 *:2", "2026-11-02T09:00:00") == "allowed"
    assert nxt("09:00 mon-fri:last", "2026-12-25T09:00:02") == "2026-12-28T09:00:00"  # last Monday of December
    assert nxt("09:00 sat:LAST", "2026-11-01T00:00:00") == "2026-11-28T09:00:00"
    assert nxt("09:00 tue:Second", "2026-11-01T00:00:00") == "2026-11-10T09:00:00"


# -- SPEC 4.4 probabilistic windows ------------------------------------------------------


@pytest.mark.parametrize(
    ("node", "inside", "expected_offset", "expected"),
    [
        ("n1", "2026-11-28T01:00:00", 7875, "2026-11-28T02:11:15"),
        ("n2", "2026-11-28T01:00:00", 14269, "2026-11-28T03:57:49"),
        ("n2", "2026-11-29T00:00:00", 410, "2026-11-29T00:06:50"),
    ],
)
def test_jitter_vectors(node, inside, expected_offset, expected):
    schedule = parse_schedule("~00:00-04:00")
    assert schedule.probabilistic
    t = at(inside, PARIS)
    window_start = t.replace(hour=0, minute=0, second=0, tzinfo=None)
    assert offset(node, "pgdb", "task#backup", window_start, 14400) == expected_offset
    hs = jittered_start(schedule, t, node=node, service="pgdb", key="task#backup")
    assert hs.astimezone(PARIS).strftime(FMT) == expected
    # any instant of the same window gives the same start
    later = jittered_start(schedule, t + timedelta(minutes=30), node=node, service="pgdb", key="task#backup")
    assert later == hs


def test_jitter_only_for_probabilistic_windows():
    key = {"node": "n1", "service": "pgdb", "key": "task#backup"}
    outside = at("2026-11-28T05:00:00", PARIS)
    assert jittered_start(parse_schedule("~00:00-04:00"), outside, **key) is None
    # ~ with an interval shorter than the window is not probabilistic (SPEC 4.4)
    every10 = parse_schedule("~09:00-10:00@10")
    assert not every10.probabilistic
    assert jittered_start(every10, at("2026-11-28T09:30:00", PARIS), **key) is None


def test_jitter_stays_inside_restricted_window():
    # the window 23:00-03:00 wraps; only Friday's part (before midnight) is allowed by `fri`
    schedule = parse_schedule("~23:00-03:00 fri")
    for node in ("n1", "n2", "n3", "n4", "n5"):
        hs = jittered_start(schedule, at("2026-11-27T23:10:00", PARIS), node=node, service="pgdb", key="x")
        local = hs.astimezone(PARIS)
        assert local.strftime("%Y-%m-%d") == "2026-11-27" and local.hour == 23
        assert schedule.validate(hs, None).verdict == "allowed"


# -- SPEC 4.7 DST ------------------------------------------------------------------------


def test_spring_gap_paris_shifts_forward():
    assert nxt("02:30", "2026-03-29T00:00:00", tz=PARIS) == "2026-03-29T03:30:00"
    t = parse_schedule("02:30").next_run(at("2026-03-29T00:00:00", PARIS), None)
    assert t.utcoffset() == timedelta(hours=2)
    assert utc(t) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    assert nxt("02:00", "2026-03-29T00:00:00", tz=PARIS) == "2026-03-29T03:00:00"
    # the next day the time exists again
    assert nxt("02:30", "2026-03-29T04:00:00", tz=PARIS) == "2026-03-30T02:30:00"


def test_spring_gap_new_york_shifts_forward():
    t = parse_schedule("02:30").next_run(at("2026-03-08T00:00:00", NEW_YORK), None)
    assert t.isoformat() == "2026-03-08T03:30:00-04:00"
    assert nxt("02:30 sun", "2026-03-07T12:00:00", tz=NEW_YORK) == "2026-03-08T03:30:00"


@pytest.mark.parametrize(
    ("tz", "day", "first_offset"),
    [(PARIS, "2026-10-25", timedelta(hours=2)), (NEW_YORK, "2026-11-01", timedelta(hours=-4))],
)
def test_autumn_ambiguous_time_is_first_occurrence(tz, day, first_offset):
    hour = "02" if tz is PARIS else "01"
    # an ambiguous now given as wall clock is read as fold=0 (first occurrence)
    t = parse_schedule(f"{hour}:45").next_run(at(f"{day}T{hour}:30:00", tz), None)
    assert t.strftime("%H:%M:%S") == f"{hour}:45:00"
    assert t.utcoffset() == first_offset
    # an answer in the repeated hour is its first occurrence when that is still ahead
    t = parse_schedule(f"{hour}:15").next_run(at(f"{day}T00:00:00", tz), None)
    assert t.utcoffset() == first_offset


@pytest.mark.parametrize(
    ("tz", "now_utc", "expr"),
    [
        (PARIS, datetime(2026, 10, 25, 1, 10, tzinfo=UTC), "02:15"),  # 02:10+01:00, second pass
        (NEW_YORK, datetime(2026, 11, 1, 6, 10, tzinfo=UTC), "01:15"),  # 01:10-05:00, second pass
    ],
)
def test_next_run_in_second_pass_of_repeated_hour_is_not_in_the_past(tz, now_utc, expr):
    now = now_utc.astimezone(tz)
    assert now.fold == 1
    t = parse_schedule(expr).next_run(now, None)
    assert utc(t) >= utc(now), f"next_run {t.isoformat()} is before now {now.isoformat()}"
    assert utc(t) - utc(now) == timedelta(minutes=5)
    assert parse_schedule(expr).validate(t, None).verdict == "allowed"


def test_interval_is_wall_clock_across_dst():
    # spring: 00:30 + 3h of wall clock is 03:30, only 2 h later
    assert nxt("@3h", "2026-03-29T00:31:00", "2026-03-29T00:30:00", PARIS) == "2026-03-29T03:30:00"
    # a wall-clock answer in the gap shifts: 00:30 + 2h = 02:30 -> 03:30
    assert nxt("@2h", "2026-03-29T00:31:00", "2026-03-29T00:30:00", PARIS) == "2026-03-29T03:30:00"
    # a day is 24 h of wall clock even when it lasts 23 h
    assert nxt("@1d", "2026-03-28T10:00:01", "2026-03-28T10:00:00", PARIS) == "2026-03-29T10:00:00"
    assert verdict("@1d", "2026-03-29T09:59:59", "2026-03-28T10:00:00", PARIS) == "not_allowed"
    assert verdict("@1d", "2026-03-29T10:00:00", "2026-03-28T10:00:00", PARIS) == "allowed"
    # autumn: 01:30 (+02:00) + 2h of wall clock is 03:30 (+01:00), 3 h later
    last = at("2026-10-25T01:30:00", PARIS)
    t = parse_schedule("@2h").next_run(last + timedelta(seconds=1), last)
    assert t.isoformat() == "2026-10-25T03:30:00+01:00"
    assert utc(t) - utc(last) == timedelta(hours=3)
    # New York, 25 h day: 2026-11-01 00:00 + 1d = 2026-11-02 00:00
    assert nxt("@1d", "2026-11-01T00:00:01", "2026-11-01T00:00:00", NEW_YORK) == "2026-11-02T00:00:00"


# -- month ends, 29 February, ISO week 53 -----------------------------------------------


def _series(expr, start, count):
    schedule, out = parse_schedule(expr), []
    t = schedule.next_run(at(start), None)
    while t is not None and len(out) < count:
        out.append(t.strftime("%Y-%m-%d"))
        t = schedule.next_run(t + timedelta(seconds=1), t)
    return out


def test_last_day_of_month():
    assert nxt("12:00 *:-1", "2026-02-03T00:00:00") == "2026-02-28T12:00:00"
    assert nxt("12:00 *:last", "2028-02-03T00:00:00") == "2028-02-29T12:00:00"
    assert nxt("12:00 :-2", "2026-04-01T00:00:00") == "2026-04-29T12:00:00"
    assert _series("12:00 *:-1", "2026-01-01T00:00:00", 4) == ["2026-01-31", "2026-02-28", "2026-03-31", "2026-04-30"]


def test_day_31_skips_short_months():
    assert _series("12:00 *:31", "2026-01-01T00:00:00", 7) == [
        "2026-01-31", "2026-03-31", "2026-05-31", "2026-07-31", "2026-08-31", "2026-10-31", "2026-12-31",
    ]
    assert verdict("12:00 *:31", "2026-04-30T12:00:00") == "not_allowed"


def test_minus_31_only_in_31_day_months():
    # *:-31 is the 1st of a 31-day month and does not exist in shorter months
    assert nxt("* *:-31", "2026-04-01T00:00:00") == "2026-05-01T00:00:00"
    assert nxt("* *:-31", "2026-02-01T00:00:00") == "2026-03-01T00:00:00"
    assert verdict("* *:-31", "2026-06-01T10:00:00") == "not_allowed"
    assert verdict("* *:-31", "2026-07-01T10:00:00") == "allowed"


def test_29_february():
    assert nxt("12:00 sat:5 * feb", "2026-01-01T00:00:00") == "2048-02-29T12:00:00"
    assert nxt("09:00 sun:5 * feb", "2026-01-01T00:00:00") == "2032-02-29T09:00:00"
    assert nxt("09:00 *:29 * feb", "2026-03-01T00:00:00") == "2028-02-29T09:00:00"


def test_iso_week_53():
    assert nxt("* mon 53", "2026-01-01T00:00:00") == "2026-12-28T00:00:00"
    assert nxt("* mon 53", "2027-01-01T00:00:00") == "2032-12-27T00:00:00"
    assert nxt("* thu:5 53", "2027-01-01T00:00:00") == "2032-12-30T00:00:00"
    # the Monday of week 53 is never later than 28 December: never the fifth Monday
    assert nxt("* mon:5 53", "2027-01-01T00:00:00") is None
    assert verdict("* mon:5 53", "2026-12-28T10:00:00") == "not_allowed"


# -- wrapping ranges ------------------------------------------------------------------


def test_wrapping_range_checks_the_instants_own_date():
    expr = "23:00-01:00 fri"
    assert verdict(expr, "2026-11-27T23:30:00") == "allowed"  # Friday evening
    assert verdict(expr, "2026-11-28T00:30:00") == "not_allowed"  # Saturday: Saturday's date is checked
    assert verdict(expr, "2026-11-27T00:30:00") == "allowed"  # Friday 00:30: Thursday's window, Friday's date
    assert verdict(expr, "2026-11-27T01:00:00") == "allowed"  # end included
    assert verdict(expr, "2026-11-27T01:00:01") == "not_allowed"
    assert nxt(expr, "2026-11-27T01:00:01") == "2026-11-27T23:00:00"


def test_wrapping_range_over_the_new_year():
    expr = "23:00-01:00 * * dec"
    assert verdict(expr, "2026-12-31T23:30:00") == "allowed"
    assert verdict(expr, "2027-01-01T00:30:00") == "not_allowed"
    # after the Dec 31 run, the Jan 1 part is not allowed: next is 1 December 00:00
    assert nxt(expr, "2026-12-31T23:30:00", "2026-12-31T23:00:00") == "2027-12-01T00:00:00"


def test_wrapping_week_ranges():
    expr = "12:00 * 50-2"
    for day in ("2026-12-07", "2026-12-31", "2027-01-04", "2027-01-11"):  # weeks 50, 53, 1, 2
        assert verdict(expr, f"{day}T12:00:00") == "allowed", day
    for day in ("2026-11-30", "2027-01-18"):  # weeks 49 and 3
        assert verdict(expr, f"{day}T12:00:00") == "not_allowed", day
    assert nxt(expr, "2027-01-18T00:00:00") == "2027-12-13T12:00:00"


def test_wrapping_weekday_and_month_ranges():
    assert verdict("12:00 fri-mon", "2026-11-29T12:00:00") == "allowed"  # Sunday
    assert verdict("12:00 fri-mon", "2026-11-25T12:00:00") == "not_allowed"  # Wednesday
    assert nxt("12:00 * * nov-feb", "2026-03-01T00:00:00") == "2026-11-01T12:00:00"
    assert nxt("12:00 * * %2+1", "2026-02-01T00:00:00") == "2026-03-01T12:00:00"  # odd months
    assert nxt("12:00 * * %3", "2026-04-01T00:00:00") == "2026-06-01T12:00:00"


# -- exclusions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expr",
    ['["10:00-14:00@10m", "! 12:00-13:00"]', '["! 12:00-13:00", "10:00-14:00@10m"]',
     ["10:00-14:00@10m", "!12:00-13:00"]],
)
def test_exclusions_first_whatever_their_position(expr):
    s = parse_schedule(expr)
    assert s.validate(at("2026-05-05T12:30:00"), None).verdict == "excluded"
    assert s.validate(at("2026-05-05T13:00:00"), None).verdict == "excluded"  # end included
    assert s.validate(at("2026-05-05T13:00:01"), None).verdict == "allowed"
    assert s.validate(at("2026-05-05T11:00:00"), None).verdict == "allowed"
    assert s.next_run(at("2026-05-05T12:30:00"), None) == at("2026-05-05T13:00:01")


def test_exclusion_ignores_last_and_interval():
    s = parse_schedule(["*", "! * sat,sun"])
    assert s.validate(at("2026-11-28T10:00:00"), None).verdict == "excluded"
    assert s.validate(at("2026-11-28T10:00:00"), at("2020-01-01T00:00:00")).verdict == "excluded"
    assert s.next_run(at("2026-11-28T10:00:00"), None) == at("2026-11-30T00:00:00")


def test_schedule_excluded_everywhere_never_runs():
    s = parse_schedule(["09:00", "! *"])
    assert s.next_run(at("2026-01-01T00:00:00"), None) is None
    assert s.validate(at("2026-01-01T09:00:00"), None).verdict == "excluded"


# -- unscheduled ------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["", "   ", "@0", " @0 ", "[]", " [] ", []])
def test_unscheduled_values(value):
    s = parse_schedule(value)
    assert s.dialect == "none"
    assert s.next_run(at("2026-01-01T00:00:00"), None) is None
    assert s.validate(at("2026-01-01T00:00:00"), None).verdict == "not_allowed"


def test_single_time_and_whole_day():
    assert verdict("09:00", "2026-01-01T09:00:01") == "allowed"
    assert verdict("09:00", "2026-01-01T09:00:02") == "not_allowed"
    # without @ a range runs once per window
    assert verdict("09:00-10:00", "2026-01-01T09:30:00", "2026-01-01T09:00:00") == "not_allowed"
    assert verdict("*", "2026-01-01T23:59:59", "2026-01-01T00:00:00") == "not_allowed"
    assert verdict("*", "2026-01-02T00:00:00", "2026-01-01T00:00:00") == "allowed"
    assert verdict("@90", "2026-01-01T01:29:59", "2026-01-01T00:00:00") == "not_allowed"
    assert verdict("@90", "2026-01-01T01:30:00", "2026-01-01T00:00:00") == "allowed"
    assert verdict("@1h30m", "2026-01-01T01:30:00", "2026-01-01T00:00:00") == "allowed"


def test_missed_runs_collapse_into_one_catch_up():
    # down for a week: the first allowed instant runs once, then the interval counts from it
    expr = "02:00-04:00@1h"
    assert nxt(expr, "2026-11-27T03:10:00", "2026-11-20T02:00:00") == "2026-11-27T03:10:00"
    assert nxt(expr, "2026-11-27T03:10:01", "2026-11-27T03:10:00") == "2026-11-28T02:00:00"


# -- syntax errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "detail", "token", "position"),
    [
        ("09:00 mnday", "unknown calendar name 'mnday'", "mnday", 7),
        ("24:00", "time '24:00' out of range", "24:00", 1),
        ("  24:00", "time '24:00' out of range", "24:00", 3),
        ("09:00 8", "weekday 8 out of range 1-7", "8", 7),
        ("@1h30", "invalid duration '1h30' (expected <int><unit>..., units s m h d w)", "1h30", 2),
        ("09:00@10@20", "only one '@' allowed in '09:00@10@20'", "09:00@10@20", 1),
        ("! 09:00 * * jan 5", "too many fields (5) in '! 09:00 * * jan 5'", "5", 17),
        ("10:00,12:60 mon", "time '12:60' out of range", "12:60", 7),
        ("09:00 mon,tue 54", "week 54 out of range 1-53", "54", 15),
        ("09:00 * * 13", "month 13 out of range 1-12", "13", 11),
    ],
)
def test_syntax_error_names_token_and_column(value, detail, token, position):
    with pytest.raises(ScheduleSyntaxError) as info:
        parse_schedule(value)
    err = info.value
    assert str(err) == f"invalid schedule '{value}': {detail}"
    assert err.token == token
    assert err.position == position
    assert value[position - 1:].startswith(token)


@pytest.mark.parametrize(
    "value",
    ["*:0", "09:00 *:0", "09:00 *:32", "09:00 *:-32", "09:00 mon:6", "09:00 mon:29", "09:00 mon:0",
     "*@0", "@0m", "09:00-10:00@0", "09:00 mon,,tue", "09:00,", "!", "! ", "09:00 0", "09:00 * 0",
     "09:00 * * %0", "09:00 * * %-2", "09:00 * * %2+-1", "@10x", "@30m1h", "@1.5h", "@", "@-5",
     "10:00:60", "9:0", '["09:00", ""]', '["09:00", "@0"]', "[1]", "[", '"09:00"', "09:00 *:1,-1"],
)
def test_malformed_values_are_syntax_errors(value):
    with pytest.raises(ScheduleSyntaxError) as info:
        parse_schedule(value)
    assert str(info.value).startswith(f"invalid schedule '{value}': ")
    assert info.value.position >= 1


def test_corpus_syntax_errors_carry_token_and_position():
    import json
    from pathlib import Path

    cases = Path(__file__).resolve().parent / "conformance" / "schedule-cases.jsonl"
    values = {json.dumps(c["schedule"]): c["schedule"] for c in map(json.loads, cases.read_text().splitlines())
              if c["expect"] == "syntax_error"}
    assert len(values) > 20
    for value in values.values():
        with pytest.raises(ScheduleSyntaxError) as info:
            parse_schedule(value)
        shown = value if isinstance(value, str) else json.dumps(value)
        assert info.value.position >= 1, value
        assert shown[info.value.position - 1:].startswith(info.value.token), value


def test_list_member_positions_point_into_the_value():
    value = '["09:00 mon", "10:00 mnday"]'
    with pytest.raises(ScheduleSyntaxError) as info:
        parse_schedule(value)
    assert info.value.token == "mnday"
    assert value[info.value.position - 1:].startswith("mnday")


@pytest.mark.parametrize("value", ["@²", "@1²m", "09:00 ²", "09:00 * ²", "09:00 * * %²", "٠٩:٠٠", "@٣", "09:00 *:٣"])
def test_non_ascii_digits_are_syntax_errors(value):
    with pytest.raises(ScheduleSyntaxError):
        parse_schedule(value)


@pytest.mark.parametrize("value", ["cron ² * * * *", "² * * * *", "0 0 ٣ * *", "anacron ²", "anacron 1 ²"])
def test_non_ascii_digits_are_syntax_errors_in_cron_and_anacron(value):
    with pytest.raises(ScheduleSyntaxError):
        parse_schedule(value)


@pytest.mark.parametrize(
    "value",
    [
        ["!00:22:00-00:13:44", "00:22:00-00:13:44"],  # the include's only window is excluded every day
        ["! ~04:45-01:00,00:05@325", "00:00:47"],
        ["!~00:02-12:24 :-31", "~00:02-12:24 :-31"],  # same dates, same range
        ["! * mon-sun 1-53", "09:00 mon:2"],
    ],
)
def test_include_hidden_by_exclusions_never_runs(value):
    s = parse_schedule(value)
    assert s.never  # detected when parsing, not by scanning a 400-year cycle day by day
    assert s.next_run(at("2026-01-01T00:00:00"), None) is None


def test_partly_hidden_include_still_runs():
    s = parse_schedule(["! 00:00-12:00", "06:00-13:00@1h"])
    assert not s.never
    assert s.next_run(at("2026-01-01T00:00:00"), None) == at("2026-01-01T12:00:01")
