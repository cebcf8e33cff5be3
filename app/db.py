"""The database: SQLite in WAL mode by default, PostgreSQL by URL, one engine per application."""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import orjson
from sqlalchemy import Engine, event, make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session, create_engine

from app.sqlite_writer import WriterLock, connection_factory

DATABASE_KEY = "database"
log = logging.getLogger(__name__)
INSTANCE_DIR = Path(__file__).resolve().parent.parent / "instance"


T = TypeVar("T")
JSON_CODEC = {
    "json_serializer": lambda value: orjson.dumps(value).decode(),
    "json_deserializer": orjson.loads,
}


def default_database_url(instance_dir: Path = INSTANCE_DIR) -> str:
    """SQLite in the instance folder: the embedded default that needs no server."""
    return f"sqlite:///{instance_dir / 'countersign.db'}"


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """A stored time as aware UTC: SQLite gives back naive values for what was stored in UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class PoolOptions:
    """PostgreSQL connections each worker process keeps open, and whether they prepare statements.

    The defaults fit ``countersign serve``'s 4 threads: a connection each, and one for each
    in-process background worker (outbox, ledger sealer); the overflow covers bursts and is closed
    again after them. Turn prepared statements off behind a pooler that cannot keep them
    (PgBouncer in transaction mode before 1.21)."""

    size: int = 6
    overflow: int = 4
    prepared_statements: bool = True


DEFAULT_POOL = PoolOptions()
#: psycopg prepares a statement on the server at its second execution on a connection: the hook
#: path's statements are parsed and planned once per connection, one-off statements never are.
PREPARE_THRESHOLD = 1


def create_db_engine(url: str, pool: PoolOptions = DEFAULT_POOL) -> Engine:
    """An engine tuned for the backend: WAL and a busy timeout make SQLite safe for several workers."""
    engine = _sqlite_engine(url) if url.startswith("sqlite") else _postgres_engine(url, pool)
    # An executemany INSERT (a response's issued cards) goes as one multi-row statement, as
    # SQLAlchemy already sends it when RETURNING is asked for, rather than one execution per row.
    engine.dialect.use_insertmanyvalues_wo_returning = True
    return engine


def _sqlite_engine(url: str) -> Engine:
    connect_args: dict = {"check_same_thread": False, "timeout": 30}
    database = prepare_sqlite_file(url)
    if database is not None:
        connect_args["factory"] = connection_factory(WriterLock(database))
    engine = create_engine(url, connect_args=connect_args, pool_use_lifo=True, **JSON_CODEC)
    event.listen(engine, "connect", _sqlite_pragmas)
    start_checkpointer(engine)
    return engine


def prepare_sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL, before anything connects to it (None for another database or an
    in-memory one): its folder made, and a new file readable by its owner only, since it holds
    patient references and sealed tokens (SQLite gives its WAL and shared-memory files the same
    permissions). An existing file keeps its mode; one that others may read is reported."""
    parsed = make_url(url)
    database = parsed.database if parsed.get_backend_name() == "sqlite" else None
    if not database or database == ":memory:":
        return None
    path = Path(database)
    _owner_only(path)
    return path


def _owner_only(database: Path) -> None:
    database.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(database, os.O_CREAT | os.O_RDWR, 0o600))
    if database.stat().st_mode & stat.S_IROTH:
        # In the text, not an argument: the log's PHI filter hashes every argument; a path is not PHI.
        log.warning(f"{database} can be read by every user of this machine: chmod 600 it, -wal and -shm")


def _postgres_engine(url: str, pool: PoolOptions) -> Engine:
    """LIFO hands out the connection used last, so the few that serve a steady load stay warm with
    their prepared statements, and the rest of the pool idles."""
    threshold = PREPARE_THRESHOLD if pool.prepared_statements else None
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=pool.size,
        max_overflow=pool.overflow,
        pool_use_lifo=True,
        connect_args={"prepare_threshold": threshold},
        **JSON_CODEC,
    )


def _sqlite_pragmas(connection, _record) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.close()


def start_checkpointer(engine: Engine, interval: float = 1.0) -> None:
    """Checkpoint the WAL from a background thread, never inside a request's commit.

    SQLite's automatic checkpoint runs in whichever commit crosses the threshold: that request
    pays for the fsync and holds the write lock while other workers back off. A passive
    checkpoint every second keeps the WAL short without stalling anyone.
    """

    def checkpoint_forever() -> None:
        while True:
            time.sleep(interval)
            with suppress(Exception), engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    threading.Thread(target=checkpoint_forever, name="sqlite-checkpointer", daemon=True).start()


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """One unit of work: committed on success, rolled back on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def retrying(work: Callable[[], T], attempts: int = 5) -> T:
    """Run a unit of work again when it lost a race: a unique key taken, or SQLite's snapshot moved."""
    for attempt in range(attempts):
        try:
            return work()
        except (IntegrityError, OperationalError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.01 * (attempt + 1))
    raise AssertionError("unreachable")
