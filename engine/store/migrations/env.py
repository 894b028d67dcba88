"""Alembic environment: run migrations on the connection Database.upgrade() hands over."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from engine.store import tables  # noqa: F401 - the metadata autogenerate compares with

target_metadata = SQLModel.metadata


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through `nurture db upgrade` (Database.upgrade)")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER much
    )
    with context.begin_transaction():
        context.run_migrations()


run()
