"""What the calling thread sends to the database: its statements, and the pool checkouts and
transactions around them (on PostgreSQL each checkout pings, and BEGIN and COMMIT are round trips).
Background threads on the same engine (the governance watcher, the checkpointer) are left out."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import Engine, event
from sqlalchemy.engine.interfaces import CacheStats


@dataclass
class RoundTrips:
    statements: list[str] = field(default_factory=list)
    #: Statements SQLAlchemy compiled again instead of taking from its compiled cache.
    compiled: list[str] = field(default_factory=list)
    checkouts: int = 0
    transactions: int = 0

    def summary(self) -> dict[str, int]:
        return {
            "statements": len(self.statements),
            "checkouts": self.checkouts,
            "transactions": self.transactions,
        }


@contextmanager
def counted(engine: Engine) -> Iterator[RoundTrips]:
    trips, thread = RoundTrips(), threading.get_ident()

    def statement(_conn, _cursor, sql: str, _params, context, _many) -> None:
        if threading.get_ident() == thread:
            text = " ".join(sql.split())
            trips.statements.append(text)
            if context.compiled is not None and context.cache_hit is not CacheStats.CACHE_HIT:
                trips.compiled.append(text)

    def checkout(*_args: object) -> None:
        trips.checkouts += threading.get_ident() == thread

    def begin(_conn) -> None:
        trips.transactions += threading.get_ident() == thread

    listeners = [(engine, "before_cursor_execute", statement), (engine, "begin", begin)]
    listeners.append((engine.pool, "checkout", checkout))
    for target, name, function in listeners:
        event.listen(target, name, function)
    try:
        yield trips
    finally:
        for target, name, function in listeners:
            event.remove(target, name, function)
