"""Alembic environment: the URL comes from the caller's config, the metadata from our tables."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from app import replay_guard
from app.audit import ledger, outbox, tables
from app.db import create_db_engine
from smart_launch import store as smart_store

TABLE_MODULES = (
    tables,
    replay_guard,
    ledger,
    outbox,
    smart_store,
)  # importing them registers their tables on the metadata
config = context.config
target_metadata = SQLModel.metadata


def run_migrations() -> None:
    engine = create_db_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations()
