"""Real OpenSVC service files (tests/opensvc_corpus, origins in its README) load and schedule in om."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from omtest import db_rows, make_root, om, runner_log_text, tick, wait_rows

CORPUS = Path(__file__).with_name("opensvc_corpus")
FILES = sorted(CORPUS.glob("*.conf"))
NOW = "2026-03-02T10:00:00"


def _tasks(path: Path) -> list[str]:
    return re.findall(r"^\[(task#[^\]]+)\]", path.read_text(), re.M)


def test_the_corpus_is_big_enough_and_sourced() -> None:
    assert len(FILES) >= 20
    readme = (CORPUS / "README.md").read_text()
    for path in FILES:
        first = path.read_text().splitlines()[0]
        assert first.startswith("# source: https://github.com/opensvc/"), path.name
        assert path.name in readme
    assert sum(len(_tasks(p)) for p in FILES) >= 5


@pytest.fixture(scope="module")
def corpus_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_root(tmp_path_factory.mktemp("corpus"))
    for path in FILES:
        shutil.copy(path, root / "etc" / path.name)
    return root


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_validate_config_gives_warnings_only(corpus_root: Path, path: Path) -> None:
    proc = om(corpus_root, path.stem, "validate", "config")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert not [line for line in lines if line.startswith("error")]
    warnings = [line for line in lines if line.startswith("warning: ")]
    assert warnings, "an OpenSVC file always has something om ignores"
    for line in warnings:  # one line each: file:line: [section] keyword: message
        assert re.match(rf"warning: {re.escape(str(corpus_root / 'etc' / path.name))}:\d+: \[[^\]]+\] ", line), line
    assert lines[-1] == f"0 error(s), {len(warnings)} warning(s)"
    if "[sync#i0]" in path.read_text():
        assert any(re.match(r"info: .*: \[sync#i0\] OpenSVC's internal config sync: nothing to do$", line)
                   for line in lines)


@pytest.mark.parametrize("path", [p for p in FILES if _tasks(p)], ids=lambda p: p.stem)
def test_print_schedule_lists_every_task(corpus_root: Path, path: Path) -> None:
    proc = om(corpus_root, path.stem, "print", "schedule", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    import json

    rids = {row["config_parameter"].rpartition(".")[0] for row in json.loads(proc.stdout) if row["action"] == "run"}
    assert rids == set(_tasks(path))


def test_a_tick_schedules_every_task_and_records_the_warnings_once(corpus_root: Path) -> None:
    tick(corpus_root, NOW)
    tick(corpus_root, "2026-03-02T10:01:00")
    entries = db_rows(corpus_root, "SELECT service, rid, verdict FROM schedule_entries WHERE action = 'run'")
    expected = {(p.stem, rid) for p in FILES for rid in _tasks(p)}
    assert {(e["service"], e["rid"]) for e in entries} == expected
    valid = db_rows(corpus_root, "SELECT name, valid FROM services")
    assert len(valid) == len(FILES) and all(v["valid"] for v in valid)
    log = runner_log_text(corpus_root)
    assert log.count("sozu-sozu: warning: ") == 10  # once per config version, not per tick
    assert "orchestrate: OpenSVC keyword ignored by om" in log


def test_a_scheduled_opensvc_task_runs(tmp_path: Path) -> None:
    """The nfsv4 template's host task, given a schedule, is claimed and run by the runner."""
    root = make_root(tmp_path)
    text = (CORPUS / "nfs-nfsv4-container.conf").read_text()
    text = text.replace("command = podman exec -it test..nfsv4.container.nfs /usr/sbin/exportfs -rv",
                        "command = /bin/echo exported\nschedule = @1m")
    text = text.replace("run_requires = container#nfs(up)", "")
    (root / "etc" / "nfs.conf").write_text(text)
    tick(root, NOW)
    rows = wait_rows(root, "SELECT state, exit_code FROM runs WHERE rid = 'task#export' AND state = 'done'")
    assert rows == [{"state": "done", "exit_code": 0}]
