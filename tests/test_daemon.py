"""`om runner daemon`: passes in a loop with second accuracy, SIGTERM exits 0 (SPEC 8.8)."""

import signal
import subprocess
import time
from datetime import datetime

from omtest import db_rows, make_root, om_cmd, om_env, write_service


def test_daemon_runs_sub_minute_schedules_and_stops_on_sigterm(tmp_path):
    root = make_root(tmp_path)
    write_service(root, "fast", """
        [DEFAULT]
        nodes = n1
        topology = flex
        status_schedule = @0

        [task#0]
        command = /bin/true
        schedule = @5s
    """)
    proc = subprocess.Popen(om_cmd("runner", "daemon"), env=om_env(root), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 40
        done = []
        while time.monotonic() < deadline:
            time.sleep(1)
            if (root / "var" / "om.db").exists():
                done = db_rows(root, "SELECT scheduled_for FROM runs WHERE rid = 'task#0' AND state = 'done' "
                                     "ORDER BY id")
                if len(done) >= 3:
                    break
        assert len(done) >= 3, "a @5s task did not run three times in 40 s under the daemon"
        times = [datetime.fromisoformat(r["scheduled_for"]) for r in done]
        gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
        assert all(gap >= 5 for gap in gaps), gaps  # never earlier than the interval
        assert all(gap < 60 for gap in gaps), gaps  # far finer than a cron tick
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    log = (root / "var" / "log" / "runner.log").read_text()
    assert "daemon started" in log and "daemon stopped" in log
