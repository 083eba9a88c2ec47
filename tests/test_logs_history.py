"""`om SVC logs`, `om SVC print run`, output_tail, outcome lines, on_error variables, log files (issue 8)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from omtest import make_root, om, om_cmd, om_env, tick, wait_until, write_service

DAY = "2026-12-01"
SVC = """
[DEFAULT]
nodes = n1
status_schedule = @0

[task#ok]
command = /bin/sh -c 'echo fine'
schedule = @10m

[task#bad]
command = /bin/sh -c 'echo partial; echo broken >&2; exit 3'
schedule = @10m
on_error = /bin/sh -c 'echo "code=$OM_EXIT_CODE state=$OM_STATE reason=$OM_REASON" > {root}/on_error.out'
"""
#: a service log line: date, time with its UTC offset, node, run id, rid, level, message
LINE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3}[+-]\d{2}:\d{2} (\S+) run=(\d+) (\S+)\s+(\w+)\s+(.*)$")


def setup(tmp_path: Path) -> Path:
    root = make_root(tmp_path)
    write_service(root, "svc", SVC.replace("{root}", str(root)))
    tick(root, f"{DAY} 00:00")
    return root


def runs_json(root: Path) -> list[dict]:
    proc = om(root, "svc", "print", "runs", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_outcome_lines_output_tail_and_on_error_variables(tmp_path: Path) -> None:
    root = setup(tmp_path)
    runs = {r["rid"]: r for r in runs_json(root)}
    assert runs["task#bad"]["output_tail"] == "partial\nbroken\n"
    assert runs["task#ok"]["output_tail"] == "fine\n"
    lines = [LINE.match(ln) for ln in (root / "var" / "log" / "svc.log").read_text().splitlines()]
    assert all(lines), "every service log line has a timestamp with its UTC offset"
    outcomes = {m[3]: (m[4], m[5]) for m in lines if m[5].startswith("outcome: ")}
    assert set(outcomes) == {"task#ok", "task#bad"}, "one outcome line per finished scheduled run"
    level, text = outcomes["task#bad"]
    assert level == "ERROR"
    assert re.fullmatch(r"outcome: run state=failed exit_code=3 duration=\d+\.\ds node=n1 reason=exit code 3", text)
    assert outcomes["task#ok"][0] == "INFO" and "state=done exit_code=0" in outcomes["task#ok"][1]
    assert (root / "on_error.out").read_text() == "code=3 state=failed reason=exit code 3\n"
    # a manual run leaves no outcome line: its terminal already shows the outcome
    assert om(root, "svc", "run", "--rid", "task#ok").returncode == 0
    text = (root / "var" / "log" / "svc.log").read_text()
    assert text.count("outcome: ") == 2


def test_logs_filters_and_one_runs_output(tmp_path: Path) -> None:
    root = setup(tmp_path)
    whole = om(root, "svc", "logs")
    assert whole.returncode == 0, whole.stderr
    assert whole.stdout == (root / "var" / "log" / "svc.log").read_text()
    bad = om(root, "svc", "logs", "--rid", "task#bad").stdout.splitlines()
    assert bad and all(LINE.match(ln)[3] == "task#bad" for ln in bad)
    assert any("| broken" in ln for ln in bad)
    assert om(root, "svc", "logs", "--rid", "task#ok,task#bad").stdout == whole.stdout
    assert om(root, "svc", "logs", "--node", "n2").stdout == ""
    assert om(root, "svc", "logs", "--node", "n1").stdout == whole.stdout
    # --since: lines are written on the real clock; a duration counts back from now
    assert om(root, "svc", "logs", "--since", "1h").stdout == whole.stdout
    assert om(root, "svc", "logs", "--since", "2999-01-01 00:00").stdout == ""
    bad_since = om(root, "svc", "logs", "--since", "yesterday")
    assert bad_since.returncode == 2 and "'--since'" in bad_since.stderr and "Traceback" not in bad_since.stderr
    # --run: the run's whole output, from its run log
    run_id = next(r["id"] for r in runs_json(root) if r["rid"] == "task#bad")
    out = om(root, "svc", "logs", "--run", str(run_id))
    assert (out.returncode, out.stdout) == (0, "partial\nbroken\n")
    # without the run log (log = false, or removed) the stored tail is what is left
    (root / "var" / "log" / "runs" / "svc" / f"{run_id}.log").unlink()
    assert om(root, "svc", "logs", "--run", str(run_id)).stdout == "partial\nbroken\n"
    missing = om(root, "svc", "logs", "--run", "999")
    assert missing.returncode == 1 and missing.stderr == "om: run 999 is not a run of service 'svc' (see 'om svc print runs')\n"
    nosvc = om(root, "nosuch", "logs")
    assert nosvc.returncode == 1 and nosvc.stderr == "om: service 'nosuch' does not exist\n"


def test_logs_follow_sees_new_lines_and_survives_logrotate(tmp_path: Path) -> None:
    root = setup(tmp_path)
    log = root / "var" / "log" / "svc.log"
    # stderr to a file and stdout read through its file object: readline() may have buffered more than a line
    err_file = tmp_path / "follow.err"
    proc = subprocess.Popen(om_cmd("svc", "logs", "-f", "--rid", "task#ok"), env=om_env(root),
                            stdout=subprocess.PIPE, stderr=err_file.open("w"), text=True)
    try:
        first = proc.stdout.readline()  # the follower has the file open
        os.rename(log, log.with_suffix(".log.1"))  # what logrotate does (create mode, no copytruncate)
        tick(root, f"{DAY} 00:10")  # the writers reopen var/log/svc.log (WatchedFileHandler)
        assert log.exists()
        wait_until(lambda: log.read_text().count("outcome: ") == 2, what="the second tick's outcome lines")
        time.sleep(1)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        out = proc.stdout.read()
        proc.stdout.close()
    assert proc.returncode == 0, err_file.read_text()
    lines = [first.rstrip("\n"), *out.splitlines()]
    assert all(LINE.match(ln)[3] == "task#ok" for ln in lines)
    assert sum("outcome: " in ln for ln in lines) == 2, out  # one before the rotation, one after


def test_print_run_shows_events_exit_code_and_output(tmp_path: Path) -> None:
    root = setup(tmp_path)
    run_id = next(r["id"] for r in runs_json(root) if r["rid"] == "task#bad")
    doc = json.loads(om(root, "svc", "print", "run", str(run_id), "--format", "json").stdout)
    assert (doc["id"], doc["rid"], doc["state"], doc["exit_code"], doc["reason"]) == (
        run_id, "task#bad", "failed", 3, "exit code 3")
    assert [(e["from_state"], e["to_state"]) for e in doc["events"]] == [
        (None, "scheduled"), ("scheduled", "eligible"), ("eligible", "running"), ("running", "failed")]
    assert doc["events"][-1]["reason"] == "exit code 3" and all(e["at"] for e in doc["events"])
    assert doc["output"] == "partial\nbroken\n" and doc["output_source"].endswith(f"runs/svc/{run_id}.log")
    assert doc["scheduled_for"] == f"{DAY}T00:00:00+00:00" and doc["duration"] >= 0
    text = om(root, "svc", "print", "run", str(run_id)).stdout
    assert re.search(r"^state:\s+failed$", text, re.M) and re.search(r"^exit code: 3$", text, re.M)
    assert re.search(r"running -> failed  \(exit code 3\)", text)
    assert text.rstrip().endswith("partial\nbroken")
    other = om(root, "other", "print", "run", str(run_id))
    assert other.returncode == 1 and f"run {run_id} is not a run of service 'other'" in other.stderr


def test_logrotate_snippet_and_daemon_failures_on_stderr(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    printed = om(root, "runner", "install", "--print").stdout
    block = printed[printed.index("# /etc/logrotate.d/om"):]
    assert f"{root}/var/log/*.log {{" in block
    assert "create 0640 root root" in block and "copytruncate" not in block.replace("neither copytruncate", "")
    # a daemon whose every pass fails says why on stderr (the journal), and in runner.log
    env = {"OM_DB_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none"}
    proc = subprocess.Popen(om_cmd("runner", "daemon"), env=om_env(root, env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: "tick failed" in (root / "var" / "log" / "runner.log").read_text()
                   if (root / "var" / "log" / "runner.log").exists() else False, what="a failed pass")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert re.search(r"^om runner daemon: n1 daemon: tick failed: .*127\.0\.0\.1", err, re.M), err
    assert "Traceback" not in err


@pytest.mark.root
@pytest.mark.skipif(shutil.which("logrotate") is None or os.geteuid() != 0, reason="needs logrotate and root")
def test_the_printed_logrotate_snippet_rotates_and_om_writes_on(tmp_path: Path) -> None:
    root = setup(tmp_path)
    printed = om(root, "runner", "install", "--print").stdout
    conf = tmp_path / "om.logrotate"
    conf.write_text(printed[printed.index("# /etc/logrotate.d/om"):])
    conf.chmod(0o644)
    proc = subprocess.run(["logrotate", "-f", "-s", str(tmp_path / "state"), str(conf)], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    logs = root / "var" / "log"
    assert (logs / "svc.log.1").exists() and (logs / "runner.log.1").exists()
    assert not (logs / "svc.log").exists() or (logs / "svc.log").stat().st_size == 0
    tick(root, f"{DAY} 00:10")
    assert (logs / "svc.log").read_text().count("outcome: ") == 2  # the new file holds the new tick's lines
    assert (logs / "svc.log.1").read_text().count("outcome: ") == 2  # the rotated one keeps the old ones
    assert oct((logs / "svc.log").stat().st_mode & 0o777) == "0o640"
