"""Alembic environment: migrates the connection xaiboard hands over, or a database named with ``-x db=PATH``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from xaiboard.store.models import Base

target_metadata = Base.metadata


def run_migrations(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    run_migrations(connection)
else:
    database = context.get_x_argument(as_dictionary=True).get("db", "xaiboard.db")
    with create_engine(f"sqlite:///{database}").begin() as own_connection:
        run_migrations(own_connection)
