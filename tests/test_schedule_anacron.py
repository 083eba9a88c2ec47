"""Anacron dialect (SPEC 4.6): due dates, boot time, delay, DST, syntax errors."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from omtasks.schedule import ScheduleSyntaxError, parse_schedule

PARIS = ZoneInfo("Europe/Paris")
FMT = "%Y-%m-%dT%H:%M:%S"


def at(text, tz=PARIS):
    return datetime.strptime(text, FMT).replace(tzinfo=tz)


@pytest.mark.parametrize(
    ("period", "last", "due"),
    [
        ("@daily", "2026-12-15T13:00:00", "2026-12-16T00:00:00"),
        ("1", "2026-12-31T23:59:00", "2027-01-01T00:00:00"),
        ("@weekly", "2026-12-15T13:00:00", "2026-12-22T00:00:00"),
        ("3", "2026-12-15T13:00:00", "2026-12-18T00:00:00"),
        ("@monthly", "2026-12-15T13:00:00", "2027-01-01T00:00:00"),
        ("@monthly", "2026-01-31T08:00:00", "2026-02-01T00:00:00"),
        ("@monthly", "2026-02-01T00:00:00", "2026-03-01T00:00:00"),
        ("@yearly", "2026-01-01T00:00:00", "2027-01-01T00:00:00"),
        ("@yearly", "2026-12-31T23:00:00", "2027-01-01T00:00:00"),
    ],
)
def test_due_dates(period, last, due):
    s = parse_schedule(f"anacron {period}")
    assert s.dialect == "anacron"
    now = at(last) + timedelta(minutes=1)
    assert s.next_run(now, at(last)) == at(due)
    assert s.validate(at(due), at(last)).verdict == "allowed"
    assert s.validate(at(due) - timedelta(seconds=1), at(last)).verdict == "not_allowed"


def test_never_ran_is_due_today():
    s = parse_schedule("anacron @weekly")
    now = at("2026-11-27T10:00:00")
    assert s.validate(now, None).verdict == "allowed"
    assert s.next_run(now, None) == now
    # with a delay: today 00:00 + delay
    s = parse_schedule("anacron 1 600")
    assert s.next_run(at("2026-11-27T08:00:00"), None) == at("2026-11-27T10:00:00")
    assert s.validate(at("2026-11-27T09:59:59"), None).verdict == "not_allowed"


def test_worked_example_weekly_with_delay_and_boot():
    s = parse_schedule("anacron @weekly 15")
    last = at("2026-11-20T00:15:00")
    assert s.next_run(at("2026-11-21T00:00:00"), last) == at("2026-11-27T00:15:00")
    assert s.validate(at("2026-11-27T00:15:00"), last).verdict == "allowed"
    assert s.validate(at("2026-11-27T00:14:59"), last).verdict == "not_allowed"
    boot = at("2026-11-27T08:00:00")
    assert s.next_run(at("2026-11-21T00:00:00"), last, boot=boot) == at("2026-11-27T08:15:00")
    assert s.validate(at("2026-11-27T08:14:59"), last, boot=boot).verdict == "not_allowed"
    assert s.validate(at("2026-11-27T08:15:00"), last, boot=boot).verdict == "allowed"
    # a boot before the due date does not matter
    early = at("2026-11-01T08:00:00")
    assert s.next_run(at("2026-11-21T00:00:00"), last, boot=early) == at("2026-11-27T00:15:00")


def test_missed_periods_collapse_into_one_run():
    s = parse_schedule("anacron @weekly 15")
    last = at("2026-11-20T00:15:00")
    weeks_later = at("2027-01-20T10:00:00")
    assert s.next_run(weeks_later, last) == weeks_later
    # once it ran, the next due date counts from that run's date
    assert s.next_run(weeks_later + timedelta(seconds=1), weeks_later) == at("2027-01-27T00:15:00")


def test_due_date_is_the_local_date_of_the_last_attempt():
    # 23:30 UTC on 2026-11-20 is 00:30 on 2026-11-21 in Paris
    s = parse_schedule("anacron 1")
    last = datetime(2026, 11, 20, 23, 30, tzinfo=UTC)
    assert s.next_run(at("2026-11-21T01:00:00"), last) == at("2026-11-22T00:00:00")


def test_start_in_dst_gap_moves_forward():
    s = parse_schedule("anacron 1 130")
    t = s.next_run(at("2026-03-28T12:00:00"), at("2026-03-28T10:00:00"))
    assert t.isoformat() == "2026-03-29T03:10:00+02:00"
    assert t.astimezone(UTC) == datetime(2026, 3, 29, 1, 10, tzinfo=UTC)
    # wall clock: a shorter night does not shift the start of a plain delay
    s = parse_schedule("anacron 1 240")
    assert s.next_run(at("2026-03-28T12:00:00"), at("2026-03-28T10:00:00")).isoformat() == (
        "2026-03-29T04:00:00+02:00"
    )


def test_due_midnight_inside_a_gap_starts_at_the_end_of_the_gap():
    # America/Santiago skips 00:00-01:00 on 2026-09-06
    santiago = ZoneInfo("America/Santiago")
    s = parse_schedule("anacron 1")
    last = datetime(2026, 9, 5, 12, 0, tzinfo=santiago)
    t = s.next_run(datetime(2026, 9, 5, 13, 0, tzinfo=santiago), last)
    assert t.astimezone(santiago).strftime(FMT) == "2026-09-06T01:00:00"


@pytest.mark.parametrize(
    ("value", "message", "position"),
    [
        ("anacron 1 1h", "anacron delay must be a whole number of minutes: '1h'", 11),
        ("anacron 1 -5", "anacron delay must be a whole number of minutes: '-5'", 11),
        ("anacron 1 1.5", "anacron delay must be a whole number of minutes: '1.5'", 11),
        ("anacron 0", "anacron period must be a positive number of days or @daily, @weekly, @monthly, "
                      "@yearly: '0'", 9),
        ("anacron 1h", "anacron period must be a positive number of days or @daily, @weekly, @monthly, "
                       "@yearly: '1h'", 9),
        ("anacron -5", "anacron period must be a positive number of days or @daily, @weekly, @monthly, "
                       "@yearly: '-5'", 9),
        ("anacron @hourly", "anacron period must be a positive number of days or @daily, @weekly, @monthly, "
                            "@yearly: '@hourly'", 9),
    ],
)
def test_anacron_syntax_errors(value, message, position):
    with pytest.raises(ScheduleSyntaxError) as info:
        parse_schedule(value)
    assert str(info.value) == f"invalid schedule '{value}': {message}"
    assert info.value.position == position
    assert value[position - 1:].startswith(info.value.token)


def test_anacron_takes_at_most_two_fields():
    with pytest.raises(ScheduleSyntaxError):
        parse_schedule("anacron 1 5 5")


def test_next_run_and_validate_agree_in_the_repeated_hour():
    # boot during the second pass of 02:00-03:00 (Paris, 2026-10-25): the wall-clock start
    # 02:40 maps to its first occurrence (fold=0), already past in UTC
    s = parse_schedule("anacron 1 30")
    last = at("2026-10-24T10:00:00")
    boot = datetime(2026, 10, 25, 1, 10, tzinfo=UTC).astimezone(PARIS)  # 02:10+01:00
    now = datetime(2026, 10, 25, 1, 20, tzinfo=UTC).astimezone(PARIS)  # 02:20+01:00
    assert boot.fold == 1 and now.fold == 1
    t = s.next_run(now, last, boot=boot)
    assert t.astimezone(UTC) >= now.astimezone(UTC), t.isoformat()
    assert s.validate(t, last, boot=boot).verdict == "allowed"
