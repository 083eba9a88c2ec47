"""What every deciding command shares: root, node, clock, node.conf and the database.

`now` is read once, when the context is made (SPEC 8.3 "Clocks"); the engine
is opened lazily so commands that never touch the database never create one.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from functools import cached_property
from pathlib import Path

from omtasks.paths import lock_dir, log_dir, node_conf_path, nodename, om_root
from omtasks.timeutil import local_zone, read_now


def actor_name() -> str:
    """`<user>`: $SUDO_USER under sudo as root, else the effective user (SPEC 8.7)."""
    if os.geteuid() == 0 and os.environ.get("SUDO_USER"):
        return os.environ["SUDO_USER"]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.geteuid())


@dataclass
class Context:
    root: Path
    node: str
    now: datetime
    tz: tzinfo
    explicit_now: bool = False
    shared_nodes: int = 1  # node names in the database; > 1 means a cluster (SPEC 2)
    tz_mismatch: str | None = None  # set when this node's zone is not the cluster's (SPEC 2)
    stale_tick: str | None = None  # set by the schedule table when this node's runner stopped ticking
    _node_problems: list = field(default_factory=list, repr=False)
    _engine: object = field(default=None, repr=False)

    @classmethod
    def create(cls, now_text: str | None = None) -> Context:
        tz = local_zone()
        explicit = bool(now_text or os.environ.get("OM_NOW"))
        return cls(root=om_root(), node=nodename(), now=read_now(tz, now_text), tz=tz, explicit_now=explicit)

    @property
    def actor(self) -> str:
        return f"{actor_name()}@{self.node}"

    @cached_property
    def node_config(self):
        from omtasks.config import load_node_config

        config, self._node_problems = load_node_config(node_conf_path(self.root))
        return config

    @property
    def node_problems(self) -> list:
        """Bad node.conf values (their defaults are used); the tick logs them."""
        _ = self.node_config
        return self._node_problems

    @property
    def grace(self) -> int:
        return int(self.node_config.grace)

    @property
    def engine(self):
        if self._engine is None:
            from omtasks.db import open_engine
            from omtasks.db.runs import set_observer
            from omtasks.runner.observer import RunObserver

            self._engine = open_engine(root=self.root)
            set_observer(RunObserver(self))  # outcome lines and notifications of the runs this process ends
        return self._engine

    @property
    def log_dir(self) -> Path:
        return log_dir(self.root)

    @property
    def lock_dir(self) -> Path:
        return lock_dir(self.root)

    def close(self) -> None:
        if self._engine is not None:
            from omtasks.db.runs import current_observer, set_observer

            if getattr(current_observer(), "ctx", None) is self:
                set_observer(None)
            self._engine.dispose()
            self._engine = None
