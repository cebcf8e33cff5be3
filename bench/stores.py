"""The stores under test, each a throw-away database: a SQLite file, or a PostgreSQL schema of its own.

PostgreSQL is shared with other runs (tests, other benchmarks), so the benchmark never touches a
table outside the schema it creates, and drops that schema when it is done.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from app.audit.tables import CardSet
from app.db import create_db_engine

STORES = ("sqlite", "postgresql")
LABELS = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
SQLITE_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
POSTGRES_SETTINGS = ("synchronous_commit", "fsync", "shared_buffers")
#: Tables with their indexes and TOAST, in the schema of the connection.
POSTGRES_SIZE = (
    "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = current_schema() AND c.relkind = 'r'"
)
POSTGRES_CONNECTIONS = (
    "SELECT count(*) FROM pg_stat_activity WHERE application_name = :name AND pid <> pg_backend_pid()"
)
POSTGRES_URL = os.environ.get(
    "COUNTERSIGN_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@contextmanager
def database(store: str, scratch: Path, name: str, postgres_url: str = POSTGRES_URL) -> Iterator[str]:
    """The URL of an empty database called ``name`` in that store, gone after the block."""
    if store == "sqlite":
        yield f"sqlite:///{scratch / f'{name}.db'}"
        return
    with postgres_schema(postgres_url, name) as url:
        yield url


@contextmanager
def postgres_schema(postgres_url: str, name: str) -> Iterator[str]:
    """A fresh schema; every connection of the URL yielded sees only it (``search_path``) and
    carries its name (``application_name``), to be found in ``pg_stat_activity``."""
    schema = f"bench_{name}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(postgres_url)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    query = {"options": f"-csearch_path={schema}", "application_name": schema}
    try:
        yield make_url(postgres_url).update_query_dict(query).render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def libpq_url(url: str) -> str:
    """The SQLAlchemy URL as psycopg itself takes it (no ``+psycopg`` driver suffix)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@dataclass(frozen=True)
class Footprint:
    """What the calls recorded so far occupy: bytes on disk per card set (tables and indexes), and
    on PostgreSQL the connections the servers of the URL hold open."""

    bytes_per_call: float
    connections: int | None


def footprint(url: str) -> Footprint:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            calls = connection.execute(select(func.count()).select_from(CardSet)).scalar_one()
            if engine.dialect.name == "sqlite":
                pages = connection.exec_driver_sql("PRAGMA page_count").scalar()
                return Footprint(
                    pages * connection.exec_driver_sql("PRAGMA page_size").scalar() / calls, None
                )
            size = connection.execute(text(POSTGRES_SIZE)).scalar_one()
            held = connection.execute(
                text(POSTGRES_CONNECTIONS), {"name": engine.url.query["application_name"]}
            )
            return Footprint(size / calls, held.scalar_one())
    finally:
        engine.dispose()


def describe(url: str) -> str:
    """The store as Countersign's own engine finds it configured (what durability means there)."""
    engine = create_db_engine(url)
    try:
        with engine.connect() as connection:
            if engine.dialect.name == "sqlite":
                version = connection.exec_driver_sql("SELECT sqlite_version()").scalar()
                mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
                synchronous = SQLITE_SYNCHRONOUS[connection.exec_driver_sql("PRAGMA synchronous").scalar()]
                return f"SQLite {version}, journal_mode={mode}, synchronous={synchronous}"
            version = connection.exec_driver_sql("SHOW server_version").scalar()
            settings = [
                f"{name}={connection.exec_driver_sql(f'SHOW {name}').scalar()}" for name in POSTGRES_SETTINGS
            ]
            return f"PostgreSQL {version.split()[0]} on loopback, {', '.join(settings)}"
    finally:
        engine.dispose()
