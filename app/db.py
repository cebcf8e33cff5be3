"""The database: SQLite in WAL mode by default, PostgreSQL by URL, one engine per application."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import orjson
from sqlalchemy import Engine, event
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session, create_engine

from app.sqlite_writer import WriterLock, connection_factory

DATABASE_KEY = "database"
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


def create_db_engine(url: str) -> Engine:
    """An engine tuned for the backend: WAL and a busy timeout make SQLite safe for several workers."""
    if url.startswith("sqlite"):
        database = url.split("///", 1)[-1]
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        connect_args: dict = {"check_same_thread": False, "timeout": 30}
        if database and database != ":memory:":
            connect_args["factory"] = connection_factory(WriterLock(Path(database)))
        engine = create_engine(url, connect_args=connect_args, pool_use_lifo=True, **JSON_CODEC)
        event.listen(engine, "connect", _sqlite_pragmas)
        start_checkpointer(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10, **JSON_CODEC)


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
