"""The collector's fleet page and /metrics (issue 8): a real node pushing to a real `om collector serve`.

The browser test drives Debian's chromium headless through chromium-driver
(scripts/install puts them in place); its screenshot is saved under the test's
tmp dir, and also under $OM_TEST_ARTIFACTS when set.
"""

from __future__ import annotations

import base64
import http.client
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from omtest import make_root, om, tick, write_node_conf, write_service
from test_collector import OM_BIN, Collector, add_node, om_env, running_collector

DAY = "2026-12-01"
SVC = """
[task#0]
command = /bin/sh -c 'echo broken; exit 3'
schedule = @10m

[task#1]
command = true
schedule = @10m
"""


def add_viewer(root: Path, name: str) -> str:
    proc = subprocess.run([OM_BIN, "collector", "add-viewer", name], env=om_env(root), capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def get(c: Collector, path: str, user: str | None = None, password: str | None = None) -> tuple[int, str, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", c.port, timeout=30)
    headers = {}
    if user is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read().decode(), dict(resp.getheaders())
    finally:
        conn.close()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Collector, str]]:
    """A collector that received node n1's pushes after a failing and a succeeding task ran; viewer 'ops'."""
    base = tmp_path_factory.mktemp("fleet")
    croot = base / "collector"
    token = add_node(croot, "n1")
    password = add_viewer(croot, "ops")
    root = make_root(base)
    write_service(root, "web", SVC)
    with running_collector(croot) as c:
        write_node_conf(root, url=c.url, token=token)
        for hhmm in ("00:00", "00:10", "01:00"):
            tick(root, f"{DAY}T{hhmm}:00+00:00")
        proc = om(root, "web", "freeze")
        assert proc.returncode == 0, proc.stderr
        tick(root, f"{DAY}T01:10:00+00:00")
        yield c, password


def test_add_viewer_prints_a_password_stored_as_a_scrypt_hash(tmp_path: Path) -> None:
    root = tmp_path / "omroot"
    password = add_viewer(root, "alice")
    assert len(password) >= 20
    from sqlalchemy import create_engine, text

    engine = create_engine(f"sqlite:///{root / 'var' / 'collector.db'}")
    with engine.connect() as conn:
        [(stored,)] = conn.execute(text("SELECT password_hash FROM collector_viewers WHERE name = 'alice'")).all()
    engine.dispose()
    assert stored.startswith("scrypt$") and password not in stored
    again = add_viewer(root, "alice")
    assert again != password


def test_add_viewer_refuses_a_bad_name(tmp_path: Path) -> None:
    proc = subprocess.run([OM_BIN, "collector", "add-viewer", "a b"], env=om_env(tmp_path / "omroot"),
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "'a b' is not a viewer name" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_fleet_page_needs_a_viewer_password_not_a_node_token(fleet) -> None:
    c, password = fleet
    status, _, headers = get(c, "/")
    assert status == 401 and headers["www-authenticate"].startswith('Basic realm="om collector"')
    assert get(c, "/", "ops", "wrong")[0] == 401
    assert get(c, "/", "nobody", password)[0] == 401
    assert get(c, "/metrics")[0] == 401
    conn = http.client.HTTPConnection("127.0.0.1", c.port, timeout=30)
    conn.request("GET", "/", headers={"Authorization": "Bearer " + password})
    assert conn.getresponse().status == 401
    conn.close()
    assert get(c, "/", "ops", password)[0] == 200


def test_fleet_page_lists_nodes_instances_and_the_failing_task_first(fleet) -> None:
    c, password = fleet
    status, page, _ = get(c, "/", "ops", password)
    assert status == 200
    assert "1 node(s), 1 instance(s), 2 task(s)" in page and "1 failing" in page
    tasks = page[page.index('id="tasks"'):page.index('id="instances"')]
    rows = re.findall(r"<tr class=\"(\w*)\">(.*?)</tr>", tasks, re.S)
    assert [("task#0" in r, cls) for cls, r in rows] == [(True, "failing"), (False, "")]
    assert ">failed<" in rows[0][1] and "<td>3</td>" in rows[0][1]
    assert ">done<" in rows[1][1] and "<td>0</td>" in rows[1][1]
    instances = page[page.index('id="instances"'):page.index('id="nodes"')]
    assert "<td>n1</td>" in instances and "frozen" in instances
    nodes = page[page.index('id="nodes"'):]
    assert "<td>n1</td>" in nodes and " ago (" in nodes


def test_service_page_shows_schedules_and_last_runs(fleet) -> None:
    c, password = fleet
    status, page, _ = get(c, "/services/web", "ops", password)
    assert status == 200
    assert "<code>@10m</code>" in page and "echo broken; exit 3" in page
    runs = page[page.index('id="runs"'):]
    assert runs.count("task#0") >= 2 and ">failed<" in runs and ">done<" in runs
    assert "<td>exit code 3</td>" in runs
    assert get(c, "/services/nothing", "ops", password)[0] == 404


def test_metrics_in_prometheus_text_format(fleet) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    c, password = fleet
    status, text, headers = get(c, "/metrics", "ops", password)
    assert status == 200 and headers["content-type"].startswith("text/plain; version=")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    key = (("node", "n1"), ("rid", "task#0"), ("service", "web"))
    ok = (("node", "n1"), ("rid", "task#1"), ("service", "web"))
    assert samples[("om_task_last_exit_code", key)] == 3
    assert samples[("om_task_last_exit_code", ok)] == 0
    assert samples[("om_task_runs", (*key[:2], ("service", "web"), ("state", "failed")))] >= 1
    assert ("om_task_last_success_timestamp_seconds", key) not in samples
    assert samples[("om_task_last_success_timestamp_seconds", ok)] > 0
    assert samples[("om_task_last_end_timestamp_seconds", key)] > 0
    assert samples[("om_collector_node_last_push_age_seconds", (("node", "n1"),))] >= 0
    assert samples[("om_collector_node_last_push_timestamp_seconds", (("node", "n1"),))] > 0


def _chromium() -> tuple[str, str] | None:
    browser = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.mark.skipif(_chromium() is None, reason="chromium and chromium-driver are not installed (scripts/install)")
def test_fleet_page_in_a_headless_browser_shows_the_failing_task(fleet, tmp_path: Path) -> None:
    import sys

    c, password = fleet
    browser, driver_path = _chromium()
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("fleet_browser.py")), c.url, password,
                           browser, driver_path, str(tmp_path)], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "fleet.png").stat().st_size > 1000 and (tmp_path / "service.png").exists()


def test_pushed_text_is_escaped_in_the_pages(tmp_path: Path) -> None:
    from test_collector import call, push_body

    root = tmp_path / "collector"
    token = add_node(root, "n1")
    password = add_viewer(root, "ops")
    service = "<b>svc"
    with running_collector(root) as c:
        status = push_body(service=service)
        resinfo = push_body(service=service, kind="resinfo", payload={"resources": [
            {"rid": "task#0", "command": "<script>alert(1)</script>", "schedule": "@1h", "runs": {"failed": 1},
             "recent": [{"id": 1, "state": "failed", "exit_code": 1, "reason": "<i>why</i>"}]}]})
        for body in (status, resinfo):
            assert call(c, "POST", "/v1/push", token=token, body=body)[0] == 201
        _, fleet_page, _ = get(c, "/", "ops", password)
        _, service_page, _ = get(c, "/services/%3Cb%3Esvc", "ops", password)
    assert "&lt;b&gt;svc" in fleet_page and "<b>svc" not in fleet_page
    assert 'href="/services/%3Cb%3Esvc"' in fleet_page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in service_page and "<script>" not in service_page
    assert "&lt;i&gt;why&lt;/i&gt;" in service_page
