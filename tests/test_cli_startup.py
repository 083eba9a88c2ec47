"""Start-up cost: commands that need no database never import SQLAlchemy or alembic (SPEC 2, 14).

Timings are measured by bench/, not asserted here; what a test can check for sure is
which heavy modules a command loads.
"""

import subprocess
import sys

import pytest

PROBE = """
import sys
from omtasks.cli import main
try:
    main({args!r})
except SystemExit:
    pass
heavy = sorted(m for m in ("sqlalchemy", "alembic", "croniter", "starlette", "uvicorn") if m in sys.modules)
print("HEAVY=" + ",".join(heavy))
"""


def loaded(args: list[str], tmp_path) -> set[str]:
    env = {"OM_ROOT": str(tmp_path), "TZ": "UTC", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", PROBE.format(args=args)], capture_output=True, text=True,
                         env=env, timeout=60)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("HEAVY=")][-1]
    return {m for m in line[len("HEAVY="):].split(",") if m}


@pytest.mark.parametrize("args", [
    ["--help"],
    ["schedule", "next", "09:00 mon-fri", "--count", "3"],
    ["schedule", "check", "~00:00-04:00 sat:last", "--now", "2026-11-27 10:00"],
    ["runner", "install", "--print"],
])
def test_no_database_modules(args, tmp_path):
    assert loaded(args, tmp_path) == set()
    assert not (tmp_path / "var").exists(), "a command that needs no database created one"


def test_cron_preview_loads_croniter_only(tmp_path):
    assert loaded(["schedule", "next", "cron */10 * * * *"], tmp_path) == {"croniter"}
