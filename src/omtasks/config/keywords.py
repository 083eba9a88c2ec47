"""The keyword table: every section family, its keywords, their types and defaults (SPEC 3.2-3.4).

Validation, documentation and `set` all read this one table, so a keyword
exists in exactly one place.  An empty value means the default, except for
schedules, where an empty value means "unscheduled" (SPEC 4.1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from . import values as v


@dataclass(frozen=True)
class Keyword:
    name: str
    parse: Callable[[str], Any] | None  # None: a schedule, checked by the schedule engine
    default: Any = None
    scopable: bool = True
    required: bool = False
    env_refs: bool = True  # may the value use {env.<key>}?

    @property
    def is_schedule(self) -> bool:
        return self.parse is None

    def fresh_default(self) -> Any:
        """A copy of the default, so no two resources share one mutable list or dict."""
        default = self.default
        return default.copy() if isinstance(default, list | dict) else default


def _table(*keywords: Keyword) -> dict[str, Keyword]:
    return {k.name: k for k in keywords}


def _schedule(name: str, default: str | None) -> Keyword:
    return Keyword(name, None, default)


def _command(name: str, required: bool = False) -> Keyword:
    return Keyword(name, v.parse_command, None, required=required)


TOPOLOGIES = ("failover", "flex")

DEFAULT_KEYWORDS = _table(
    # nodes decide scoping and [env] may be scoped, so these three cannot use {env.<key>}
    Keyword("nodes", v.parse_nodes, None, scopable=False, env_refs=False),
    Keyword("drpnodes", v.parse_nodes, [], scopable=False, env_refs=False),
    Keyword(
        "topology", partial(v.parse_choice, choices=TOPOLOGIES), "failover", scopable=False, env_refs=False
    ),
    Keyword("disable", v.parse_bool, False),
    _schedule("run_schedule", ""),
    _schedule("status_schedule", "@10m"),
    _schedule("comp_schedule", "~00:00-06:00"),
    Keyword("comp_modules", v.parse_words, []),
    _schedule("resinfo_schedule", "@60m"),
    _schedule("push_schedule", "~00:00-06:00"),
    _schedule("sync_schedule", "04:00-06:00@121m"),
)

TASK_KEYWORDS = _table(
    _command("command", required=True),
    _schedule("schedule", None),  # None: fall back on DEFAULT.run_schedule
    Keyword("user", v.parse_account),
    Keyword("group", v.parse_account),
    Keyword("cwd", v.parse_path),
    Keyword("umask", v.parse_umask),
    Keyword("environment", v.parse_environment, {}),
    Keyword("timeout", partial(v.parse_bounded_duration, minimum=1)),
    Keyword("snooze", v.parse_duration, 0),
    Keyword("log", v.parse_bool, True),
    Keyword("confirmation", v.parse_bool, False),
    Keyword("confirmation_timeout", partial(v.parse_bounded_duration, minimum=1), 3600),
    _command("on_error"),
    Keyword("max_parallel", partial(v.parse_int, minimum=1), 1),
    Keyword("check", partial(v.parse_choice, choices=("last_run",)), ""),
    Keyword("retcodes", v.parse_retcodes, {0: "up", 1: "down"}),
    Keyword("run_requires", v.parse_requires, []),
    _command("pre_run"),
    _command("post_run"),
    _command("blocking_pre_run"),
    _command("blocking_post_run"),
    Keyword("tags", v.parse_words, []),
    Keyword("subset", v.parse_word, ""),
    Keyword("disable", v.parse_bool, False),
    Keyword("optional", v.parse_bool, False),
    # OpenSVC task drivers: host (default) or a container run (docs/opensvc.md)
    Keyword("type", partial(v.parse_choice, choices=("host", "docker", "podman", "oci")), "host"),
    Keyword("image", v.parse_word, ""),
    Keyword("entrypoint", v.parse_word, ""),
    Keyword("volume_mounts", v.parse_words, []),
    Keyword("netns", v.parse_word, ""),
    Keyword("pidns", v.parse_word, ""),
    Keyword("rm", v.parse_bool, True),
    Keyword("run_args", v.parse_command, ""),
    Keyword("interactive", v.parse_bool, False),
    Keyword("tty", v.parse_bool, False),
    Keyword("privileged", v.parse_bool, False),
    Keyword("name", v.parse_word, ""),
)

#: task keywords that only mean something for a container task
CONTAINER_TASK_KEYWORDS = (
    "image", "entrypoint", "volume_mounts", "netns", "pidns", "rm", "run_args", "interactive", "tty",
    "privileged", "name",
)

#: deprecated spellings: alias -> keyword (SPEC 3.3)
TASK_ALIASES = {"requires": "run_requires"}

APP_KEYWORDS = _table(
    _command("script"),  # OpenSVC forking/simple apps: start/stop/check = <number or true> run `script <action>`
    _command("start"),
    _command("stop"),
    _command("check"),
    Keyword("timeout", partial(v.parse_bounded_duration, minimum=1), 300),
    Keyword("user", v.parse_account),
    Keyword("disable", v.parse_bool, False),
)

SYNC_TARGETS = ("nodes", "drpnodes")

SYNC_KEYWORDS = _table(
    Keyword("src", v.parse_paths, [], required=True),
    Keyword("dst", v.parse_path, None, required=True),
    Keyword("target", partial(v.parse_choices, choices=SYNC_TARGETS), ["drpnodes"]),
    _schedule("schedule", None),  # None: fall back on DEFAULT.sync_schedule
    Keyword("options", v.parse_command, "-a"),
    Keyword("timeout", partial(v.parse_bounded_duration, minimum=1)),
    Keyword("disable", v.parse_bool, False),
    Keyword("type", v.parse_word, "rsync"),  # another OpenSVC sync driver: accepted, warned, does nothing
)

#: resource families om runs: family -> keyword table
RESOURCE_KEYWORDS = {"task": TASK_KEYWORDS, "app": APP_KEYWORDS, "sync": SYNC_KEYWORDS}
