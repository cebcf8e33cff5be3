"""What an engine is asked to do, counted with SQLAlchemy's events: statements, transactions and
commits, pool checkouts, and from them the round trips a PostgreSQL client waits on.

Counted in-process, so the figures are exact and need no server-side statistics (the PostgreSQL
the benchmarks use is shared with other runs).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import astuple, dataclass

from sqlalchemy import Engine, event


@dataclass
class DatabaseWork:
    """What the engine was asked to do: counts, or (``per``) counts divided by calls or rounds."""

    statements: float = 0
    transactions: float = 0
    commits: float = 0
    checkouts: float = 0

    @property
    def round_trips(self) -> float:
        """On PostgreSQL: each statement; BEGIN and COMMIT or ROLLBACK of each transaction (psycopg
        sends BEGIN on its own); the liveness ping of each pool checkout (``pool_pre_ping``)."""
        return self.statements + 2 * self.transactions + self.checkouts

    def per(self, count: float) -> DatabaseWork:
        return DatabaseWork(*(value / count for value in astuple(self)))


@contextmanager
def database_work(engine: Engine, this_thread_only: bool = True) -> Iterator[DatabaseWork]:
    """Counts what ``engine`` sends while the block runs, from SQLAlchemy's events: by this thread
    only (a call's own work), or by every thread (an idle worker's background threads)."""
    work, caller, lock = DatabaseWork(), threading.get_ident(), threading.Lock()

    def counter(name: str) -> Callable[..., None]:
        def count(*_args: object) -> None:
            if not this_thread_only or threading.get_ident() == caller:
                with lock:
                    setattr(work, name, getattr(work, name) + 1)

        return count

    listeners = [
        (engine, "before_cursor_execute", counter("statements")),
        (engine, "begin", counter("transactions")),
        (engine, "commit", counter("commits")),
        (engine.pool, "checkout", counter("checkouts")),
    ]
    for target, name, function in listeners:
        event.listen(target, name, function)
    try:
        yield work
    finally:
        for target, name, function in listeners:
            event.remove(target, name, function)
