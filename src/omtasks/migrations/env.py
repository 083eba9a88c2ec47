"""Alembic environment shipped inside the package (no alembic.ini).

`omtasks.db.migrate.alembic_config(connection)` builds the Config and hands over
a connection already inside a transaction, so an upgrade commits or rolls back
as a whole (SQLite DDL is transactional under our BEGIN IMMEDIATE recipe).
Developers autogenerate a revision the same way:
`command.revision(alembic_config(conn), autogenerate=True, message=...)`.
"""

from __future__ import annotations

from alembic import context

from omtasks.db.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("om migrations run on a connection: use omtasks.db.migrate.alembic_config(connection)")
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations()
