"""Service and node configuration: parse, validate, scope, edit (SPEC 3, 12).

Pure and I/O-light: no database, no clock.  Schedules are checked with
`omtasks.schedule`, imported only when a file actually holds a schedule.
"""

from __future__ import annotations

from .edit import edit_service_text, parse_kw
from .files import write_atomic
from .ini import parse_ini
from .keywords import APP_KEYWORDS, DEFAULT_KEYWORDS, SYNC_KEYWORDS, TASK_ALIASES, TASK_KEYWORDS, Keyword
from .model import (
    AppConfig,
    Defaults,
    ServiceConfig,
    SyncConfig,
    TaskConfig,
    rid_sort_key,
    task_scope,
)
from .node import NodeConfig, load_node_config
from .problems import Problem
from .service import (
    RESERVED_NAMES,
    RUNS_EVERYWHERE,
    SERVICE_NAME_RE,
    check_service_name,
    load_service,
    parse_service_text,
)
from .values import Requirement, format_duration, parse_duration

__all__ = [
    "APP_KEYWORDS",
    "DEFAULT_KEYWORDS",
    "RESERVED_NAMES",
    "RUNS_EVERYWHERE",
    "SERVICE_NAME_RE",
    "SYNC_KEYWORDS",
    "TASK_ALIASES",
    "TASK_KEYWORDS",
    "AppConfig",
    "Defaults",
    "Keyword",
    "NodeConfig",
    "Problem",
    "Requirement",
    "ServiceConfig",
    "SyncConfig",
    "TaskConfig",
    "check_service_name",
    "edit_service_text",
    "format_duration",
    "load_node_config",
    "load_service",
    "parse_duration",
    "parse_ini",
    "parse_kw",
    "parse_service_text",
    "rid_sort_key",
    "task_scope",
    "write_atomic",
]
