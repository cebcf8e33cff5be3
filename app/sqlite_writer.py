"""One SQLite writer at a time across every worker process, queued in the kernel, not by polling.

SQLite lets one connection write at a time; the others get SQLITE_BUSY and its busy handler
sleeps 1, 2, 5, 10 … 100 ms between retries. Under load those sleeps, not the work, set the tail
latency of every hook call. Here each connection takes an exclusive ``flock`` on a file next to
the database just before its first write statement and drops it after commit or rollback: a
waiting writer sleeps in the kernel and wakes the moment the lock is free, in arrival order.
Threads of one process share the file descriptor, so a process-wide lock orders them first.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from pathlib import Path

WRITE_STATEMENTS = ("INSERT", "UPDATE", "DELETE", "REPLACE")
BUSY_TIMEOUT_SECONDS = 30


class WriterLock:
    """The database's writer lock: a thread lock within the process, ``flock`` across processes."""

    def __init__(self, database: Path) -> None:
        self._path = database.with_name(database.name + ".writer-lock")
        self._threads = threading.Lock()
        self._fd: int | None = None
        self._pid = 0

    def acquire(self) -> None:
        """Waits as long as SQLite's own busy timeout would, then fails the same way."""
        if not self._threads.acquire(timeout=BUSY_TIMEOUT_SECONDS):
            raise sqlite3.OperationalError("database is locked (writer lock timeout)")
        try:
            fcntl.flock(self._descriptor(), fcntl.LOCK_EX)
        except BaseException:
            self._threads.release()
            raise

    def release(self) -> None:
        try:
            fcntl.flock(self._descriptor(), fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def _descriptor(self) -> int:
        """Opened lazily, and again after a fork: a child must not share its parent's lock."""
        if self._fd is None or self._pid != os.getpid():
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            self._pid = os.getpid()
        return self._fd


def connection_factory(lock: WriterLock) -> type[sqlite3.Connection]:
    """A ``sqlite3.Connection`` class whose transactions take ``lock`` at their first write."""

    class WriterLockedCursor(sqlite3.Cursor):
        def execute(self, sql: str, parameters=(), /):  # type: ignore[override]
            self.connection.before_statement(sql)
            return super().execute(sql, parameters)

        def executemany(self, sql: str, parameters, /):  # type: ignore[override]
            self.connection.before_statement(sql)
            return super().executemany(sql, parameters)

    class WriterLockedConnection(sqlite3.Connection):
        holds_lock = False

        def cursor(self, factory=WriterLockedCursor):  # type: ignore[override]
            return super().cursor(factory)

        def execute(self, sql: str, parameters=(), /):  # type: ignore[override]
            return self.cursor().execute(sql, parameters)

        def before_statement(self, sql: str) -> None:
            if not self.holds_lock and sql.lstrip()[:7].upper().startswith(WRITE_STATEMENTS):
                lock.acquire()
                self.holds_lock = True

        def commit(self) -> None:
            try:
                super().commit()
            finally:
                self._release()

        def rollback(self) -> None:
            try:
                super().rollback()
            finally:
                self._release()

        def close(self) -> None:
            try:
                super().close()
            finally:
                self._release()

        def _release(self) -> None:
            if self.holds_lock:
                self.holds_lock = False
                lock.release()

    return WriterLockedConnection
