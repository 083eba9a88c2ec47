"""The conformance corpus (SPEC 4.3): every case through the engine, the checker, and drift."""

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from omtasks.schedule import ScheduleSyntaxError, parse_schedule

HERE = Path(__file__).resolve().parent
CONFORMANCE = HERE / "conformance"
CASES_FILE = CONFORMANCE / "schedule-cases.jsonl"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "conformance"
FMT = "%Y-%m-%dT%H:%M:%S"


def _load_cases():
    with CASES_FILE.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


CASES = _load_cases()


def _aware(text, tz):
    if text is None:
        return None
    return datetime.strptime(text, FMT).replace(tzinfo=tz, fold=0)


def _answer(case):
    """The engine's answer in the corpus' terms (README: aware fold=0 inputs, naive local output)."""
    tz = ZoneInfo(case["tz"])
    now, last = _aware(case["now"], tz), _aware(case["last"], tz)
    try:
        schedule = parse_schedule(case["schedule"])
    except ScheduleSyntaxError:
        return "syntax_error"
    if case["op"] == "validate":
        decision = schedule.validate(now, last)
        assert isinstance(decision.reason, str) and decision.reason
        return decision.verdict
    t = schedule.next_run(now, last)
    if t is None:
        return None
    assert t.tzinfo is not None and t.utcoffset() is not None, "next_run must return an aware datetime"
    local = t.astimezone(tz).replace(tzinfo=None)
    assert local.microsecond == 0, "next_run answers whole seconds"
    return local.strftime(FMT)


def test_corpus_is_the_documented_size():
    assert len(CASES) == 1358
    assert len({c["id"] for c in CASES}) == len(CASES)
    assert {c["op"] for c in CASES} == {"validate", "next"}


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_case(case):
    assert _answer(case) == case["expect"], json.dumps(case)


def test_checker_script_reports_no_failure():
    proc = subprocess.run(
        [sys.executable, str(CONFORMANCE / "check.py")],
        capture_output=True, text=True, timeout=120, cwd=HERE.parent,
    )
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr
    assert lines[-1] == f"{len(CASES)} passed, 0 failed", proc.stdout[-3000:] + proc.stderr
    assert proc.returncode == 0


@pytest.mark.parametrize("name", ["check.py", "schedule-cases.jsonl"])
def test_repository_copy_matches_shared_folder(name):
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} does not exist: no shared conformance folder to compare with")
    shared = SHARED / name
    assert shared.is_file(), f"{shared} is missing"
    assert (CONFORMANCE / name).read_bytes() == shared.read_bytes(), (
        f"tests/conformance/{name} differs from {shared}: copy it unchanged"
    )
