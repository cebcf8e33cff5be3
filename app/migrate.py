"""Schema migrations, driven from Python so the CLI and the demo share one code path."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))  # configparser syntax
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


class StaleSchema(RuntimeError):
    """The database is not at the revision this version of Countersign needs."""


def revisions(engine: Engine) -> tuple[str | None, str]:
    """(the database's revision, the newest this code knows)."""
    head = ScriptDirectory.from_config(
        alembic_config(engine.url.render_as_string(hide_password=False))
    ).get_current_head()
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision(), head


def is_current(engine: Engine) -> bool:
    """True when the database is at the newest revision (readiness checks use it)."""
    current, head = revisions(engine)
    return current == head


def require_current(engine: Engine) -> None:
    """Refuse to run on an old schema: every request would otherwise fail with a 500."""
    current, head = revisions(engine)
    if current != head:
        raise StaleSchema(
            f"database schema is at revision {current or 'none'}, this version needs {head}: "
            "run `countersign db upgrade` (or start with --migrate)"
        )
