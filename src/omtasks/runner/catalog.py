"""The services of this node: config files on disk versus the `services` table.

A tick stats every `etc/*.conf` and parses only the files whose mtime or size
changed since the table recorded them (SPEC 14: cost grows with the work, not
with the number of services).  Parsed configs are cached for the process.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import delete, insert, select, update

from omtasks.db.schema import nodes as nodes_table
from omtasks.db.schema import services as services_table
from omtasks.paths import etc_dir
from omtasks.timeutil import to_utc_naive


def service_files(root: Path) -> dict[str, Path]:
    """name -> path of every service config (node.conf excluded)."""
    folder = etc_dir(root)
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return {}
    return {n[:-5]: folder / n for n in sorted(names) if n.endswith(".conf") and n != "node.conf"}


@dataclass
class Catalog:
    """The node's view of its service files for one command."""

    ctx: object
    files: dict[str, Path]
    rows: dict[str, object]  # name -> services row of this node
    changed: set[str] = field(default_factory=set)
    removed: set[str] = field(default_factory=set)
    _configs: dict[str, object] = field(default_factory=dict)

    def config(self, name: str):
        """The parsed config of `name` (parsed at most once per process)."""
        cfg = self._configs.get(name)
        if cfg is None:
            from omtasks.config import load_service

            cfg = load_service(self.files[name], self.ctx.node, shared_nodes=self.ctx.shared_nodes)
            self._configs[name] = cfg
        return cfg

    def checksum(self, name: str) -> str | None:
        if name in self._configs:
            return self._configs[name].checksum
        row = self.rows.get(name)
        return row.checksum if row is not None else None


def node_count(conn) -> int:
    """How many node names the database knows: more than one means a shared database (SPEC 2)."""
    from omtasks.config.opensvc import set_cluster_nodes

    names = [row.name for row in conn.execute(select(nodes_table.c.name))]
    set_cluster_nodes(names)  # for `nodes = *` / `{clusternodes}`
    return len(names)


def reload(ctx, conn) -> Catalog:
    """Stat the files, re-parse the changed ones and record them; forget the removed ones.

    Returns the catalog; `changed` holds the services whose checksum changed or
    which are new, `removed` those whose file is gone.  Errors of a new
    checksum go to runner.log once.
    """
    from omtasks.runner.logs import runner_log

    c = services_table.c
    rows = {r.name: r for r in conn.execute(select(c.name, c.checksum, c.mtime, c.size).where(c.node == ctx.node))}
    from omtasks.config.source import check_etc

    files = service_files(ctx.root)
    cat = Catalog(ctx, files, rows)
    # as root, an etc/ others can write refuses every file (each parse then fails fast); the
    # stored stamp -1 makes the next tick parse them again once etc/ is fixed
    etc_refused = check_etc(etc_dir(ctx.root)) is not None
    for name, path in files.items():
        try:
            st = path.stat()
        except OSError:
            try:
                st = path.lstat()  # a dangling symlink: reported as such, not skipped
            except OSError:
                continue
        # ctime moves with chmod and chown, which decide whether root may read the file
        stamp = -1.0 if etc_refused else max(st.st_mtime, st.st_ctime)
        row = rows.get(name)
        if row is not None and row.mtime == stamp and row.size == st.st_size and not etc_refused:
            continue
        cfg = cat.config(name)
        values = {
            "path": str(path), "checksum": cfg.checksum, "mtime": stamp, "size": st.st_size,
            "valid": cfg.valid,
            "errors": json.dumps([str(p) for p in cfg.problems]), "topology": cfg.topology,
            "loaded_at": to_utc_naive(ctx.now),
        }
        if row is None:
            conn.execute(insert(services_table).values(name=name, node=ctx.node, **values))
        else:
            conn.execute(update(services_table).where(c.name == name, c.node == ctx.node).values(values))
        if row is None or row.checksum != cfg.checksum:
            cat.changed.add(name)
            for problem in cfg.problems:
                runner_log(ctx, f"{name}: {problem}")
    for name in set(rows) - set(files):
        conn.execute(delete(services_table).where(c.name == name, c.node == ctx.node))
        cat.removed.add(name)
    return cat
