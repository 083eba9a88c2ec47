"""The confirmation of manual runs (SPEC 5.4, 8.7) through a real pseudo-terminal and the real `om`."""

from __future__ import annotations

import errno
import os
import re
import select
import subprocess
import time
from pathlib import Path

import pytest

from omtest import db_rows, log_lines, make_root, om, om_cmd, om_env, wait_rows, write_service

PROMPT = (
    "This task run requires confirmation.\n"
    "Please make sure you fully understand its role and effects before confirming the run.\n"
    "Do you really want to run task#0 (yes/no) > "
)
STOPPED = "'run' action stopped on execution error: "


class Terminal:
    """`om` running with stdin, stdout and stderr on the slave side of a new pty."""

    def __init__(self, root: Path, *args: str) -> None:
        master, slave = os.openpty()
        self.master = master
        self.proc = subprocess.Popen(om_cmd(*args), env=om_env(root), stdin=slave, stdout=slave, stderr=slave,
                                     start_new_session=True)
        os.close(slave)
        self.buf = b""

    @property
    def text(self) -> str:
        """Everything read so far; the tty's output translation (\\r\\n) undone."""
        return self.buf.decode("utf-8", "replace").replace("\r\n", "\n")

    def _read(self, wait: float) -> bool:
        """Read what is available within `wait` seconds; False at end of output."""
        ready, _, _ = select.select([self.master], [], [], wait)
        if not ready:
            return True
        try:
            data = os.read(self.master, 4096)
        except OSError as exc:  # EIO: every slave descriptor is closed
            if exc.errno != errno.EIO:
                raise
            return False
        self.buf += data
        return bool(data)

    def expect(self, needle: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while needle not in self.text:
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(min(left, 0.5)):
                break
        assert needle in self.text, self.text
        return self.text

    def send(self, data: str) -> None:
        os.write(self.master, data.encode())

    def finish(self, timeout: float = 20) -> int:
        """Read to the end of output and return the exit code."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._read(0.5):
            pass
        code = self.proc.wait(timeout=max(1, deadline - time.monotonic()))
        os.close(self.master)
        return code


@pytest.fixture
def terminals():
    started: list[Terminal] = []
    yield started
    for term in started:
        if term.proc.poll() is None:
            term.proc.kill()
            term.proc.wait()


def confirm_service(root: Path, command: str = "/bin/echo hello", extra: str = "") -> None:
    write_service(root, "svc", f"""
    [task#0]
    command = {command}
    confirmation = true
    {extra}
    """)


def only_run(root: Path) -> dict:
    (run,) = db_rows(root, "SELECT * FROM runs")
    return run


def only_confirmation(root: Path) -> dict:
    (row,) = db_rows(root, "SELECT * FROM confirmations")
    return row


def test_prompt_yes_runs_and_propagates_exit_code(tmp_path: Path, terminals: list[Terminal]) -> None:
    root = make_root(tmp_path)
    confirm_service(root, "/bin/sh -c 'echo hello; exit 3'")
    term = Terminal(root, "svc", "run", "--rid", "task#0")
    terminals.append(term)
    term.expect("(yes/no) > ", 20)
    time.sleep(0.3)
    term._read(0.2)
    assert term.text == PROMPT  # exactly the three lines, no newline after "> "
    (pending,) = wait_rows(root, "SELECT * FROM confirmations WHERE state = 'pending'")
    assert db_rows(root, "SELECT state FROM runs")[0]["state"] == "awaiting_confirmation"
    term.send("  yes \n")  # surrounding blanks are ignored
    code = term.finish()
    assert code == 3
    after = term.text[len(PROMPT):]
    assert log_lines(after) == [
        ("task#0", "INFO", "run confirmed"),
        ("task#0", "INFO", "/bin/sh -c 'echo hello; exit 3'"),
        ("task#0", "INFO", "| hello"),
        ("", "ERROR", f"{STOPPED}task#0 exit code 3"),
    ]
    run = only_run(root)
    assert (run["trigger"], run["state"], run["reason"], run["exit_code"]) == ("manual", "failed", "exit code 3", 3)
    row = only_confirmation(root)
    assert (row["state"], row["decided_by"]) == ("confirmed", "root@n1")
    requested = pending["requested_at"].split(".")[0]
    expires = pending["expires_at"].split(".")[0]
    assert (time.mktime(time.strptime(expires, "%Y-%m-%d %H:%M:%S"))
            - time.mktime(time.strptime(requested, "%Y-%m-%d %H:%M:%S"))) == 30
    events = db_rows(root, "SELECT from_state, to_state FROM run_events WHERE run_id = :r ORDER BY id", r=run["id"])
    assert [(e["from_state"], e["to_state"]) for e in events] == [
        (None, "scheduled"), ("scheduled", "awaiting_confirmation"), ("awaiting_confirmation", "eligible"),
        ("eligible", "running"), ("running", "failed")]


def test_prompt_no_aborts_and_confirm_refuses_terminal_row(tmp_path: Path, terminals: list[Terminal]) -> None:
    root = make_root(tmp_path)
    flag = tmp_path / "ran"
    confirm_service(root, f"/usr/bin/touch {flag}")
    term = Terminal(root, "svc", "run")
    terminals.append(term)
    term.expect("(yes/no) > ", 20)
    (run,) = wait_rows(root, "SELECT * FROM runs WHERE state = 'awaiting_confirmation'")
    # `om SVC confirm` leaves a terminal's prompt alone
    proc = om(root, "svc", "confirm", "--run", str(run["id"]), "--yes")
    assert proc.returncode == 1
    assert f"run {run['id']} is being confirmed on a terminal" in proc.stderr
    term.send("no\n")
    assert term.finish() == 1
    assert log_lines(term.text) == [("", "ERROR", f"{STOPPED}run aborted")]
    assert not flag.exists()
    run = only_run(root)
    assert (run["state"], run["reason"], run["exit_code"]) == ("failed", "confirmation refused", None)
    row = only_confirmation(root)
    assert (row["state"], row["decided_by"]) == ("refused", "root@n1")


@pytest.mark.parametrize("answer", ["\n", "YES\n", "yes please\n", "\x04"], ids=["empty", "upper", "other", "eof"])
def test_prompt_other_answers_refuse(tmp_path: Path, terminals: list[Terminal], answer: str) -> None:
    root = make_root(tmp_path)
    confirm_service(root)
    term = Terminal(root, "svc", "run")
    terminals.append(term)
    term.expect("(yes/no) > ", 20)
    term.send(answer)
    assert term.finish() == 1
    assert log_lines(term.text)[-1] == ("", "ERROR", f"{STOPPED}run aborted")
    assert "| hello" not in term.text
    assert (only_run(root)["state"], only_run(root)["reason"]) == ("failed", "confirmation refused")
    assert only_confirmation(root)["state"] == "refused"


def test_prompt_timeout(tmp_path: Path, terminals: list[Terminal]) -> None:
    """The one real 30 s wait."""
    root = make_root(tmp_path)
    confirm_service(root)
    started = time.monotonic()
    term = Terminal(root, "svc", "run")
    terminals.append(term)
    term.expect("(yes/no) > ", 20)
    assert term.finish(timeout=60) == 1
    assert time.monotonic() - started >= 29
    text = term.text
    assert re.fullmatch(
        re.escape(PROMPT) + r"\n\d{2}:\d{2}:\d{2},\d{3} {13}ERROR   "
        + re.escape(f"{STOPPED}timeout waiting for confirmation") + r"\n",
        text,
    ), text
    run = only_run(root)
    assert (run["state"], run["reason"]) == ("failed", "confirmation expired")
    row = only_confirmation(root)
    assert (row["state"], row["decided_by"]) == ("expired", None)


def test_stdin_not_a_terminal_and_confirm_option(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    confirm_service(root)
    proc = om(root, "svc", "run")  # stdin is /dev/null
    assert proc.returncode == 1
    assert "This task run requires confirmation." not in proc.stderr
    assert log_lines(proc.stderr) == [("", "ERROR", f"{STOPPED}run aborted (stdin is not a terminal; use --confirm)")]
    run = only_run(root)
    assert (run["state"], run["reason"]) == ("failed", "confirmation refused")
    assert only_confirmation(root)["state"] == "refused"

    proc = om(root, "svc", "run", "--confirm")
    assert proc.returncode == 0, proc.stderr
    assert log_lines(proc.stderr) == [
        ("task#0", "INFO", "run confirmed by --confirm"),
        ("task#0", "INFO", "/bin/echo hello"),
        ("task#0", "INFO", "| hello"),
    ]
    second = db_rows(root, "SELECT * FROM runs ORDER BY id")[1]
    assert (second["trigger"], second["state"]) == ("manual", "done")
    assert len(db_rows(root, "SELECT * FROM confirmations")) == 1  # --confirm asks nobody


def test_optional_refusal_only_warns(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    write_service(root, "svc", """
    [task#0]
    command = /bin/echo zero
    confirmation = true
    optional = true
    [task#1]
    command = /bin/echo one
    """)
    proc = om(root, "svc", "run")
    assert proc.returncode == 0, proc.stderr
    lines = log_lines(proc.stderr)
    assert ("task#0", "WARNING", "ignore run error on optional resource") in lines
    assert ("task#1", "INFO", "| one") in lines and ("task#0", "INFO", "| zero") not in lines
    states = [(r["rid"], r["state"]) for r in db_rows(root, "SELECT rid, state FROM runs ORDER BY id")]
    assert states == [("task#0", "failed"), ("task#1", "done")]


def test_cron_awaits_confirmation_then_confirm_yes_launches(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    confirm_service(root, "/bin/sh -c 'echo \"confirmed run $OM_RUN_ID $OM_TRIGGER\"'", "confirmation_timeout = 2h")
    proc = om(root, "svc", "run", "--cron")
    assert proc.returncode == 0, proc.stderr
    run = only_run(root)
    assert (run["trigger"], run["state"]) == ("cron", "awaiting_confirmation")
    row = only_confirmation(root)
    assert row["state"] == "pending"
    until = row["expires_at"].split(".")[0]  # TZ=UTC: local time is UTC
    assert proc.stdout == (f"task#0: run {run['id']} awaiting confirmation until {until}; "
                           f"confirm with: om svc confirm --run {run['id']} --yes\n")
    requested = row["requested_at"].split(".")[0]
    assert (time.mktime(time.strptime(until, "%Y-%m-%d %H:%M:%S"))
            - time.mktime(time.strptime(requested, "%Y-%m-%d %H:%M:%S"))) == 7200
    assert "hello" not in proc.stderr and "confirmed run" not in proc.stderr
    # markers do not move while awaiting
    marker = db_rows(root, "SELECT * FROM last_runs WHERE rid = 'task#0'")
    assert not marker or marker[0]["last_attempt_at"] is None

    proc = om(root, "svc", "confirm", "--run", str(run["id"]), "--yes")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"run {run['id']} of svc task#0 confirmed\n"
    assert wait_rows(root, "SELECT id FROM runs WHERE id = :r AND state IN ('done', 'failed')", r=run["id"])
    run = only_run(root)
    assert (run["state"], run["exit_code"], run["reason"]) == ("done", 0, "confirmed by root@n1")
    assert run["output_tail"] == f"confirmed run {run['id']} cron\n"
    row = only_confirmation(root)
    assert (row["state"], row["decided_by"]) == ("confirmed", "root@n1")
    marker = db_rows(root, "SELECT * FROM last_runs WHERE rid = 'task#0'")[0]
    assert marker["last_success_at"] == run["scheduled_for"]
