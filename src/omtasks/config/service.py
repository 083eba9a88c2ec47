"""Assemble and validate a service config: sections, scoping, references, types (SPEC 3, 12)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from .ini import Entry, IniDocument, Section, parse_ini
from .keywords import CONTAINER_TASK_KEYWORDS, DEFAULT_KEYWORDS, RESOURCE_KEYWORDS, TASK_ALIASES, Keyword
from .model import AppConfig, Defaults, Resource, ServiceConfig, SyncConfig, TaskConfig
from .opensvc import CLUSTER_WIDE, CONTAINER_TASK_IGNORED, INTERNAL_SYNC, SYNC_TYPES, cluster_nodes, ignored_keyword
from .problems import Problem, sort_problems
from .references import expand
from .source import MAX_SECTIONS, MAX_VALUE_CHARS, read_config
from .values import SCOPE_GROUPS, Requirement, is_node_name, parse_requires

SERVICE_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
RESERVED_NAMES = frozenset({"node", "runner", "schedule", "db", "collector", "confirmations", "ls"})
RESOURCE_ID_RE = re.compile(r"[A-Za-z0-9_.-]+", re.ASCII)

RUNS_EVERYWHERE = "runs on every node; add run_requires = instance(up) to run only on the active instance"


def check_service_name(name: str) -> str | None:
    """Why `name` cannot name a service, or None when it can."""
    if len(name) > 80:
        return f"invalid service name '{name[:80]}...': longer than 63 characters"
    if name in RESERVED_NAMES:
        return f"invalid service name '{name}': reserved word"
    if not SERVICE_NAME_RE.match(name):
        return f"invalid service name '{name}': must match {SERVICE_NAME_RE.pattern}"
    return None


@lru_cache(maxsize=4096)
def schedule_error(value: str) -> str | None:
    """The schedule engine's message for a bad schedule, else None (cached: files share values)."""
    from omtasks.schedule import ScheduleSyntaxError, parse_schedule

    try:
        parse_schedule(value)
    except ScheduleSyntaxError as exc:
        return str(exc)
    return None


def load_service(path: str | Path, nodename: str, *, shared_nodes: int = 1) -> ServiceConfig:
    """Read and validate `path`; never raises for bad content, problems go into `.problems`.

    The file goes through `source.read_config` (ownership, symlinks, size, binary,
    BOM); any exception while validating it makes the service invalid with the
    message, so one hostile file never stops a command that reads them all.
    """
    path = Path(path)
    source = read_config(path)
    if source.text is None:
        # nodes = this node: its entries then say config_invalid here, not "not a node of"
        service = ServiceConfig(name=path.stem, path=str(path), nodename=nodename, valid=False,
                                nodes=[nodename], unread=source.error or "cannot read")
        if source.data:
            service.checksum = hashlib.sha256(source.data).hexdigest()
        service.problems.append(Problem("error", str(path), source.line, "", "", source.error or "cannot read"))
        return service
    return _build_safely(str(path), path.stem, nodename, shared_nodes, source.text, source.data)


def _build_safely(path: str, name: str, nodename: str, shared_nodes: int, text: str, data: bytes) -> ServiceConfig:
    try:
        return _Builder(path, name, nodename, shared_nodes).build(text, data)
    except Exception as exc:  # noqa: BLE001 - one hostile file must not stop the others
        service = ServiceConfig(name=name, path=path, nodename=nodename, valid=False)
        service.checksum = hashlib.sha256(data).hexdigest()
        detail = str(exc).splitlines()[0][:200] if str(exc) else ""
        service.problems.append(Problem("error", path, 0, "", "", f"cannot be validated: {type(exc).__name__}"
                                        + (f": {detail}" if detail else "")))
        return service


def parse_service_text(
    text: str, path: str, name: str, nodename: str, *, shared_nodes: int = 1
) -> ServiceConfig:
    """Validate `text` as the content of service `name` (used by `create`/`set` before writing)."""
    return _build_safely(str(path), name, nodename, shared_nodes, text, text.encode("utf-8", "surrogatepass"))


@dataclass
class _Resolved:
    """The value of one keyword in force on this node."""

    value: Any
    entry: Entry | None  # None: the keyword is not set
    error: str | None = None


class _Builder:
    """Turns one file's text into a ServiceConfig; holds the context references and scoping need."""

    def __init__(self, path: str, name: str, nodename: str, shared_nodes: int) -> None:
        self.path = path
        self.name = name
        self.nodename = nodename
        self.shared_nodes = shared_nodes
        self.problems: list[Problem] = []
        self.fatal = False
        self.nodes: list[str] = []
        self.drpnodes: list[str] = []
        self.env: dict[str, str] = {}

    # -- reporting -------------------------------------------------------------------------------

    def report(
        self,
        severity: str,
        line: int,
        section: str,
        keyword: str,
        message: str,
        *,
        sink: list[Problem] | None = None,
        fatal: bool = True,
    ) -> None:
        """Record a problem; an error goes to its resource's `sink`, else it is service-level (fatal)."""
        problem = Problem(severity, self.path, line, section, keyword, message)
        self.problems.append(problem)
        if severity == "error":
            if sink is not None:
                sink.append(problem)
            elif fatal:
                self.fatal = True

    # -- assembly --------------------------------------------------------------------------------

    def build(self, text: str, data: bytes) -> ServiceConfig:
        service = ServiceConfig(name=self.name, path=self.path, nodename=self.nodename, text=text)
        service.checksum = hashlib.sha256(data).hexdigest()
        name_problem = check_service_name(self.name)
        if name_problem:
            self.report("error", 0, "", "", name_problem)
        doc = parse_ini(text, last_key_wins=True)
        for issue in doc.issues:
            self.report(issue.severity, issue.line, issue.section, issue.keyword, issue.message)
        if not self._within_limits(doc):
            service.valid = False
            service.problems = sort_problems(self.problems)
            return service
        service.raw = {s.name: {k: e.value for k, e in s.entries.items()} for s in doc.sections.values()}
        resources = self._classify(doc, service)
        default = doc.sections.get("DEFAULT", Section("DEFAULT", 0))
        self._nodes(default, service)
        self.env = service.env = self._env(doc.sections.get("env"))
        values = self._resolve(default, list(default.entries.values()), DEFAULT_KEYWORDS, sink=None)
        service.disable = values["disable"].value
        service.defaults = Defaults(
            comp_modules=values["comp_modules"].value,
            **{k: r.value for k, r in values.items() if DEFAULT_KEYWORDS[k].is_schedule},
            schedule_errors={
                k: r.error for k, r in values.items() if r.error and DEFAULT_KEYWORDS[k].is_schedule
            },
        )
        known = {s.name for s in resources}
        for section in resources:
            family = section.name.partition("#")[0]
            if family == "task":
                service.tasks[section.name] = self._task(section, service, known)
            elif family == "app":
                service.apps[section.name] = self._app(section)
            else:
                service.syncs[section.name] = self._sync(section, service.defaults)
        service.valid = not self.fatal
        service.problems = sort_problems(self.problems)
        return service

    def _within_limits(self, doc: IniDocument) -> bool:
        """MAX_SECTIONS sections and MAX_VALUE_CHARS per value (docs/security.md); False stops validation."""
        if len(doc.sections) > MAX_SECTIONS:
            self.report("error", 0, "", "", f"too many sections ({len(doc.sections)}, at most {MAX_SECTIONS})")
            return False
        ok = True
        for section in doc.sections.values():
            for entry in section.entries.values():
                if len(entry.value) > MAX_VALUE_CHARS:
                    self.report("error", entry.line, section.name, entry.key,
                                f"value too long ({len(entry.value)} characters, at most {MAX_VALUE_CHARS})")
                    ok = False
        return ok

    def _classify(self, doc: IniDocument, service: ServiceConfig) -> list[Section]:
        """Resource sections om runs, in file order; ignored and unknown sections are reported."""
        resources = []
        for section in doc.sections.values():
            if section.name in ("DEFAULT", "env"):
                continue
            family, sharp, ident = section.name.partition("#")
            if not sharp:
                self.report("error", section.line, section.name, "", "unknown section")
            elif self._opensvc_sync(section, service):
                continue
            elif family not in RESOURCE_KEYWORDS:
                service.ignored[section.name] = section.line
                self.report(
                    "warning",
                    section.line,
                    section.name,
                    "",
                    f"section ignored: resource type '{family}' is not supported",
                )
            elif not RESOURCE_ID_RE.fullmatch(ident):
                self.report("error", section.line, section.name, "", f"invalid resource id '{ident}'")
            else:
                resources.append(section)
        return resources

    def _opensvc_sync(self, section: Section, service: ServiceConfig) -> bool:
        """`[sync#i0]` and syncs of a type om does not run: kept as ignored sections; True when so."""
        if section.name == INTERNAL_SYNC:
            why = "OpenSVC's internal config sync: nothing to do"
        else:
            entry = section.entries.get("type")
            kind = entry.value.strip() if entry is not None else "rsync"
            if not section.name.startswith("sync#") or kind in SYNC_TYPES:
                return False
            why = f"sync type '{kind}' is not run by om: the section does nothing"
            self.report("warning", entry.line, section.name, "type", why)
        service.ignored[section.name] = section.line
        service.ignored_why[section.name] = why
        return True

    def _nodes(self, default: Section, service: ServiceConfig) -> None:
        """`nodes`, `drpnodes`, `topology`: unscoped, resolved first because scoping depends on them."""
        entries = [
            replace(e, value=" ".join(cluster_nodes(self.nodename)))  # OpenSVC: every node of the cluster
            if e.keyword == "nodes" and e.value.strip() in CLUSTER_WIDE
            else e
            for e in default.entries.values()
        ]
        values = self._resolve(default, entries, DEFAULT_KEYWORDS, sink=None, only_unscopable=True)
        nodes, drpnodes = values["nodes"], values["drpnodes"]
        if nodes.value:
            self.nodes = nodes.value
        elif self.shared_nodes > 1:
            line = nodes.entry.line if nodes.entry else default.line
            self.report("error", line, "DEFAULT", "nodes", "must be set when nodes share a database")
        elif nodes.error is None:
            self.nodes = [self.nodename]
        for node in drpnodes.value:
            if node in self.nodes:
                line = drpnodes.entry.line if drpnodes.entry else default.line
                self.report("error", line, "DEFAULT", "drpnodes", f"node '{node}' is also in nodes")
            else:
                self.drpnodes.append(node)
        service.nodes, service.drpnodes = self.nodes, self.drpnodes
        service.topology = values["topology"].value

    def _env(self, section: Section | None) -> dict[str, str]:
        """`[env]` keys in force; their values may use {name} and {nodename}, not other env keys."""
        if section is None:
            return {}
        groups: dict[str, list[Entry]] = {}
        for entry in section.entries.values():
            if self._scope_ok(section.name, entry, sink=None):
                groups.setdefault(entry.keyword, []).append(entry)
        chosen = {keyword: self._select(entries) for keyword, entries in groups.items()}
        raw = {keyword: entry.value for keyword, entry in chosen.items() if entry is not None}
        env: dict[str, str] = {}
        for keyword, entries in groups.items():
            for entry in entries:
                try:
                    value = _expand_env(entry.value, self.name, self.nodename, raw, (keyword,))
                except ValueError as exc:
                    self.report("error", entry.line, section.name, entry.key, str(exc))
                    continue
                if entry is chosen[keyword]:
                    env[keyword] = value
        return env

    # -- scoping ---------------------------------------------------------------------------------

    def _select(self, entries: list[Entry]) -> Entry | None:
        """The entry in force here: `@<nodename>` > `@nodes`/`@drpnodes` > plain (SPEC 3.6)."""
        by_scope = {e.scope: e for e in entries}
        if self.nodename in by_scope:
            return by_scope[self.nodename]
        for group, members in (("nodes", self.nodes), ("drpnodes", self.drpnodes)):
            if group in by_scope and self.nodename in members:
                return by_scope[group]
        return by_scope.get(None)

    def _scope_ok(self, section: str, entry: Entry, sink: list[Problem] | None) -> bool:
        """Check a key's scope: bad syntax is an error, a node outside the service a warning."""
        scope = entry.scope
        if scope is None or scope in SCOPE_GROUPS:
            return True
        if not is_node_name(scope):
            self.report("error", entry.line, section, entry.key, f"invalid scope '@{scope}'", sink=sink)
            return False
        if scope not in self.nodes and scope not in self.drpnodes:
            self.report(
                "warning",
                entry.line,
                section,
                entry.key,
                f"scope '@{scope}' names a node outside nodes and drpnodes",
            )
        return True

    # -- typed values ----------------------------------------------------------------------------

    def _resolve(
        self,
        section: Section,
        entries: list[Entry],
        table: dict[str, Keyword],
        *,
        sink: list[Problem] | None,
        only_unscopable: bool = False,
    ) -> dict[str, _Resolved]:
        """Every keyword of `table` in force here; every variant of a key is checked, not only the chosen one.

        `only_unscopable` handles nodes/drpnodes/topology alone (they come first); the
        second pass handles the rest and reports unknown keywords.
        """
        groups: dict[str, list[Entry]] = {}
        family = section.name.partition("#")[0]
        for entry in entries:
            keyword = table.get(entry.keyword)
            if keyword is None:
                if only_unscopable:
                    pass
                elif ignored_keyword(family, entry.keyword) or (
                    family == "task" and entry.keyword in CONTAINER_TASK_IGNORED
                ):
                    self.report("warning", entry.line, section.name, entry.key, "OpenSVC keyword ignored by om")
                else:
                    self.report("error", entry.line, section.name, entry.key, "unknown keyword", sink=sink)
            elif only_unscopable == keyword.scopable:
                continue
            elif entry.scope is not None and not keyword.scopable:
                self.report(
                    "error",
                    entry.line,
                    section.name,
                    entry.key,
                    f"'{entry.keyword}' cannot be scoped",
                    sink=sink,
                )
            elif self._scope_ok(section.name, entry, sink):
                groups.setdefault(entry.keyword, []).append(entry)
        resolved = {}
        for name, keyword in table.items():
            if only_unscopable == keyword.scopable:
                continue
            entries_of = groups.get(name, [])
            chosen = self._select(entries_of) if entries_of else None
            resolved[name] = _Resolved(keyword.fresh_default(), None)
            for entry in entries_of:
                value, error = self._typed(section.name, entry, keyword, sink)
                if entry is chosen:
                    resolved[name] = _Resolved(value, entry, error)
            self._required(section, keyword, resolved[name], sink)
        return resolved

    def _typed(
        self, section: str, entry: Entry, keyword: Keyword, sink: list[Problem] | None
    ) -> tuple[Any, str | None]:
        """(value, error) of one entry; a bad schedule is reported but never invalidates its resource."""
        text = entry.value
        try:
            text = expand(text, self.name, self.nodename, self.env if keyword.env_refs else None)
            if keyword.is_schedule:
                text = text.strip()
                error = schedule_error(text) if text else None
                if error:
                    raise ValueError(error)
                return text, None
            return (keyword.parse(text) if text.strip() else keyword.fresh_default()), None  # type: ignore[misc]
        except ValueError as exc:
            if keyword.is_schedule:
                self.report("error", entry.line, section, entry.key, str(exc), fatal=False)
                return text.strip(), str(exc)
            self.report("error", entry.line, section, entry.key, str(exc), sink=sink)
            return keyword.fresh_default(), str(exc)

    def _required(
        self, section: Section, keyword: Keyword, resolved: _Resolved, sink: list[Problem] | None
    ) -> None:
        if not keyword.required or resolved.error:
            return
        if resolved.entry is None:
            self.report(
                "error", section.line, section.name, keyword.name, "required keyword missing", sink=sink
            )
        elif not resolved.value:
            self.report(
                "error", resolved.entry.line, section.name, resolved.entry.key, "must not be empty", sink=sink
            )

    # -- resources -------------------------------------------------------------------------------

    def _task(self, section: Section, service: ServiceConfig, known: set[str]) -> TaskConfig:
        task = TaskConfig(section.name, section.line)
        entries = self._aliases(section, task.errors)
        table = dict(RESOURCE_KEYWORDS["task"])
        table["run_requires"] = replace(
            table["run_requires"], parse=self._requires_parser(section.name, known, service)
        )
        kind = section.entries.get("type")
        container = kind is not None and kind.value.strip() not in ("", "host")
        if container:  # the command is the container's arguments, the image's own when unset
            table["command"] = replace(table["command"], required=False)
            table["image"] = replace(table["image"], required=True)
        else:
            for name in CONTAINER_TASK_KEYWORDS:
                table.pop(name)
        values = self._resolve(section, entries, table, sink=task.errors)
        self._fill(task, values, skip={"schedule", "command"})
        task.command = values["command"].value or ""
        if values["schedule"].entry is not None:
            task.schedule, task.schedule_error = values["schedule"].value, values["schedule"].error
        else:
            task.schedule = service.defaults.run_schedule
            task.schedule_error = service.defaults.schedule_errors.get("run_schedule")
        if service.topology == "failover" and values["run_requires"].entry is None:
            self.report("warning", section.line, section.name, "run_requires", RUNS_EVERYWHERE)
        return task

    def _aliases(self, section: Section, sink: list[Problem]) -> list[Entry]:
        """Rename deprecated aliases (with a warning); an alias beside its keyword is an error."""
        entries = list(section.entries.values())
        out = []
        for entry in entries:
            target = TASK_ALIASES.get(entry.keyword)
            if target is None:
                out.append(entry)
            elif any(e.keyword == target for e in entries):
                self.report(
                    "error",
                    entry.line,
                    section.name,
                    entry.key,
                    f"cannot be set together with {target}",
                    sink=sink,
                )
            else:
                self.report("warning", entry.line, section.name, entry.key, f"deprecated alias of {target}")
                out.append(replace(entry, keyword=target))
        return out

    def _requires_parser(
        self, rid: str, known: set[str], service: ServiceConfig
    ) -> Callable[[str], list[Requirement]]:
        """run_requires for one task: the grammar, then every rid must be a section om runs (SPEC 5.5)."""

        def parse(text: str) -> list[Requirement]:
            requirements = parse_requires(text)
            for req in requirements:
                if req.target == "instance":
                    continue
                if req.target in service.ignored:
                    continue  # observed at run time when om can (container#, fs#), else unmet
                if req.target not in known:
                    raise ValueError(f"unknown resource '{req.target}'")
                if req.target == rid:
                    raise ValueError(f"{rid} cannot require itself")
            return requirements

        return parse

    def _app(self, section: Section) -> AppConfig:
        app = AppConfig(section.name, section.line)
        values = self._resolve(
            section, list(section.entries.values()), RESOURCE_KEYWORDS["app"], sink=app.errors
        )
        self._fill(app, values)
        if app.script:  # OpenSVC: start/stop/check = <sequence number or true> run `script <action>`
            for action in ("start", "stop", "check"):
                value = getattr(app, action)
                if value is not None and (value.isdigit() or value.lower() in ("true", "yes")):
                    setattr(app, action, f"{app.script} {action}")
                elif value is not None and value.lower() in ("false", "no"):
                    setattr(app, action, None)
        return app

    def _sync(self, section: Section, defaults: Defaults) -> SyncConfig:
        sync = SyncConfig(section.name, section.line)
        values = self._resolve(
            section, list(section.entries.values()), RESOURCE_KEYWORDS["sync"], sink=sync.errors
        )
        self._fill(sync, values, skip={"schedule", "dst"})
        sync.dst = values["dst"].value or ""
        if values["schedule"].entry is not None:
            sync.schedule, sync.schedule_error = values["schedule"].value, values["schedule"].error
        else:
            sync.schedule = defaults.sync_schedule
            sync.schedule_error = defaults.schedule_errors.get("sync_schedule")
        return sync

    @staticmethod
    def _fill(
        resource: Resource, values: dict[str, _Resolved], skip: frozenset[str] | set[str] = frozenset()
    ) -> None:
        for name, resolved in values.items():
            if name not in skip:
                setattr(resource, name, resolved.value)


def _expand_env(text: str, name: str, nodename: str, raw: dict[str, str], chain: tuple[str, ...]) -> str:
    """Expand an `[env]` value: `{env.<key>}` may name another env key (OpenSVC), never in a cycle."""

    def lookup(key: str) -> str:
        if key in chain:
            raise ValueError(f"{{env.{key}}}: reference cycle {' -> '.join((*chain, key))}")
        if key not in raw:
            raise ValueError(f"{{env.{key}}}: no key '{key}' in [env]")
        return _expand_env(raw[key], name, nodename, raw, (*chain, key))

    return expand(text, name, nodename, _LazyEnv(lookup))


class _LazyEnv(dict):
    """A mapping that computes `[env]` values on lookup, so references resolve in any order."""

    def __init__(self, lookup: Callable[[str], str]) -> None:
        super().__init__()
        self._lookup = lookup

    def __getitem__(self, key: str) -> str:
        return self._lookup(key)
