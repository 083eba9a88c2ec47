"""Service files: sections, types, scoping, references, requirements, scope (SPEC 3, 5.5, 8.1, 12)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omtasks.config import (
    RESERVED_NAMES,
    RUNS_EVERYWHERE,
    Requirement,
    ServiceConfig,
    load_service,
    parse_service_text,
    rid_sort_key,
    task_scope,
)

FLEX = "[DEFAULT]\ntopology = flex\n"


def load(
    tmp_path: Path, text: str, nodename: str = "n1", name: str = "svc", shared_nodes: int = 1
) -> ServiceConfig:
    path = tmp_path / f"{name}.conf"
    path.write_text(text)
    return load_service(path, nodename, shared_nodes=shared_nodes)


def report(service: ServiceConfig) -> list[str]:
    """Problem lines with the path shortened to P."""
    return [str(p).replace(service.path, "P") for p in service.problems]


# -- file level --------------------------------------------------------------------------------


def test_minimal_service_defaults(tmp_path: Path) -> None:
    svc = load(tmp_path, FLEX + "[task#0]\ncommand = /bin/true\n")
    assert svc.valid and svc.problems == []
    assert (svc.name, svc.path) == ("svc", str(tmp_path / "svc.conf"))
    assert (svc.topology, svc.nodes, svc.drpnodes, svc.disable, svc.env) == ("flex", ["n1"], [], False, {})
    d = svc.defaults
    assert (d.run_schedule, d.status_schedule, d.comp_schedule, d.resinfo_schedule) == (
        "",
        "@10m",
        "~00:00-06:00",
        "@60m",
    )
    assert (d.push_schedule, d.sync_schedule, d.comp_modules, d.schedule_errors) == (
        "~00:00-06:00",
        "04:00-06:00@121m",
        [],
        {},
    )
    task = svc.tasks["task#0"]
    assert task.valid and task.errors == [] and task.line == 3
    assert (
        task.command,
        task.schedule,
        task.schedule_error,
        task.user,
        task.group,
        task.cwd,
        task.umask,
    ) == (
        "/bin/true",
        "",
        None,
        None,
        None,
        None,
        None,
    )
    assert (task.environment, task.timeout, task.snooze, task.log, task.confirmation) == (
        {},
        None,
        0,
        True,
        False,
    )
    assert (task.confirmation_timeout, task.on_error, task.max_parallel, task.check) == (3600, None, 1, "")
    assert (task.retcodes, task.run_requires, task.tags, task.subset, task.disable, task.optional) == (
        {0: "up", 1: "down"},
        [],
        [],
        "",
        False,
        False,
    )
    assert (task.pre_run, task.post_run, task.blocking_pre_run, task.blocking_post_run) == (None,) * 4
    assert svc.is_node_of_service("n1") and not svc.is_node_of_service("n2")
    assert svc.first_error() is None


def test_every_task_keyword(tmp_path: Path) -> None:
    svc = load(
        tmp_path,
        FLEX + "[task#0]\n"
        "command = /bin/echo {name}\n"
        "schedule = 09:00\n"
        "user = postgres\n"
        "group = 1001\n"
        "cwd = /srv/{svcname}\n"
        "umask = 027\n"
        "environment = A=1 'B=x y'\n"
        "timeout = 1h30m\n"
        "snooze = 10m\n"
        "log = no\n"
        "confirmation = YES\n"
        "confirmation_timeout = 2h\n"
        "on_error = /bin/mail root\n"
        "max_parallel = 3\n"
        "check = last_run\n"
        "retcodes = 0:up 1:up 2:n/a\n"
        "pre_run = /bin/a\n"
        "post_run = /bin/b\n"
        "blocking_pre_run = /bin/c\n"
        "blocking_post_run = /bin/d\n"
        "tags = a b\n"
        "subset = s1\n"
        "disable = off\n"
        "optional = on\n",
    )
    assert svc.problems == []
    t = svc.tasks["task#0"]
    assert (t.command, t.schedule, t.user, t.group, t.cwd, t.umask) == (
        "/bin/echo svc",
        "09:00",
        "postgres",
        "1001",
        "/srv/svc",
        0o27,
    )
    assert (t.environment, t.timeout, t.snooze, t.log, t.confirmation, t.confirmation_timeout) == (
        {"A": "1", "B": "x y"},
        5400,
        600,
        False,
        True,
        7200,
    )
    assert (t.on_error, t.max_parallel, t.check, t.retcodes) == (
        "/bin/mail root",
        3,
        "last_run",
        {0: "up", 1: "up", 2: "n/a"},
    )
    assert (t.pre_run, t.post_run, t.blocking_pre_run, t.blocking_post_run) == (
        "/bin/a",
        "/bin/b",
        "/bin/c",
        "/bin/d",
    )
    assert (t.tags, t.subset, t.disable, t.optional) == (["a", "b"], "s1", False, True)


def test_checksum_text_and_raw(tmp_path: Path) -> None:
    text = "# c\n[DEFAULT]\nnodes = n1\n[task#0]\ncommand = echo {name}\ncommand@n1 = x\n"
    svc = load(tmp_path, text)
    assert svc.text == text
    assert svc.checksum == hashlib.sha256(text.encode()).hexdigest()
    assert svc.raw == {"DEFAULT": {"nodes": "n1"}, "task#0": {"command": "echo {name}", "command@n1": "x"}}
    same = parse_service_text(text, "p.conf", "svc", "n1")
    assert same.checksum == svc.checksum and same.path == "p.conf"


def test_unreadable_file(tmp_path: Path) -> None:
    svc = load_service(tmp_path / "gone.conf", "n1")
    assert not svc.valid and svc.name == "gone"
    assert report(svc) == ["error: P:0: cannot read: No such file or directory"]
    assert svc.first_error() == f"error: {tmp_path / 'gone.conf'}:0: cannot read: No such file or directory"
    (tmp_path / "dir.conf").mkdir()
    assert not load_service(tmp_path / "dir.conf", "n1").valid


def test_undecodable_bytes(tmp_path: Path) -> None:
    path = tmp_path / "svc.conf"
    data = b"[task#0]\ncommand = caf\xe9\n"
    path.write_bytes(data)
    svc = load_service(path, "n1")
    assert not svc.valid
    assert svc.checksum == hashlib.sha256(data).hexdigest()
    assert report(svc) == ["error: P:2: not UTF-8: byte 0xe9 at offset 22"]


@pytest.mark.parametrize("name", sorted(RESERVED_NAMES))
def test_reserved_names(tmp_path: Path, name: str) -> None:
    svc = load(tmp_path, FLEX, name=name)
    assert not svc.valid
    assert report(svc) == [f"error: P:0: invalid service name '{name}': reserved word"]


@pytest.mark.parametrize("name", ["Pg", "-pg", "pg-", "pg_db", "a" * 64, "p.g"])
def test_bad_names(tmp_path: Path, name: str) -> None:
    svc = load(tmp_path, FLEX, name=name)
    assert not svc.valid
    assert "must match ^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$" in report(svc)[0]


@pytest.mark.parametrize("name", ["a", "pg-db", "9", "a" * 63])
def test_good_names(tmp_path: Path, name: str) -> None:
    assert load(tmp_path, FLEX, name=name).valid


# -- sections and keywords ---------------------------------------------------------------------


def test_syntax_and_duplicates_make_the_service_invalid(tmp_path: Path) -> None:
    svc = load(tmp_path, FLEX + "[task#0]\ncommand = a\ncommand = b\n[task#0]\ncommand = c\nnonsense\n")
    assert not svc.valid
    assert report(svc) == [
        "warning: P:5: [task#0] command: duplicate key (first at line 4), the last one wins",
        "error: P:6: [task#0] duplicate section (first at line 3)",
        "error: P:8: [task#0] expected 'key = value' (no '=' on this line)",
    ]
    assert svc.tasks["task#0"].command == "b"


def test_ignored_and_unknown_sections(tmp_path: Path) -> None:
    svc = load(tmp_path, FLEX + "[fs#1]\ndev = x\n[ip#0]\n[container#0]\n[subset#task:g]\n")
    assert svc.valid
    assert report(svc) == [
        "warning: P:3: [fs#1] section ignored: resource type 'fs' is not supported",
        "warning: P:5: [ip#0] section ignored: resource type 'ip' is not supported",
        "warning: P:6: [container#0] section ignored: resource type 'container' is not supported",
        "warning: P:7: [subset#task:g] section ignored: resource type 'subset' is not supported",
    ]
    assert svc.ignored == {"fs#1": 3, "ip#0": 5, "container#0": 6, "subset#task:g": 7}
    bad = load(tmp_path, FLEX + "[DEFUALT]\nnodes = n1\n[task#a/b]\ncommand = x\n")
    assert not bad.valid
    assert report(bad) == [
        "error: P:3: [DEFUALT] unknown section",
        "error: P:5: [task#a/b] invalid resource id 'a/b'",
    ]


def test_unknown_keyword_invalidates_the_resource_only(tmp_path: Path) -> None:
    svc = load(tmp_path, FLEX + "[task#0]\ncommand = x\ncomand = y\n[task#1]\ncommand = z\n")
    assert svc.valid
    assert report(svc) == ["error: P:5: [task#0] comand: unknown keyword"]
    assert not svc.tasks["task#0"].valid and svc.tasks["task#1"].valid
    assert [str(p).replace(svc.path, "P") for p in svc.tasks["task#0"].errors] == report(svc)
    assert svc.first_error() == str(svc.errors[0])


def test_unknown_default_keyword_invalidates_the_service(tmp_path: Path) -> None:
    svc = load(tmp_path, FLEX + "orchestration = ha\n")
    assert not svc.valid
    assert report(svc) == ["error: P:3: [DEFAULT] orchestration: unknown keyword"]


def test_opensvc_default_keyword_is_a_warning(tmp_path: Path) -> None:
    svc = load(tmp_path, FLEX + "orchestrate = ha\n")
    assert svc.valid
    assert report(svc) == ["warning: P:3: [DEFAULT] orchestrate: OpenSVC keyword ignored by om"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("topology = active", "topology: 'active' is not failover or flex"),
        ("nodes = n1 n/2", "nodes: 'n/2' is not a valid node name"),
        ("disable = perhaps", "disable: 'perhaps' is not a boolean"),
        ("nodes@n1 = n1", "nodes@n1: 'nodes' cannot be scoped"),
        ("topology@nodes = flex", "topology@nodes: 'topology' cannot be scoped"),
        ("nodes = {env.x}", "nodes: {env.x}: [env] references are not allowed here"),
    ],
)
def test_bad_default_keyword(tmp_path: Path, line: str, message: str) -> None:
    svc = load(tmp_path, f"[DEFAULT]\n{line}\n")
    assert not svc.valid
    assert f"error: P:2: [DEFAULT] {message}" in report(svc)


def test_nodes_must_be_set_in_a_cluster(tmp_path: Path) -> None:
    svc = load(tmp_path, "[DEFAULT]\ntopology = flex\n", shared_nodes=2)
    assert not svc.valid and svc.nodes == []
    assert report(svc) == ["error: P:1: [DEFAULT] nodes: must be set when nodes share a database"]
    assert report(load(tmp_path, "[task#0]\ncommand = x\n", shared_nodes=3))[0] == (
        "error: P:0: [DEFAULT] nodes: must be set when nodes share a database"
    )
    empty = load(tmp_path, "[DEFAULT]\nnodes =\n", shared_nodes=2)
    assert report(empty) == ["error: P:2: [DEFAULT] nodes: must be set when nodes share a database"]
    ok = load(tmp_path, "[DEFAULT]\nnodes = n1 n2\ntopology = flex\n", shared_nodes=2)
    assert ok.valid and ok.nodes == ["n1", "n2"]


def test_drpnodes(tmp_path: Path) -> None:
    svc = load(tmp_path, "[DEFAULT]\nnodes = n1 n2\ndrpnodes = n3\ntopology = flex\n", nodename="n3")
    assert svc.valid and svc.drpnodes == ["n3"] and svc.is_node_of_service("n3")
    assert not svc.is_node_of_service("n4")
    both = load(tmp_path, "[DEFAULT]\nnodes = n1 n2\ndrpnodes = n2\n")
    assert not both.valid
    assert "error: P:3: [DEFAULT] drpnodes: node 'n2' is also in nodes" in report(both)


def test_missing_command(tmp_path: Path) -> None:
    svc = load(tmp_path, FLEX + "[task#0]\nuser = x\n[task#1]\ncommand =\n")
    assert report(svc) == [
        "error: P:3: [task#0] command: required keyword missing",
        "error: P:6: [task#1] command: must not be empty",
    ]
    assert svc.valid and not svc.tasks["task#0"].valid and not svc.tasks["task#1"].valid


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("log = maybe", "log: 'maybe' is not a boolean"),
        ("max_parallel = 0", "max_parallel: '0' must be >= 1"),
        ("max_parallel = two", "max_parallel: 'two' is not an integer"),
        ("timeout = 1.5h", "timeout: invalid duration '1.5h'"),
        ("timeout = 0", "timeout: '0' must be >= 1s"),
        ("snooze = soon", "snooze: invalid duration 'soon'"),
        ("confirmation_timeout = 1h30", "confirmation_timeout: invalid duration '1h30'"),
        ("environment = FOO", "environment: 'FOO' has no '='"),
        ("environment = 1A=2", "environment: '1A' is not a valid variable name"),
        ("command = echo 'oops", "command: unbalanced quotes"),
        ('on_error = echo "x', "on_error: unbalanced quotes"),
        ("blocking_pre_run = 'x", "blocking_pre_run: unbalanced quotes"),
        ("umask = 888", "umask: '888' is not an octal umask"),
        ("check = always", "check: 'always' is not last_run"),
        ("retcodes = 0:fine", "retcodes: unknown state 'fine' in '0:fine' (expected up, down, warn, n/a)"),
        ("subset = a b", "subset: 'a b' is not a single word"),
        ("cwd = tmp", "cwd: 'tmp' is not an absolute path"),
        ("user = a b", "user: 'a b' is not a name or id"),
        ("run_requires = app#9", "run_requires: unknown resource 'app#9'"),
        ("run_requires = task#0", "run_requires: task#0 cannot require itself"),
        ("run_requires = instance(upp)", "run_requires: unknown state 'upp' in 'instance(upp)'"),
    ],
)
def test_task_value_errors(tmp_path: Path, line: str, message: str) -> None:
    text = FLEX + "[fs#1]\n[task#0]\n"
    if not line.startswith("command "):
        text += "command = /bin/true\n"
    svc = load(tmp_path, text + line + "\n")
    assert svc.valid
    errors = [str(p).replace(svc.path, "P") for p in svc.errors]
    line_number = text.count("\n") + 1
    assert errors == [f"error: P:{line_number}: [task#0] {message}"]
    assert not svc.tasks["task#0"].valid


def test_bad_values_fall_back_to_defaults(tmp_path: Path) -> None:
    svc = load(tmp_path, FLEX + "[task#0]\ncommand = x\nlog = maybe\nretcodes = 0:x\nmax_parallel = 0\n")
    t = svc.tasks["task#0"]
    assert (t.log, t.retcodes, t.max_parallel) == (True, {0: "up", 1: "down"}, 1)
    assert len(t.errors) == 3


def test_empty_value_means_default(tmp_path: Path) -> None:
    svc = load(tmp_path, FLEX + "[task#0]\ncommand = x\ntimeout =\nlog =\nconfirmation_timeout =\n")
    t = svc.tasks["task#0"]
    assert svc.problems == [] and (t.timeout, t.log, t.confirmation_timeout) == (None, True, 3600)


def test_defaults_are_not_shared(tmp_path: Path) -> None:
    svc = load(tmp_path, FLEX + "[task#0]\ncommand = x\n[task#1]\ncommand = y\n")
    svc.tasks["task#0"].retcodes[5] = "up"
    svc.tasks["task#0"].tags.append("t")
    again = load(tmp_path, FLEX + "[task#0]\ncommand = x\n")
    assert svc.tasks["task#1"].retcodes == {0: "up", 1: "down"} == again.tasks["task#0"].retcodes
    assert svc.tasks["task#1"].tags == []


def test_retcodes_mapping(tmp_path: Path) -> None:
    plain = load(tmp_path, FLEX + "[task#0]\ncommand = x\n").tasks["task#0"]
    assert [plain.status_for(c) for c in (0, 1, 2, 255)] == ["up", "down", "warn", "warn"]
    custom = load(tmp_path, FLEX + "[task#0]\ncommand = x\nretcodes = 0:up 1:up 3:n/a\n").tasks["task#0"]
    assert [custom.status_for(c) for c in (0, 1, 2, 3)] == ["up", "up", "warn", "n/a"]


def test_app_and_sync(tmp_path: Path) -> None:
    svc = load(
        tmp_path,
        "[DEFAULT]\nnodes = n1 n2\ndrpnodes = n3\nsync_schedule = @30m\n"
        "[app#0]\nstart = /bin/start\nstop = /bin/stop\ncheck = /bin/check\nuser = pg\n"
        "[app#1]\ntimeout = 1m\ndisable = yes\n"
        "[sync#0]\nsrc = /a /b\ndst = /c\ntarget = nodes drpnodes\noptions = -a --delete\ntimeout = 1h\n"
        "schedule = 01:00\n[sync#1]\nsrc = /x\ndst = /y\n"
        "[task#0]\ncommand = x\nrun_requires = instance(up)\n",
    )
    assert svc.problems == []
    a0, a1 = svc.apps["app#0"], svc.apps["app#1"]
    assert (a0.start, a0.stop, a0.check, a0.timeout, a0.user, a0.disable) == (
        "/bin/start",
        "/bin/stop",
        "/bin/check",
        300,
        "pg",
        False,
    )
    assert (a1.start, a1.check, a1.timeout, a1.disable) == (None, None, 60, True)
    s0, s1 = svc.syncs["sync#0"], svc.syncs["sync#1"]
    assert (s0.src, s0.dst, s0.target, s0.options, s0.timeout, s0.schedule) == (
        ["/a", "/b"],
        "/c",
        ["nodes", "drpnodes"],
        "-a --delete",
        3600,
        "01:00",
    )
    assert (s1.target, s1.options, s1.timeout, s1.schedule, s1.disable, s1.valid) == (
        ["drpnodes"],
        "-a",
        None,
        "@30m",
        False,
        True,
    )


def test_sync_errors(tmp_path: Path) -> None:
    svc = load(tmp_path, FLEX + "[sync#0]\ntarget = all\ndst = rel\n[sync#1]\nsrc = /a\ndst = /b\n")
    assert report(svc) == [
        "error: P:3: [sync#0] src: required keyword missing",
        "error: P:4: [sync#0] target: 'all' is not nodes or drpnodes",
        "error: P:5: [sync#0] dst: 'rel' is not an absolute path",
    ]
    assert not svc.syncs["sync#0"].valid and svc.syncs["sync#1"].valid
    assert svc.syncs["sync#1"].schedule == "04:00-06:00@121m"


def test_problems_sorted_by_line(tmp_path: Path) -> None:
    svc = load(tmp_path, FLEX + "[task#1]\ncommand = x\nlog = ?\n[task#0]\nlog = !\nbogus = 1\n")
    assert [p.line for p in svc.problems] == sorted(p.line for p in svc.problems)
    assert len(svc.errors) == 4 and svc.warnings == []


# -- scoping -----------------------------------------------------------------------------------

SCOPED = (
    "[DEFAULT]\nnodes = n1 n2\ndrpnodes = n3 n4\ntopology = flex\n"
    "[task#0]\ncommand = x\n"
    "timeout = 1m\n"
    "timeout@nodes = 2m\n"
    "timeout@drpnodes = 3m\n"
    "timeout@n2 = 4m\n"
    "timeout@n4 = 5m\n"
)


@pytest.mark.parametrize(
    ("node", "seconds"), [("n1", 120), ("n2", 240), ("n3", 180), ("n4", 300), ("n9", 60)]
)
def test_scoping_precedence(tmp_path: Path, node: str, seconds: int) -> None:
    svc = load(tmp_path, SCOPED, nodename=node)
    assert svc.problems == []
    assert svc.tasks["task#0"].timeout == seconds


def test_scoping_only_plain(tmp_path: Path) -> None:
    svc = load(
        tmp_path, "[DEFAULT]\nnodes = n1 n2\ntopology = flex\n[task#0]\ncommand = x\ntimeout@n2 = 4m\n"
    )
    assert svc.tasks["task#0"].timeout is None
    assert (
        load(tmp_path, "[DEFAULT]\nnodes = n1 n2\ntopology = flex\n[task#0]\ncommand@n1 = y\n")
        .tasks["task#0"]
        .command
        == "y"
    )


def test_scoping_of_default_and_env(tmp_path: Path) -> None:
    text = (
        "[DEFAULT]\nnodes = n1 n2\ntopology = flex\ndisable@n2 = true\nstatus_schedule@nodes = @5m\n"
        "comp_modules = a b\ncomp_modules@n1 = c\n[env]\nk = plain\nk@n2 = two\n"
    )
    one, two = load(tmp_path, text, nodename="n1"), load(tmp_path, text, nodename="n2")
    assert (one.disable, two.disable) == (False, True)
    assert one.defaults.status_schedule == "@5m" == two.defaults.status_schedule
    assert (one.defaults.comp_modules, two.defaults.comp_modules) == (["c"], ["a", "b"])
    assert (one.env, two.env) == ({"k": "plain"}, {"k": "two"})


def test_scope_outside_nodes_is_a_warning(tmp_path: Path) -> None:
    svc = load(tmp_path, "[DEFAULT]\nnodes = n1\ntopology = flex\n[task#0]\ncommand = x\ntimeout@n9 = 1m\n")
    assert svc.valid and svc.tasks["task#0"].valid
    assert report(svc) == [
        "warning: P:6: [task#0] timeout@n9: scope '@n9' names a node outside nodes and drpnodes"
    ]


def test_bad_scope_is_an_error(tmp_path: Path) -> None:
    svc = load(tmp_path, FLEX + "[task#0]\ncommand = x\ntimeout@n/1 = 1m\n")
    assert report(svc) == ["error: P:5: [task#0] timeout@n/1: invalid scope '@n/1'"]
    assert not svc.tasks["task#0"].valid


def test_every_variant_is_type_checked(tmp_path: Path) -> None:
    svc = load(
        tmp_path, "[DEFAULT]\nnodes = n1 n2\ntopology = flex\n[task#0]\ncommand = x\ntimeout@n2 = 1.5h\n"
    )
    assert report(svc) == ["error: P:6: [task#0] timeout@n2: invalid duration '1.5h'"]
    assert not svc.tasks["task#0"].valid


# -- references --------------------------------------------------------------------------------


def test_references(tmp_path: Path) -> None:
    svc = load(
        tmp_path,
        FLEX + "[env]\ndir = /srv/{name}\nWho = {nodename}\n"
        "[task#0]\ncommand = awk '{print $1}' {env.dir}/{svcname}.{nodename} {env.WHO} {unknown} {env} {env.who\n"
        "environment = D={env.dir}\n",
        nodename="n7",
        name="pgdb",
    )
    assert svc.problems == []
    assert svc.env == {"dir": "/srv/pgdb", "who": "n7"}
    t = svc.tasks["task#0"]
    assert t.command == "awk '{print $1}' /srv/pgdb/pgdb.n7 n7 {unknown} {env} {env.who"
    assert t.environment == {"D": "/srv/pgdb"}


def test_missing_env_key(tmp_path: Path) -> None:
    svc = load(tmp_path, FLEX + "[env]\na = 1\n[task#0]\ncommand = echo {env.b}\n")
    assert report(svc) == ["error: P:6: [task#0] command: {env.b}: no key 'b' in [env]"]
    assert svc.valid and not svc.tasks["task#0"].valid


def test_env_references_env_without_cycles(tmp_path: Path) -> None:
    svc = load(tmp_path, FLEX + "[env]\nb = {env.a}/x\na = 1\n")
    assert report(svc) == [] and svc.env == {"a": "1", "b": "1/x"}
    svc = load(tmp_path, FLEX + "[env]\na = {env.b}\nb = {env.a}\n")
    assert report(svc) == [
        "error: P:4: [env] a: {env.a}: reference cycle a -> b -> a",
        "error: P:5: [env] b: {env.b}: reference cycle b -> a -> b",
    ]
    assert not svc.valid


# -- requirements and scope --------------------------------------------------------------------


def test_requires_alias(tmp_path: Path) -> None:
    svc = load(tmp_path, FLEX + "[app#0]\n[task#0]\ncommand = x\nrequires = app#0(stdby up, down)\n")
    assert report(svc) == ["warning: P:6: [task#0] requires: deprecated alias of run_requires"]
    assert svc.tasks["task#0"].run_requires == [Requirement("app#0", ("stdby up", "down"))]


def test_requires_and_run_requires(tmp_path: Path) -> None:
    svc = load(tmp_path, FLEX + "[task#0]\ncommand = x\nrequires = instance\nrun_requires = instance(up)\n")
    assert report(svc) == ["error: P:5: [task#0] requires: cannot be set together with run_requires"]
    task = svc.tasks["task#0"]
    assert not task.valid and task.run_requires == [Requirement("instance", ("up",))]


def test_requires_targets(tmp_path: Path) -> None:
    svc = load(
        tmp_path,
        FLEX + "[app#0]\nbogus = 1\n[sync#s]\nsrc = /a\ndst = /b\n[task#1]\ncommand = y\n"
        "[task#0]\ncommand = x\nrun_requires = instance app#0(down) sync#s(up,warn) task#1\n",
    )
    # app#0 is invalid: a requirement naming it is unmet at run time, not a config error
    assert svc.tasks["task#0"].valid
    assert [r.target for r in svc.tasks["task#0"].run_requires] == ["instance", "app#0", "sync#s", "task#1"]


def test_failover_warning(tmp_path: Path) -> None:
    svc = load(tmp_path, "[task#0]\ncommand = x\n[task#1]\ncommand = y\nrun_requires = instance(up)\n")
    assert svc.valid
    assert report(svc) == [f"warning: P:1: [task#0] run_requires: {RUNS_EVERYWHERE}"]
    assert (
        RUNS_EVERYWHERE
        == "runs on every node; add run_requires = instance(up) to run only on the active instance"
    )
    assert load(tmp_path, FLEX + "[task#0]\ncommand = x\n").problems == []


@pytest.mark.parametrize(
    ("requires", "scope"),
    [
        ("", "node"),
        ("instance", "cluster"),
        ("instance(up)", "cluster"),
        ("instance(down)", "cluster"),
        ("app#0", "cluster"),
        ("app#0(up)", "cluster"),
        ("app#0(n/a)", "cluster"),
        ("app#0(up,down)", "node"),
        ("app#0(up,warn)", "node"),
        ("app#0(up,down) instance", "cluster"),
    ],
)
def test_task_scope(tmp_path: Path, requires: str, scope: str) -> None:
    body = "[app#0]\n[task#0]\ncommand = x\n" + (f"run_requires = {requires}\n" if requires else "")
    failover = load(tmp_path, body)
    assert task_scope(failover, failover.tasks["task#0"]) == scope
    flex = load(tmp_path, FLEX + body)
    assert task_scope(flex, flex.tasks["task#0"]) == "node"


# -- ordering ----------------------------------------------------------------------------------


def test_rid_order(tmp_path: Path) -> None:
    rids = ["task#10", "task#b", "task#2", "task#a", "task#02x", "task#1"]
    svc = load(tmp_path, FLEX + "".join(f"[{r}]\ncommand = x\n" for r in rids))
    assert svc.sorted_task_rids() == ["task#1", "task#2", "task#10", "task#02x", "task#a", "task#b"]
    assert sorted(["app#10", "app#9", "task#0"], key=rid_sort_key) == ["app#9", "app#10", "task#0"]
    assert svc.resource("task#2") is svc.tasks["task#2"] and svc.resource("app#0") is None


# -- schedules ---------------------------------------------------------------------------------


def test_bad_schedule_only_unschedules(tmp_path: Path) -> None:
    svc = load(tmp_path, FLEX + "[task#0]\ncommand = x\nschedule = 25:00\n")
    assert svc.valid
    assert report(svc) == [
        "error: P:5: [task#0] schedule: invalid schedule '25:00': time '25:00' out of range"
    ]
    task = svc.tasks["task#0"]
    assert task.valid and task.errors == []
    assert (task.schedule, task.schedule_error) == (
        "25:00",
        "invalid schedule '25:00': time '25:00' out of range",
    )


def test_schedule_fallback_and_scoping(tmp_path: Path) -> None:
    text = (
        "[DEFAULT]\nnodes = n1 n2\ntopology = flex\nrun_schedule = 02:00\nrun_schedule@n2 = 03:00\n"
        "[task#0]\ncommand = x\n[task#1]\ncommand = y\nschedule =\n[task#2]\ncommand = z\nschedule = @0\n"
        "[task#3]\ncommand = w\nschedule = cron 30 2 * * 1-5\nschedule@n2 =  @1h  \n"
    )
    one, two = load(tmp_path, text, nodename="n1"), load(tmp_path, text, nodename="n2")
    assert one.problems == [] == two.problems
    assert [one.tasks[f"task#{i}"].schedule for i in range(4)] == ["02:00", "", "@0", "cron 30 2 * * 1-5"]
    assert [two.tasks[f"task#{i}"].schedule for i in range(4)] == ["03:00", "", "@0", "@1h"]


def test_bad_default_schedule(tmp_path: Path) -> None:
    svc = load(
        tmp_path,
        FLEX
        + "run_schedule = 24:00\nstatus_schedule = mnday\n[task#0]\ncommand = x\n[task#1]\ncommand = y\nschedule = 01:00\n",
    )
    assert svc.valid
    assert [p.keyword for p in svc.errors] == ["run_schedule", "status_schedule"]
    assert (
        svc.defaults.schedule_errors["run_schedule"] == "invalid schedule '24:00': time '24:00' out of range"
    )
    assert "status_schedule" in svc.defaults.schedule_errors
    assert svc.tasks["task#0"].schedule_error == svc.defaults.schedule_errors["run_schedule"]
    assert svc.tasks["task#0"].valid
    assert svc.tasks["task#1"].schedule_error is None


def test_schedule_references_and_sync_schedule_error(tmp_path: Path) -> None:
    svc = load(
        tmp_path,
        FLEX
        + "[env]\nat = 09:00\n[sync#0]\nsrc = /a\ndst = /b\nschedule = {env.at}\n[sync#1]\nsrc = /a\ndst = /b\nschedule = 99:00\n",
    )
    assert svc.syncs["sync#0"].schedule == "09:00"
    assert svc.syncs["sync#1"].schedule_error == "invalid schedule '99:00': time '99:00' out of range"
    assert svc.syncs["sync#1"].valid


# -- bad input never raises --------------------------------------------------------------------

_KEYS = sorted(
    {"nodes", "drpnodes", "topology", "disable", "run_schedule", "comp_modules", "sync_schedule", "command"}
    | {"schedule", "timeout", "environment", "retcodes", "run_requires", "requires", "umask", "src", "dst"}
    | {"target", "max_parallel", "log", "bogus", "schedule@n1", "timeout@nodes", "command@n/1", "k"}
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["DEFAULT", "env", "task#0", "task#1", "app#0", "sync#0", "fs#0", "x"]),
            st.sampled_from(_KEYS),
            st.text(max_size=30).map(lambda s: s.replace("\n", " ").replace("\r", " ")),
        ),
        max_size=12,
    ),
    st.integers(1, 3),
)
def test_structured_garbage_never_raises(items: list[tuple[str, str, str]], shared_nodes: int) -> None:
    text = "".join(f"[{section}]\n{key} = {value}\n" for section, key, value in items)
    svc = parse_service_text(text, "p", "svc", "n1", shared_nodes=shared_nodes)
    assert svc.valid == (not any(p.is_error and p.line in _fatal_lines(svc) for p in svc.problems))
    for problem in svc.problems:
        assert str(problem).startswith(f"{problem.severity}: p:{problem.line}: ")


def _fatal_lines(svc: ServiceConfig) -> set[int]:
    """Lines of errors that belong to no resource: exactly the service-level ones."""
    owned = {id(p) for r in [*svc.tasks.values(), *svc.apps.values(), *svc.syncs.values()] for p in r.errors}
    schedules = {r.schedule_error for r in [*svc.tasks.values(), *svc.syncs.values()]}
    schedules |= set(svc.defaults.schedule_errors.values())
    return {p.line for p in svc.errors if id(p) not in owned and p.message not in schedules}


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_any_text_never_raises(text: str) -> None:
    svc = parse_service_text(text, "p", "svc", "n1")
    assert svc.problems == sorted(svc.problems, key=lambda p: p.line)
