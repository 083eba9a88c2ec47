"""What a parsed service config holds: the service, its defaults and its resources."""

from __future__ import annotations

from dataclasses import dataclass, field

from .problems import Problem
from .values import Requirement


def rid_sort_key(rid: str) -> tuple[str, int, int, str]:
    """SPEC 5.1 order within a family: numeric ids ascending (`task#2` < `task#10`), then others lexically."""
    family, _, ident = rid.partition("#")
    if ident.isascii() and ident.isdigit():
        return (family, 0, int(ident), ident)
    return (family, 1, 0, ident)


@dataclass
class Resource:
    """Fields shared by every resource section; `errors` are the problems that make it invalid."""

    rid: str
    line: int
    disable: bool = False
    errors: list[Problem] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.errors


@dataclass
class TaskConfig(Resource):
    """A `[task#N]` section in force on this node (SPEC 3.3).

    `schedule` is the value in force (own keyword, else DEFAULT.run_schedule);
    a bad one sets `schedule_error` only, and is not in `errors`, because the
    task can still run manually (SPEC 12).
    """

    command: str = ""
    schedule: str = ""
    schedule_error: str | None = None
    user: str | None = None
    group: str | None = None
    cwd: str | None = None
    umask: int | None = None
    environment: dict[str, str] = field(default_factory=dict)
    timeout: int | None = None
    snooze: int = 0
    log: bool = True
    confirmation: bool = False
    confirmation_timeout: int = 3600
    on_error: str | None = None
    max_parallel: int = 1
    check: str = ""
    retcodes: dict[int, str] = field(default_factory=lambda: {0: "up", 1: "down"})
    run_requires: list[Requirement] = field(default_factory=list)
    pre_run: str | None = None
    post_run: str | None = None
    blocking_pre_run: str | None = None
    blocking_post_run: str | None = None
    tags: list[str] = field(default_factory=list)
    subset: str = ""
    optional: bool = False
    # OpenSVC container tasks (type docker|podman|oci): a `<cli> run` argv instead of a command line
    type: str = "host"
    image: str = ""
    entrypoint: str = ""
    volume_mounts: list[str] = field(default_factory=list)
    netns: str = ""
    pidns: str = ""
    rm: bool = True
    run_args: str = ""
    interactive: bool = False
    tty: bool = False
    privileged: bool = False
    name: str = ""

    @property
    def is_container(self) -> bool:
        return self.type != "host"

    def status_for(self, code: int) -> str:
        """The status an exit code maps to; unlisted codes are `warn` (SPEC 3.3)."""
        return self.retcodes.get(code, "warn")


@dataclass
class AppConfig(Resource):
    """An `[app#N]` section (SPEC 3.4)."""

    script: str | None = None
    start: str | None = None
    stop: str | None = None
    check: str | None = None
    timeout: int = 300
    user: str | None = None


@dataclass
class SyncConfig(Resource):
    """A `[sync#N]` section (SPEC 3.4); `schedule` falls back on DEFAULT.sync_schedule."""

    src: list[str] = field(default_factory=list)
    dst: str = ""
    target: list[str] = field(default_factory=lambda: ["drpnodes"])
    schedule: str = ""
    schedule_error: str | None = None
    options: str = "-a"
    timeout: int | None = None
    type: str = "rsync"


@dataclass
class Defaults:
    """The `[DEFAULT]` schedules in force on this node; a bad one is in `schedule_errors` only."""

    run_schedule: str = ""
    status_schedule: str = "@10m"
    comp_schedule: str = "~00:00-06:00"
    comp_modules: list[str] = field(default_factory=list)
    resinfo_schedule: str = "@60m"
    push_schedule: str = "~00:00-06:00"
    sync_schedule: str = "04:00-06:00@121m"
    schedule_errors: dict[str, str] = field(default_factory=dict)


@dataclass
class ServiceConfig:
    """One service file as this node sees it.

    `valid` is False when a service-level error (syntax, duplicate, unreadable
    file, bad name, bad `[DEFAULT]` keyword) makes the whole service inert;
    resource-level errors only invalidate their resource.
    """

    name: str
    path: str
    nodename: str
    text: str = ""
    checksum: str = ""
    valid: bool = True
    problems: list[Problem] = field(default_factory=list)
    topology: str = "failover"
    nodes: list[str] = field(default_factory=list)
    drpnodes: list[str] = field(default_factory=list)
    disable: bool = False
    env: dict[str, str] = field(default_factory=dict)
    defaults: Defaults = field(default_factory=Defaults)
    tasks: dict[str, TaskConfig] = field(default_factory=dict)
    apps: dict[str, AppConfig] = field(default_factory=dict)
    syncs: dict[str, SyncConfig] = field(default_factory=dict)
    ignored: dict[str, int] = field(default_factory=dict)  # rid of an ignored section -> its line
    ignored_why: dict[str, str] = field(default_factory=dict)  # rid of an ignored section -> why
    raw: dict[str, dict[str, str]] = field(default_factory=dict)  # section -> key[@scope] -> value as written
    unread: str | None = None  # why the file was not read at all (a directory, a dangling symlink, refused...)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.is_error]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if not p.is_error]

    def first_error(self) -> str | None:
        errors = self.errors
        return str(errors[0]) if errors else None

    def is_node_of_service(self, nodename: str) -> bool:
        return nodename in self.nodes or nodename in self.drpnodes

    def sorted_task_rids(self) -> list[str]:
        return sorted(self.tasks, key=rid_sort_key)

    def resource(self, rid: str) -> TaskConfig | AppConfig | SyncConfig | None:
        return self.tasks.get(rid) or self.apps.get(rid) or self.syncs.get(rid)


def task_scope(service: ServiceConfig, task: TaskConfig) -> str:
    """`cluster` or `node` (SPEC 8.1).

    On a failover service a task is cluster-scoped when a requirement names
    `instance`, or a resource with states excluding both `down` and `warn`:
    such a task can only run where the service is active.
    """
    if service.topology != "failover":
        return "node"
    for req in task.run_requires:
        if req.target == "instance" or not {"down", "warn"} & set(req.states):
            return "cluster"
    return "node"
