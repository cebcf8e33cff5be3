"""A circuit breaker per write-back target, kept in the database so every worker shares it.

While a FHIR server is down, sending it each message in turn only lengthens its queue of refused
connections and each message's backoff. After ``failures`` consecutive server faults (no answer,
5xx, 408, 429) the target is *open*: no worker claims its messages (they stay pending, their
attempt counts untouched), and once per ``probe_interval`` one worker, whichever takes the probe
first, sends one message alone as a probe. An answer closes the breaker; another fault keeps it
open for one more interval. A server's ``Retry-After`` on a fault opens it at once, until then.

The state lives in the ``outbox_target`` table rather than in each process: workers on several
hosts then send one probe per interval between them, a worker that starts during an outage does
not rediscover it by failing, and ``countersign outbox status`` and ``/metrics`` can report it.
Every change is one conditional UPDATE, so concurrent workers never need a lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import Column, Connection, DateTime, Engine, Select, case, or_, select, true, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Field, SQLModel

from app.db import as_utc, utcnow

BreakerState = Literal["closed", "open", "half-open"]
MIN_PAUSE_SECONDS = 1.0


class OutboxTarget(SQLModel, table=True):
    __tablename__ = "outbox_target"

    target: str = Field(primary_key=True)
    failures: int = 0
    opened_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    probe_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


@dataclass(frozen=True)
class BreakerPolicy:
    failures: int = 5
    probe_interval: float = 30.0


@dataclass(frozen=True)
class TargetState:
    target: str
    failures: int
    opened_at: datetime | None
    probe_at: datetime | None

    def state(self, now: datetime) -> BreakerState:
        """Closed: delivering. Open: paused until ``probe_at``. Half-open: a probe is due."""
        if self.opened_at is None:
            return "closed"
        return "half-open" if self.probe_at is None or self.probe_at <= now else "open"


def states(connection: Connection) -> dict[str, TargetState]:
    """Every target that has failed since it last answered (the rest are closed)."""
    rows = connection.execute(select(OutboxTarget).where(_failing()))
    return {
        row.target: TargetState(row.target, row.failures, _aware(row.opened_at), _aware(row.probe_at))
        for row in rows
    }


def open_targets() -> Select:
    """The targets whose messages no worker may claim (a subquery for the outbox's claim)."""
    return select(OutboxTarget.target).where(OutboxTarget.opened_at.is_not(None))


def take_probe(engine: Engine, target: str, interval: float) -> datetime | None:
    """Claim this interval's probe of an open target; returns when it opened, or None when another
    worker took the probe first (or the target is no longer open)."""
    now = utcnow()
    statement = (
        update(OutboxTarget)
        .where(
            OutboxTarget.target == target,
            OutboxTarget.opened_at.is_not(None),
            or_(OutboxTarget.probe_at.is_(None), OutboxTarget.probe_at <= now),
        )
        .values(probe_at=now + timedelta(seconds=interval))
        .returning(OutboxTarget.opened_at)
    )
    with engine.begin() as connection:
        opened_at = connection.execute(statement).scalar()
    return _aware(opened_at)


def record_fault(engine: Engine, target: str, policy: BreakerPolicy, retry_after: float | None) -> bool:
    """Count one server fault; returns whether the target is open now.

    The count, the threshold test and the opening are one statement (SET expressions read the row
    as it was), so two workers failing at once count two faults and open it once.
    """
    now = utcnow()
    if retry_after is not None:
        opens, pause = true(), max(retry_after, MIN_PAUSE_SECONDS)
    else:
        opens = or_(OutboxTarget.opened_at.is_not(None), OutboxTarget.failures + 1 >= policy.failures)
        pause = policy.probe_interval
    statement = (
        update(OutboxTarget)
        .where(OutboxTarget.target == target)
        .values(
            failures=OutboxTarget.failures + 1,
            opened_at=case((opens, _coalesce_opened(now)), else_=None),
            probe_at=case((opens, now + timedelta(seconds=pause)), else_=None),
        )
        .returning(OutboxTarget.opened_at)
    )
    with engine.begin() as connection:
        _ensure_row(connection, target)
        opened_at = connection.execute(statement).scalar()
    return opened_at is not None


def record_answer(engine: Engine, target: str) -> None:
    """The target answered: the fault count starts again and an open breaker closes."""
    with engine.begin() as connection:
        connection.execute(
            update(OutboxTarget)
            .where(OutboxTarget.target == target, _failing())
            .values(failures=0, opened_at=None, probe_at=None)
        )


def _failing():
    return or_(OutboxTarget.failures > 0, OutboxTarget.opened_at.is_not(None))


def _coalesce_opened(now: datetime):
    return case((OutboxTarget.opened_at.is_(None), now), else_=OutboxTarget.opened_at)


def _ensure_row(connection: Connection, target: str) -> None:
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    connection.execute(
        dialect.insert(OutboxTarget)
        .values(target=target, failures=0)
        .on_conflict_do_nothing(index_elements=["target"])
    )


def _aware(moment: datetime | None) -> datetime | None:
    return None if moment is None else as_utc(moment)
