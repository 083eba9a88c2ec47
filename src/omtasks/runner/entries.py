"""The schedule entries a service has on this node, with their static verdicts (SPEC 8.1, 8.2).

An entry is one (service, action, rid) with a schedule.  The verdicts that need
no database (`service_disabled`, `not_here`, `config_invalid`, `disabled`,
`unscheduled`) are settled here; the rest is the evaluator's.
"""

from __future__ import annotations

from dataclasses import dataclass

from omtasks.config import ServiceConfig, TaskConfig, rid_sort_key, task_scope


@dataclass
class Entry:
    service: str
    action: str
    rid: str | None
    config_parameter: str
    definition: str
    scope: str  # '' = cluster, else this node's name
    schedule: object | None  # parsed schedule, None when invalid
    static_verdict: str | None = None
    static_reason: str | None = None
    task: TaskConfig | None = None
    active_only: bool = False  # runs on the active instance of a failover service only

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.service, self.action, self.rid or "")

    @property
    def scope_name(self) -> str:
        return "cluster" if self.scope == "" else "node"

    @property
    def dialect(self) -> str:
        if self.schedule is None:
            return _detect(self.definition)
        return self.schedule.dialect

    @property
    def jitter_key(self) -> str:
        return self.rid or self.action

    @property
    def confirmation(self) -> bool:
        return bool(self.task and self.task.confirmation)

    @property
    def max_parallel(self) -> int:
        return self.task.max_parallel if self.task else 1


def _detect(definition: str) -> str:
    words = definition.split()
    if not words or definition.strip() == "@0":
        return "none"
    if words[0] in ("cron", "anacron"):
        return words[0]
    return "cron" if len(words) == 5 and not definition.startswith("!") else "networker"


def _parse(definition: str):
    from omtasks.schedule import ScheduleSyntaxError, parse_schedule

    try:
        return parse_schedule(definition)
    except ScheduleSyntaxError:
        return None


# service-level actions: (action, DEFAULT keyword)
BUILTINS = (
    ("status", "status_schedule"),
    ("push_resinfo", "resinfo_schedule"),
    ("push_config", "push_schedule"),
    ("compliance_auto", "comp_schedule"),
)


def service_entries(service: ServiceConfig, node: str, node_config=None) -> list[Entry]:
    """Every entry of `service` as `node` sees it: tasks in rid order, syncs, then the built-in actions."""
    entries = []
    for rid in service.sorted_task_rids():
        task = service.tasks[rid]
        scope = "" if task_scope(service, task) == "cluster" else node
        entry = Entry(service.name, "run", rid, f"{rid}.schedule", task.schedule, scope, None, task=task,
                      active_only=service.topology == "failover"
                      and any(r.target == "instance" for r in task.run_requires))
        _settle(entry, service, node, task.errors, task.schedule_error, task.disable)
        entries.append(entry)
    for rid in sorted(service.syncs, key=rid_sort_key):
        sync = service.syncs[rid]
        scope = "" if service.topology == "failover" else node
        entry = Entry(service.name, "sync_update", rid, f"{rid}.schedule", sync.schedule, scope, None,
                      active_only=service.topology == "failover")
        missing = None if sync_targets(service, sync, node) else "no sync target"
        _settle(entry, service, node, sync.errors, sync.schedule_error, sync.disable, missing)
        entries.append(entry)
    collector = bool(node_config is not None and node_config.has_collector)
    for action, keyword in BUILTINS:
        definition = getattr(service.defaults, keyword)
        missing = None
        if action in ("push_resinfo", "push_config") and not collector:
            missing = "no collector configured"
        elif action == "compliance_auto" and not service.defaults.comp_modules:
            missing = "no compliance modules"
        entry = Entry(service.name, action, None, f"DEFAULT.{keyword}", definition, node, None)
        _settle(entry, service, node, [], service.defaults.schedule_errors.get(keyword), False, missing)
        entries.append(entry)
    return entries


def sync_targets(service: ServiceConfig, sync, node: str) -> list[str]:
    """The nodes a sync copies to: its `target` families, this node excluded."""
    nodes: list[str] = []
    for family in sync.target:
        nodes += service.nodes if family == "nodes" else service.drpnodes
    return [n for n in dict.fromkeys(nodes) if n != node]


def _settle(entry: Entry, service: ServiceConfig, node: str, errors, schedule_error: str | None,
            disabled: bool, not_configured: str | None = None) -> None:
    """Static verdicts, first that applies (SPEC 8.2 order)."""
    if service.disable:
        entry.static_verdict, entry.static_reason = "service_disabled", "disabled"
    elif not service.is_node_of_service(node):
        entry.static_verdict, entry.static_reason = "not_here", f"this node is not a node of {service.name}"
    elif not service.valid or errors or schedule_error:
        first = service.first_error() if not service.valid else (str(errors[0]) if errors else schedule_error)
        entry.static_verdict, entry.static_reason = "config_invalid", f"config invalid: {first}"
    elif disabled:
        entry.static_verdict, entry.static_reason = "disabled", "disabled"
    else:
        entry.schedule = _parse(entry.definition)
        if entry.schedule is None:
            entry.static_verdict, entry.static_reason = "config_invalid", "config invalid: bad schedule"
        elif entry.schedule.dialect == "none":
            entry.static_verdict, entry.static_reason = "unscheduled", "unscheduled (manual runs only)"
        elif not_configured:
            entry.static_verdict, entry.static_reason = "not_configured", not_configured
