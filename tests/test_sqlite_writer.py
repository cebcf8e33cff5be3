"""The SQLite writer lock: one writer at a time across processes, released by commit or rollback."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

from sqlalchemy import text

from app.db import create_db_engine
from app.sqlite_writer import WriterLock


def hold_lock(database: str, seconds: float, ready, released_at) -> None:
    lock = WriterLock(Path(database))
    lock.acquire()
    ready.set()
    time.sleep(seconds)
    released_at.value = time.monotonic()  # the system-wide clock: comparable across processes
    lock.release()


def test_a_writer_in_another_process_makes_us_wait_until_it_releases(tmp_path):
    """Judged by the two processes' own clock readings, not by how long we waited: on a loaded
    machine the child's sleep may be mostly over before we even ask."""
    database = str(tmp_path / "db.sqlite")
    fork = multiprocessing.get_context("fork")
    ready, released_at = fork.Event(), fork.Value("d", 0.0)
    child = fork.Process(target=hold_lock, args=(database, 0.5, ready, released_at))
    child.start()
    assert ready.wait(5)
    lock = WriterLock(Path(database))
    lock.acquire()
    acquired_at = time.monotonic()
    lock.release()
    child.join(5)
    assert released_at.value > 0 and acquired_at >= released_at.value


def test_the_lock_is_held_only_from_the_first_write_to_commit_or_rollback(tmp_path):
    engine = create_db_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (x INTEGER)"))
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
        raw = connection.connection.dbapi_connection
        assert not raw.holds_lock
        connection.execute(text("INSERT INTO t VALUES (1)"))
        assert raw.holds_lock
        connection.rollback()
        assert not raw.holds_lock
        connection.execute(text("INSERT INTO t VALUES (2)"))
        connection.commit()
        assert not raw.holds_lock
    with engine.connect() as connection:
        assert connection.execute(text("SELECT x FROM t")).scalars().all() == [2]


def test_a_new_database_and_its_wal_are_readable_by_their_owner_only(tmp_path, caplog):
    path = tmp_path / "instance" / "countersign.db"
    engine = create_db_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (x INTEGER)"))
        connection.execute(text("INSERT INTO t VALUES (1)"))
    modes = {file.name: file.stat().st_mode & 0o777 for file in path.parent.glob("countersign.db*")}
    engine.dispose()
    assert modes["countersign.db"] == modes["countersign.db-wal"] == 0o600
    assert "can be read by every user" not in caplog.text


def test_a_database_others_can_read_is_reported_at_start(tmp_path, caplog):
    path = tmp_path / "countersign.db"
    path.touch(mode=0o644)
    path.chmod(0o644)
    create_db_engine(f"sqlite:///{path}").dispose()
    assert f"{path} can be read by every user of this machine: chmod 600 it" in caplog.text
