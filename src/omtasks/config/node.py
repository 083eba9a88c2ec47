"""`$OM_ROOT/etc/node.conf`: per-node runner settings (SPEC 3.7).

A bad value never stops the runner: it becomes a Problem (logged by the
caller) and the default is used.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from .ini import parse_ini
from .problems import Problem, sort_problems
from .source import read_config
from .values import is_node_name, parse_bool, parse_bounded_duration, parse_duration, parse_int

_TRANSPORT_RE = re.compile(r"(ssh:[^\s/]+|local:/\S*)")


#: the events `[notify] on` may list; `done` is opt-in
NOTIFY_EVENTS = ("failed", "lost", "missed", "expired", "done")
NOTIFY_DEFAULT_ON = frozenset({"failed", "lost", "missed", "expired"})
_MAIL_RE = re.compile(r"[^\s@,]+@[^\s@,]+")


@dataclass
class NodeConfig:
    max_running: int = 6
    grace: int = 60
    node_dead_after: int = 600
    retention: int = 400 * 86400
    collector_url: str | None = None
    collector_token: str | None = None
    collector_ca: str | None = None  # a CA bundle for a collector behind a private CA
    collector_verify: bool = True
    collector_budget: int = 30  # wall-clock seconds one delivery may take
    notify_webhook: str | None = None
    notify_mail: tuple[str, ...] = ()
    notify_on: frozenset[str] = NOTIFY_DEFAULT_ON
    notify_smtp: tuple[str, int] = ("localhost", 25)  # the local MTA by default
    notify_from: str | None = None  # default: om@<node>
    node_transports: dict[str, str] = field(default_factory=dict)  # only the nodes.<node> keys set

    @property
    def has_collector(self) -> bool:
        """Pushes are scheduled only when both url and token are set."""
        return bool(self.collector_url and self.collector_token)

    @property
    def has_notify(self) -> bool:
        """Notifications are queued only when a webhook or a mail address is set."""
        return bool(self.notify_webhook or self.notify_mail)

    def transport_for(self, node: str) -> str:
        """`ssh:<host>` or `local:<prefix>` used to reach `node` for syncs; `ssh:<node>` by default."""
        return self.node_transports.get(node, f"ssh:{node}")


def _url(text: str) -> str:
    value = text.strip()
    if not re.fullmatch(r"https?://\S+", value):
        raise ValueError(f"'{text}' is not an http:// or https:// URL")
    return value.rstrip("/")


def _token(text: str) -> str:
    value = text.strip()
    if any(c.isspace() for c in value):
        raise ValueError("must not contain blanks")
    return value


def _ca_file(text: str) -> str:
    value = text.strip()
    if not Path(value).is_absolute():
        raise ValueError(f"'{text}' is not an absolute path")
    if not Path(value).is_file():
        raise ValueError(f"'{text}': no such file")
    return value


def _mail_list(text: str) -> tuple[str, ...]:
    words = tuple(w for w in re.split(r"[\s,]+", text.strip()) if w)
    for word in words:
        if not _MAIL_RE.fullmatch(word):
            raise ValueError(f"'{word}' is not a mail address")
    return words


def _one_mail(text: str) -> str:
    words = _mail_list(text)
    if len(words) != 1:
        raise ValueError(f"'{text}' is not one mail address")
    return words[0]


def _events(text: str) -> frozenset[str]:
    words = frozenset(w for w in re.split(r"[\s,]+", text.strip().lower()) if w)
    unknown = sorted(words - set(NOTIFY_EVENTS))
    if unknown:
        raise ValueError(f"unknown event '{unknown[0]}' (expected {', '.join(NOTIFY_EVENTS)})")
    return words


def _host_port(text: str) -> tuple[str, int]:
    value = text.strip()
    host, _, port = value.rpartition(":") if ":" in value else (value, "", "25")
    if not re.fullmatch(r"[A-Za-z0-9.\-]+", host):
        raise ValueError(f"'{text}' is not host[:port]")
    number = parse_int(port, minimum=1)
    if number > 65535:
        raise ValueError(f"'{text}': port out of range")
    return host, number


def _transport(text: str) -> str:
    value = text.strip()
    if not _TRANSPORT_RE.fullmatch(value):
        raise ValueError(f"'{text}' is not ssh:<host> or local:<absolute path prefix>")
    return value


#: (section, keyword) -> (NodeConfig attribute, parser)
_KEYWORDS: dict[tuple[str, str], tuple[str, Callable[[str], Any]]] = {
    ("node", "max_running"): ("max_running", partial(parse_int, minimum=1)),
    ("runner", "grace"): ("grace", parse_duration),
    ("runner", "node_dead_after"): ("node_dead_after", partial(parse_bounded_duration, minimum=1)),
    ("runner", "retention"): ("retention", partial(parse_bounded_duration, minimum=1)),
    ("collector", "url"): ("collector_url", _url),
    ("collector", "token"): ("collector_token", _token),
    ("collector", "ca"): ("collector_ca", _ca_file),
    ("collector", "verify"): ("collector_verify", parse_bool),
    ("collector", "budget"): ("collector_budget", partial(parse_bounded_duration, minimum=1)),
    ("notify", "webhook"): ("notify_webhook", _url),
    ("notify", "mail"): ("notify_mail", _mail_list),
    ("notify", "on"): ("notify_on", _events),
    ("notify", "smtp"): ("notify_smtp", _host_port),
    ("notify", "from"): ("notify_from", lambda t: _one_mail(t)),
}
_SECTIONS = {"node", "runner", "collector", "nodes", "notify"}


def load_node_config(path: str | Path) -> tuple[NodeConfig, list[Problem]]:
    """Read node.conf; a missing file means every default, a bad value its default plus a Problem."""
    path = Path(path)
    config = NodeConfig()
    if not os.path.lexists(path):
        return config, []
    source = read_config(path)
    if source.text is None:
        return config, [Problem("error", str(path), 0, "", "", f"{source.error}; using defaults")]
    text = source.text
    problems: list[Problem] = []

    def report(severity: str, line: int, section: str, keyword: str, message: str) -> None:
        problems.append(Problem(severity, str(path), line, section, keyword, message))

    doc = parse_ini(text)
    for issue in doc.issues:
        report("error", issue.line, issue.section, issue.keyword, issue.message)
    for section in doc.sections.values():
        if section.name not in _SECTIONS:
            report("warning", section.line, section.name, "", "unknown section, ignored")
            continue
        for entry in section.entries.values():
            if section.name == "nodes":
                if not is_node_name(entry.raw_key):
                    report("error", entry.line, "nodes", entry.raw_key, "not a node name, ignored")
                    continue
                parse: Callable[[str], Any] = _transport
                attribute = None
            elif (section.name, entry.key) in _KEYWORDS:
                attribute, parse = _KEYWORDS[(section.name, entry.key)]
            else:
                report("warning", entry.line, section.name, entry.raw_key, "unknown keyword, ignored")
                continue
            if not entry.value:
                continue
            try:
                value = parse(entry.value)
            except ValueError as exc:
                report("error", entry.line, section.name, entry.raw_key, f"{exc}; using the default")
                continue
            if attribute is None:
                config.node_transports[entry.raw_key] = value
            else:
                setattr(config, attribute, value)
    if config.collector_token and _others_can_read(path):
        report("warning", 0, "collector", "token",
               f"readable by others: chmod o-r {path} (the token lets anyone push as this node)")
    return config, sort_problems(problems)


def _others_can_read(path: Path) -> bool:
    try:
        return bool(os.stat(path).st_mode & 0o004)
    except OSError:
        return False
