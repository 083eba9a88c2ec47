"""`om SVC create|delete|set|unset|validate config|enable|disable`: change a service file safely (SPEC 10, 12).

Every change is validated as a whole file before anything is written, then
written atomically, so om itself never leaves a half-written or invalid file
for a tick to read.  Read-modify-write runs under a per-service lock
(`var/run/<service>.conf.lock`) so two concurrent `set` never lose an edit and
two `create` never both succeed.  Validation counts the nodes sharing the
database, because `[DEFAULT] nodes` is mandatory in a cluster (SPEC 2).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

import click

from omtasks.cli.errors import OmError
from omtasks.cli.service import service_name
from omtasks.config import check_service_name, edit_service_text, parse_ini, parse_kw, write_atomic
from omtasks.paths import ensure_dir, etc_dir, lock_dir, service_conf_path

if TYPE_CHECKING:
    from omtasks.runner.context import Context

KW_HELP = "SECTION.KEY=VALUE, e.g. task#0.schedule=02:00; repeatable"


@contextlib.contextmanager
def database_errors() -> Iterator[None]:
    """Report an unusable database (schema behind, locked past the busy timeout, unreachable) as `om: <error>`."""
    from sqlalchemy.exc import SQLAlchemyError

    from omtasks.db import DatabaseError

    try:
        yield
    except DatabaseError as exc:
        raise OmError(str(exc)) from None
    except SQLAlchemyError as exc:
        raise OmError(str(getattr(exc, "orig", None) or exc)) from None


@contextlib.contextmanager
def _context() -> Iterator[Context]:
    """This command's root, node and clock; its database engine, if one was opened, is closed after."""
    from omtasks.runner.context import Context

    ctx = Context.create()
    try:
        yield ctx
    finally:
        ctx.close()


def _shared_nodes(ctx: Context) -> int:
    """Node names the database knows; more than one makes `[DEFAULT] nodes` mandatory (SPEC 2)."""
    from omtasks.runner.catalog import node_count

    with database_errors(), ctx.engine.connect() as conn:
        return node_count(conn)


@contextlib.contextmanager
def _config_lock(root: Path, name: str) -> Iterator[None]:
    """Serialize the read-modify-write of one service file between om processes."""
    import fcntl

    fd = os.open(ensure_dir(lock_dir(root)) / f"{name}.conf.lock", os.O_RDWR | os.O_CREAT, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _existing(root: Path, name: str) -> Path:
    """The file of service `name`, or `service 'x' does not exist` (a bad name has no file either)."""
    path = service_conf_path(name, root)
    if check_service_name(name) is not None or not path.is_file():
        raise OmError(f"service '{name}' does not exist")
    return path


@contextlib.contextmanager
def _locked_file(root: Path, name: str) -> Iterator[Path]:
    """The existing file of `name`, held under its lock.

    The name is checked before it becomes part of a lock file name, and the
    file again once the lock is held (a concurrent `delete` may have won).
    """
    _existing(root, name)
    with _config_lock(root, name):
        yield _existing(root, name)


def _decode(data: bytes, origin: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise OmError(f"{origin}: not UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start}") from None


def _read(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise OmError(f"cannot read {path}: {exc.strerror or exc}") from None
    return _decode(data, str(path))


def _parse_kws(kws: tuple[str, ...], *, with_value: bool) -> list[tuple[str, ...]]:
    try:
        return [parse_kw(kw, with_value=with_value) for kw in kws]
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def _edited(text: str, sets: list[tuple[str, ...]], unsets: list[tuple[str, ...]]) -> str:
    try:
        return edit_service_text(text, sets, unsets)
    except ValueError as exc:  # a value holding a line break
        raise click.UsageError(str(exc)) from None


def _validate_or_refuse(ctx: Context, name: str, path: Path, text: str) -> None:
    """Print every problem of `text` on stderr; on any error add `nothing written` and exit 1 (SPEC 12)."""
    from omtasks.config import parse_service_text

    cfg = parse_service_text(text, str(path), name, ctx.node, shared_nodes=_shared_nodes(ctx))
    for problem in cfg.problems:
        click.echo(str(problem), err=True)
    if cfg.errors:
        click.echo("nothing written", err=True)
        raise OmError("", 1)


def _apply(
    ctx: Context, name: str, path: Path, text: str, sets: list[tuple[str, ...]], unsets: list[tuple[str, ...]]
) -> None:
    """Edit, validate the result, and replace the file only when the edit changed it."""
    new = _edited(text, sets, unsets)
    _validate_or_refuse(ctx, name, path, new)
    if new != text:
        write_atomic(path, new)


def _edit_file(sets: list[tuple[str, ...]], unsets: list[tuple[str, ...]]) -> None:
    name = service_name()
    with _context() as ctx, _locked_file(ctx.root, name) as path:
        _apply(ctx, name, path, _read(path), sets, unsets)


@click.command()
@click.option("--kw", "kws", multiple=True, metavar="S.K=V", help=KW_HELP)
@click.option(
    "--from", "source", type=click.File("rb"), metavar="FILE", help="start from this file ('-': stdin)"
)
def create(kws: tuple[str, ...], source: IO[bytes] | None) -> None:
    """Write etc/SVC.conf from FILE and/or --kw, only if the result is valid.

    Warnings are printed on stderr and do not block; on success nothing is printed.
    """
    name = service_name()
    problem = check_service_name(name)
    if problem:
        raise OmError(problem)
    sets = _parse_kws(kws, with_value=True)
    text = _decode(source.read(), source.name) if source is not None else ""
    with _context() as ctx, _config_lock(ctx.root, name):
        path = service_conf_path(name, ctx.root)
        if path.exists():
            raise OmError(f"service '{name}' already exists")
        new = _edited(text, sets, [])
        _validate_or_refuse(ctx, name, path, new)
        ensure_dir(etc_dir(ctx.root))
        write_atomic(path, new)


@click.command()
def delete() -> None:
    """Remove etc/SVC.conf and cancel this node's pending scheduled runs of it; history stays.

    Prints one line naming the cancelled runs, if any.
    """
    name = service_name()
    with _context() as ctx:
        with _locked_file(ctx.root, name) as path:
            path.unlink()
        cancelled = _cancel_pending(ctx, name)
    if cancelled:
        click.echo(f"{name}: cancelled pending runs {' '.join(map(str, cancelled))}")


def _cancel_pending(ctx: Context, name: str) -> list[int]:
    """Cancel this node's claimed-not-started runs (`service deleted`) and drop its schedule entries.

    The file goes first, so a concurrent tick cannot claim a new slot after the
    sweep (its recheck cancels what it claimed from a stale parse).  Each run is
    moved in its own transaction; one that a worker started meanwhile is left
    to finish (LostRace).  Manual runs belong to their `om` process.
    """
    from sqlalchemy import delete as sql_delete
    from sqlalchemy import select

    from omtasks import statemachine as sm
    from omtasks.db.runs import LostRace, transition
    from omtasks.db.schema import runs, schedule_entries

    c = runs.c
    pending_states = (sm.SCHEDULED, sm.ELIGIBLE, sm.AWAITING)
    cancelled = []
    with database_errors():
        engine = ctx.engine
        with engine.connect() as conn:
            pending = conn.execute(
                select(c.id, c.state)
                .where(
                    c.service == name, c.node == ctx.node, c.trigger != "manual", c.state.in_(pending_states)
                )
                .order_by(c.id)
            ).fetchall()
        for run_id, state in pending:
            try:
                with engine.begin() as conn:
                    transition(
                        conn,
                        run_id,
                        state,
                        sm.CANCELLED,
                        reason="service deleted",
                        actor=ctx.actor,
                        now=ctx.now,
                    )
            except LostRace:
                continue
            cancelled.append(run_id)
        e = schedule_entries.c
        with engine.begin() as conn:
            conn.execute(sql_delete(schedule_entries).where(e.service == name, e.node == ctx.node))
    return cancelled


@click.command("set")
@click.option("--kw", "kws", multiple=True, required=True, metavar="S.K=V", help=KW_HELP)
def set_cmd(kws: tuple[str, ...]) -> None:
    """Set keywords; the file is replaced only if the result is valid, other lines kept byte for byte."""
    _edit_file(_parse_kws(kws, with_value=True), [])


@click.command("unset")
@click.option("--kw", "kws", multiple=True, required=True, metavar="S.K", help="SECTION.KEY; repeatable")
def unset_cmd(kws: tuple[str, ...]) -> None:
    """Remove keywords (an absent one is no error); refused like `set` if the result is invalid."""
    _edit_file([], _parse_kws(kws, with_value=False))


@click.group()
def validate() -> None:
    """Check the service without changing anything."""


@validate.command("config")
def validate_config() -> None:
    """Print every problem of the file, sorted by line, then the counts; exit 1 on any error."""
    from omtasks.config import load_service

    name = service_name()
    with _context() as ctx:
        cfg = load_service(_existing(ctx.root, name), ctx.node, shared_nodes=_shared_nodes(ctx))
    for problem in cfg.problems:
        click.echo(str(problem))
    for rid, why in cfg.ignored_why.items():
        if rid == "sync#i0":  # accepted without a warning: say what om does with it
            click.echo(f"info: {cfg.path}:{cfg.ignored[rid]}: [{rid}] {why}")
    click.echo(f"{len(cfg.errors)} error(s), {len(cfg.warnings)} warning(s)")
    if cfg.errors:
        raise OmError("", 1)


RID_OPTION = click.option(
    "--rid",
    "selectors",
    multiple=True,
    required=True,
    metavar="RID[,RID...]",
    help="resource ids (task#0) or families (task: all its sections); repeatable",
)


def _selected(name: str, sections: list[str], selectors: tuple[str, ...]) -> list[str]:
    """Sections named by `--rid`, in selection order; a word matching nothing is an error."""
    chosen: list[str] = []
    for word in (w.strip() for s in selectors for w in s.split(",")):
        if not word:
            continue
        if "#" in word:
            matches = [word] if word in sections else []
        else:
            matches = [s for s in sections if "#" in s and s.partition("#")[0] == word]
        if not matches:
            raise OmError(f"service '{name}' has no resource '{word}'")
        chosen += [m for m in matches if m not in chosen]
    if not chosen:
        raise click.UsageError("--rid expects RID[,RID...]")
    return chosen


def _toggle(selectors: tuple[str, ...], *, disable: bool) -> None:
    """Disable: `disable = true`; enable: no `disable` key.  Scoped `disable@...` keys are removed in
    both cases, so the resource ends up disabled (or enabled) on every node."""
    name = service_name()
    with _context() as ctx, _locked_file(ctx.root, name) as path:
        text = _read(path)
        sections = parse_ini(text).sections
        sets, unsets = [], []
        for rid in _selected(name, list(sections), selectors):
            for key, entry in sections[rid].entries.items():
                if entry.keyword == "disable" and (entry.scope is not None or not disable):
                    unsets.append((rid, key))
            if disable:
                sets.append((rid, "disable", "true"))
        _apply(ctx, name, path, text, sets, unsets)


@click.command()
@RID_OPTION
def enable(selectors: tuple[str, ...]) -> None:
    """Remove `disable` from the selected resources, then validate and write like `set`."""
    _toggle(selectors, disable=False)


@click.command()
@RID_OPTION
def disable(selectors: tuple[str, ...]) -> None:
    """Set `disable = true` on the selected resources, then validate and write like `set`."""
    _toggle(selectors, disable=True)
