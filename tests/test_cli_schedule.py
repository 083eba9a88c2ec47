"""`om schedule next|check` through the real `om` program (SPEC 10, 15.3)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

OM = Path(sys.executable).with_name("om")
COMMAND = [str(OM)] if OM.exists() else [sys.executable, "-m", "omtasks"]
ISO_OFFSET = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}$")
LINE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} (Mon|Tue|Wed|Thu|Fri|Sat|Sun)$")


@pytest.fixture
def om(tmp_path):
    root = tmp_path / "omroot"

    def run(*args, tz="Europe/Paris", env=None):
        environ = {k: v for k, v in os.environ.items() if not k.startswith("OM_")}
        environ.update({"OM_ROOT": str(root), "TZ": tz})
        environ.update(env or {})
        return subprocess.run([*COMMAND, *args], capture_output=True, text=True, env=environ, timeout=60)

    run.root = root
    return run


def test_next_lines(om):
    proc = om("schedule", "next", "02:00 sat:last", "--count", "6", "--from", "2026-11-27 10:00")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines == [
        "2026-11-28 02:00:00 Sat", "2026-12-26 02:00:00 Sat", "2027-01-30 02:00:00 Sat",
        "2027-02-27 02:00:00 Sat", "2027-03-27 02:00:00 Sat", "2027-04-24 02:00:00 Sat",
    ]
    assert proc.stderr == ""


def test_next_defaults_to_now_and_five_lines(om):
    proc = om("schedule", "next", "02:00 sat:last")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 5 and all(LINE.match(line) and line.endswith("Sat") for line in lines)
    # OM_NOW is the clock of the tests (SPEC 2)
    proc = om("schedule", "next", "02:00 sat:last", "--count", "1", env={"OM_NOW": "2026-11-27 10:00"})
    assert proc.stdout.splitlines() == ["2026-11-28 02:00:00 Sat"]


def test_next_does_not_create_a_database(om):
    proc = om("schedule", "next", "02:00 sat:last", "--count", "3")
    assert proc.returncode == 0, proc.stderr
    proc = om("schedule", "check", "cron 30 2 * * *", "--now", "2026-11-27 10:00")
    assert proc.returncode == 0, proc.stderr
    assert not (om.root / "var" / "om.db").exists()


def test_next_json(om):
    proc = om("schedule", "next", "02:00 sat:last", "--count", "2", "--from", "2026-11-27 10:00",
              "--last", "2026-10-31 02:00", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert {"expression", "dialect", "tz", "from", "last", "next"} <= set(doc)
    assert doc["expression"] == "02:00 sat:last"
    assert doc["dialect"] == "networker"
    assert doc["tz"] == "Europe/Paris"
    assert doc["from"] == "2026-11-27T10:00:00+01:00"
    assert doc["last"] == "2026-10-31T02:00:00+01:00"
    assert doc["next"] == ["2026-11-28T02:00:00+01:00", "2026-12-26T02:00:00+01:00"]
    assert all(ISO_OFFSET.match(t) for t in doc["next"])


def test_next_json_summer_offset_and_null_last(om):
    proc = om("schedule", "next", "cron 0 12 1 7 *", "--count", "1", "--from", "2026-01-01 00:00", "--format", "json")
    doc = json.loads(proc.stdout)
    assert doc["dialect"] == "cron"
    assert doc["last"] is None
    assert doc["next"] == ["2026-07-01T12:00:00+02:00"]


def test_probabilistic_note(om):
    proc = om("schedule", "next", "~00:00-04:00", "--count", "2", "--from", "2026-11-27 10:00")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "2026-11-28 00:00:00 Sat  (~ window until 04:00:00; runners add a stable offset)",
        "2026-11-29 00:00:00 Sun  (~ window until 04:00:00; runners add a stable offset)",
    ]
    # not probabilistic: the interval is shorter than the window
    proc = om("schedule", "next", "~09:00-10:00@10", "--count", "1", "--from", "2026-11-27 11:00")
    assert proc.stdout.splitlines() == ["2026-11-28 09:00:00 Sat"]


@pytest.mark.parametrize("value", ["", "@0", "[]", "  "])
def test_unscheduled(om, value):
    proc = om("schedule", "next", value)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["unscheduled (manual runs only)"]
    proc = om("schedule", "next", value, "--format", "json")
    assert proc.returncode == 0
    doc = json.loads(proc.stdout)
    assert doc["next"] == [] and doc["dialect"] == "none"


@pytest.mark.parametrize("value", ["* mon:5 53", '["09:00", "! *"]', "09:00 *:31 * feb"])
def test_never(om, value):
    proc = om("schedule", "next", value, "--from", "2026-11-27 10:00")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["never"]
    doc = json.loads(om("schedule", "next", value, "--format", "json").stdout)
    assert doc["next"] == []


def test_check_text_matches_the_spec_example(om):
    proc = om("schedule", "check", "00:00-02:00@121m mon-fri", "--now", "2026-11-27 18:40", "--count", "1",
              "--tz", "Europe/Paris", tz="UTC")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (
        "expression: 00:00-02:00@121m mon-fri\n"
        "dialect:    networker\n"
        "member 1:   include; ranges 00:00:00-02:00:00 every 2h1m; days mon-fri; weeks *; months *\n"
        "now:        2026-11-27 18:40:00 Europe/Paris\n"
        "verdict:    not_allowed: not in time range 00:00:00-02:00:00\n"
        "next:       2026-11-30 00:00:00 Mon\n"
    )
    # with the default count the next lines continue under the first one
    lines = om("schedule", "check", "00:00-02:00@121m mon-fri", "--now", "2026-11-27 18:40").stdout.splitlines()
    assert lines[5] == "next:       2026-11-30 00:00:00 Mon"
    assert lines[6:] == [" " * 12 + f"2026-12-0{d} 00:00:00 {n}" for d, n in ((1, "Tue"), (2, "Wed"), (3, "Thu"),
                                                                            (4, "Fri"))]


def test_check_json(om):
    proc = om("schedule", "check", "00:00-02:00@121m mon-fri", "--now", "2026-11-30 00:30",
              "--last", "2026-11-27 00:00", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    keys = {"expression", "dialect", "tz", "now", "last", "valid", "error", "members", "verdict", "reason", "next"}
    assert keys <= set(doc)
    assert doc["valid"] is True and doc["error"] is None
    assert doc["dialect"] == "networker"
    assert doc["now"] == "2026-11-30T00:30:00+01:00"
    assert doc["last"] == "2026-11-27T00:00:00+01:00"
    assert doc["members"] == ["include; ranges 00:00:00-02:00:00 every 2h1m; days mon-fri; weeks *; months *"]
    assert doc["verdict"] == "allowed"
    assert isinstance(doc["reason"], str) and doc["reason"]
    assert doc["next"][0] == "2026-11-30T00:30:00+01:00"
    assert all(ISO_OFFSET.match(t) for t in doc["next"])


def test_check_excluded_verdict(om):
    proc = om("schedule", "check", '["*@10m", "! * sat,sun"]', "--now", "2026-11-28 10:00", "--format", "json")
    doc = json.loads(proc.stdout)
    assert doc["verdict"] == "excluded"
    assert doc["next"][0] == "2026-11-30T00:00:00+01:00"
    assert len(doc["members"]) == 2


def test_check_networker_grace(om):
    # 09:00 covers 09:00:00-09:00:01; 30 s late is still within the default grace of 60 s
    doc = json.loads(om("schedule", "check", "09:00", "--now", "2026-11-27 09:00:30", "--format", "json").stdout)
    assert doc["verdict"] == "allowed"
    doc = json.loads(om("schedule", "check", "09:00", "--now", "2026-11-27 09:01:30", "--format", "json").stdout)
    assert doc["verdict"] == "not_allowed"


def test_check_cron_missed_slot(om):
    doc = json.loads(om("schedule", "check", "cron 30 2 * * 1-5", "--now", "2026-12-01 02:45",
                        "--last", "2026-11-30 02:30", "--format", "json").stdout)
    assert doc["dialect"] == "cron"
    assert doc["verdict"] == "not_allowed"
    assert "900 s" in doc["reason"]
    assert doc["next"][0] == "2026-12-02T02:30:00+01:00"
    doc = json.loads(om("schedule", "check", "cron 30 2 * * 1-5", "--now", "2026-12-01 02:30:40",
                        "--last", "2026-11-30 02:30", "--format", "json").stdout)
    assert doc["verdict"] == "allowed"


def test_check_anacron(om):
    doc = json.loads(om("schedule", "check", "anacron @weekly 15", "--now", "2026-11-27 00:10",
                        "--last", "2026-11-20 00:15", "--format", "json").stdout)
    assert doc["dialect"] == "anacron"
    assert doc["verdict"] == "not_allowed"
    assert doc["next"][:2] == ["2026-11-27T00:15:00+01:00", "2026-12-04T00:15:00+01:00"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("09:00 mnday", "invalid schedule '09:00 mnday': unknown calendar name 'mnday' at column 7"),
        ("25:00", "invalid schedule '25:00': time '25:00' out of range at column 1"),
        ("0 0 L * *", "invalid schedule '0 0 L * *': bad cron expression '0 0 L * *': unsupported token 'L' "
                      "at column 5"),
        ("anacron 1 1h", "invalid schedule 'anacron 1 1h': anacron delay must be a whole number of minutes: '1h' "
                         "at column 11"),
        ("[1]", "invalid schedule '[1]': list member 1 is not a string: 1 at column 2"),
    ],
)
def test_syntax_errors(om, value, message):
    proc = om("schedule", "next", value)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == f"om: {message}\n"
    proc = om("schedule", "next", value, "--format", "json")
    assert proc.returncode == 2 and proc.stdout == ""
    proc = om("schedule", "check", value)
    assert proc.returncode == 2
    assert proc.stderr == f"om: {message}\n"


def test_check_json_syntax_error_document(om):
    proc = om("schedule", "check", "09:00 mnday", "--now", "2026-11-27 10:00", "--format", "json")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "om: invalid schedule '09:00 mnday': unknown calendar name 'mnday' at column 7",
    ]
    doc = json.loads(proc.stdout)
    assert doc["valid"] is False
    assert doc["error"] == "invalid schedule '09:00 mnday': unknown calendar name 'mnday' at column 7"
    assert doc["dialect"] == "networker"
    assert doc["members"] == [] and doc["verdict"] is None and doc["next"] == []
    assert doc["expression"] == "09:00 mnday"
    doc = json.loads(om("schedule", "check", "cron 61 * * * *", "--format", "json").stdout)
    assert doc["dialect"] == "cron" and doc["valid"] is False


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["next", "@1h", "--from", "yesterday"], "--from"),
        (["next", "@1h", "--from", "2026-13-01 00:00"], "--from"),
        (["next", "@1h", "--last", "soon"], "--last"),
        (["check", "@1h", "--now", "bad"], "--now"),
        (["next", "@1h", "--tz", "Nowhere/Nothing"], "--tz"),
        (["check", "@1h", "--tz", "Mars/Olympus"], "--tz"),
        (["next", "@1h", "--count", "0"], "--count"),
        (["next", "@1h", "--count", "1001"], "--count"),
        (["check", "@1h", "--count", "0"], "--count"),
        (["next", "@1h", "--count", "many"], "--count"),
    ],
)
def test_bad_options(om, args, option):
    proc = om("schedule", *args)
    assert proc.returncode == 2
    assert option in proc.stderr
    assert proc.stdout == ""


def test_count_bounds_are_inclusive(om):
    assert len(om("schedule", "next", "@1h", "--count", "1").stdout.splitlines()) == 1
    proc = om("schedule", "next", "@1m", "--count", "1000", "--from", "2026-11-27 10:00")
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0 and len(lines) == 1000
    assert lines[-1] == "2026-11-28 02:39:00 Sat"


def test_cron_worked_examples(om):
    proc = om("schedule", "next", "cron 30 2 * * 1-5", "--from", "2026-11-27 10:00", "--count", "3")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["2026-11-30 02:30:00 Mon", "2026-12-01 02:30:00 Tue", "2026-12-02 02:30:00 Wed"]
    proc = om("schedule", "next", "cron 30 2 * * *", "--from", "2026-03-28 10:00", "--count", "2",
              "--tz", "Europe/Paris", tz="UTC")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["2026-03-29 03:00:00 Sun", "2026-03-30 02:30:00 Mon"]


def test_cron_slot_equal_to_from_is_listed_and_last_excludes(om):
    proc = om("schedule", "next", "30 2 * * *", "--from", "2026-12-01 02:30", "--count", "1")
    assert proc.stdout.splitlines() == ["2026-12-01 02:30:00 Tue"]
    proc = om("schedule", "next", "30 2 * * *", "--from", "2026-12-01 02:30", "--last", "2026-12-01 02:30",
              "--count", "1")
    assert proc.stdout.splitlines() == ["2026-12-02 02:30:00 Wed"]


def test_anacron_next_lists_from_first_when_overdue(om):
    proc = om("schedule", "next", "anacron @weekly 15", "--from", "2027-01-20 10:00", "--last", "2026-11-20 00:15",
              "--count", "3")
    assert proc.stdout.splitlines() == [
        "2027-01-20 10:00:00 Wed", "2027-01-27 00:15:00 Wed", "2027-02-03 00:15:00 Wed",
    ]


def test_tz_option_and_environment(om):
    # the same instant in two zones
    a = json.loads(om("schedule", "next", "cron 0 12 * * *", "--from", "2026-11-27 00:00", "--count", "1",
                      "--format", "json", tz="America/New_York").stdout)
    assert a["tz"] == "America/New_York"
    assert a["next"] == ["2026-11-27T12:00:00-05:00"]
    b = json.loads(om("schedule", "next", "cron 0 12 * * *", "--from", "2026-11-27 00:00", "--count", "1",
                      "--tz", "UTC", "--format", "json").stdout)
    assert b["tz"] == "UTC" and b["next"] == ["2026-11-27T12:00:00+00:00"]


def test_networker_dst_preview(om):
    proc = om("schedule", "next", "02:30", "--from", "2026-03-28 10:00", "--count", "3")
    assert proc.stdout.splitlines() == [
        "2026-03-29 03:30:00 Sun", "2026-03-30 02:30:00 Mon", "2026-03-31 02:30:00 Tue",
    ]
