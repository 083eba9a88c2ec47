"""`om SVC ACTION ...`: the per-service command group.

The service name comes from the root group (`ctx.meta["om.service"]`); each
action lives in a module named for what it does and is imported on use.
"""

from __future__ import annotations

import importlib

import click

from omtasks.cli.errors import OmError

ACTIONS = {
    "run": ("omtasks.cli.svc_run:run", "run tasks now, in the foreground"),
    "confirm": ("omtasks.cli.svc_run:confirm", "answer a pending confirmation"),
    "print": ("omtasks.cli.svc_print:print_group", "print config, schedule, status, runs or one run"),
    "logs": ("omtasks.cli.svc_logs:logs", "the service log, or one run's output (--run ID)"),
    "create": ("omtasks.cli.svc_config:create", "write a new service config"),
    "delete": ("omtasks.cli.svc_config:delete", "remove the service config"),
    "set": ("omtasks.cli.svc_config:set_cmd", "set keywords"),
    "unset": ("omtasks.cli.svc_config:unset_cmd", "remove keywords"),
    "validate": ("omtasks.cli.svc_config:validate", "validate the config"),
    "enable": ("omtasks.cli.svc_config:enable", "remove disable = true from resources"),
    "disable": ("omtasks.cli.svc_config:disable", "set disable = true on resources"),
    "start": ("omtasks.cli.svc_instance:start", "start the local instance"),
    "stop": ("omtasks.cli.svc_instance:stop", "stop the local instance"),
    "switch": ("omtasks.cli.svc_instance:switch", "move a failover service to another node"),
    "freeze": ("omtasks.cli.svc_instance:freeze", "stop convergence of the local instance"),
    "thaw": ("omtasks.cli.svc_instance:thaw", "resume convergence of the local instance"),
    "compliance": ("omtasks.cli.svc_builtin:compliance", "run compliance modules: check or fix"),
    "sync": ("omtasks.cli.svc_builtin:sync", "copy sync resources to their target nodes now"),
}


def service_name() -> str:
    """The SVC word of the command line."""
    ctx = click.get_current_context()
    name = ctx.find_root().meta.get("om.service")
    if not name:
        raise OmError("no service named", 2)
    from omtasks.config.service import check_service_name

    # the rule of `create`, for every action: a name is a name, never a path (`om ../../x run`)
    problem = check_service_name(name)
    if problem:
        raise OmError(problem)
    return name


class ServiceGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(ACTIONS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = ACTIONS.get(name)
        if target is None:
            return None
        module, _, attr = target[0].partition(":")
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Actions"):
            formatter.write_dl([(name, help_) for name, (_, help_) in ACTIONS.items()])


@click.group(cls=ServiceGroup, context_settings={"help_option_names": ["-h", "--help"]})
def service() -> None:
    """Act on one service: om SVC ACTION [OPTIONS]."""
