"""The migrations build exactly the schema the table classes describe (no drift either way)."""

from __future__ import annotations

import importlib

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

from app.db import create_db_engine
from app.migrate import upgrade


def test_migrations_match_the_table_classes(tmp_path):
    url = f"sqlite:///{tmp_path / 'schema.db'}"
    upgrade(url)
    importlib.import_module("app.migrations.table_modules")
    with create_db_engine(url).connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    assert differences == []
