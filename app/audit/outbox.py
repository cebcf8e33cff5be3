"""The outbox: FHIR write-backs owed to a server, committed with the records they describe.

Workers claim due messages under a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; one atomic
UPDATE on SQLite), so no two workers hold a message at once, and a killed worker's messages are
taken up again when its lease runs out. Delivery is idempotent, so a retry never duplicates.
A target whose circuit breaker is open is skipped by the claim; one probe message at a time is
claimed for it instead (``claim_probe``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import (
    JSON,
    Column,
    Connection,
    DateTime,
    Engine,
    and_,
    case,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlmodel import Field, SQLModel

from app.audit.target_breaker import open_targets
from app.db import as_utc, utcnow

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"
# What a message records; the write-back worker turns each kind into FHIR resources.
CARD_SET, DECISION, MODEL_CHANGE = "card-set", "decision", "model-change"
SAFETY_EVENT, SIGNED_REVIEW = "safety-event", "signed-review"
USER_AUTHENTICATION = "user-authentication"
MODEL_PROMOTION, SHADOW_CARD_SET = "model-promotion", "shadow-card-set"


def _timestamp(*, nullable: bool = False, index: bool = False) -> Column:
    return Column(DateTime(timezone=True), nullable=nullable, index=index)


class OutboxMessage(SQLModel, table=True):
    __tablename__ = "outbox_message"

    id: int | None = Field(default=None, primary_key=True)
    kind: str
    record_id: int
    target: str = Field(index=True)
    status: str = Field(default=PENDING, index=True)
    attempts: int = 0
    available_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp(index=True))
    lease_owner: str | None = None
    lease_until: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))
    last_error: dict | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    last_status: int | None = None
    first_failed_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))
    last_failed_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())
    delivered_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))


@dataclass(frozen=True)
class Claimed:
    id: int
    kind: str
    record_id: int
    target: str
    attempts: int
    created_at: datetime
    #: Start of the retry window: the first failure (None: it has not failed since it was queued).
    failing_since: datetime | None


@dataclass(frozen=True)
class Failure:
    """What a failed try leaves on the message: the server's OperationOutcome (or ours) and the
    HTTP status it came with (None when no answer came, or the failure was ours)."""

    outcome: dict
    status: int | None


CLAIMED_COLUMNS = (
    OutboxMessage.id,
    OutboxMessage.kind,
    OutboxMessage.record_id,
    OutboxMessage.target,
    OutboxMessage.attempts,
    OutboxMessage.created_at,
    OutboxMessage.first_failed_at,
)


def enqueue(connection: Connection, kind: str, record_id: int, target: str) -> None:
    now = utcnow()
    connection.execute(
        insert(OutboxMessage),
        {
            "kind": kind,
            "record_id": record_id,
            "target": target,
            "status": PENDING,
            "attempts": 0,
            "available_at": now,
            "created_at": now,
        },
    )


def claim(engine: Engine, owner: str, limit: int, lease: timedelta) -> list[Claimed]:
    """Lease up to ``limit`` due messages to ``owner`` in one statement, oldest first, skipping
    targets whose breaker is open."""
    now = utcnow()
    due = (
        select(OutboxMessage.id)
        .where(
            OutboxMessage.status == PENDING,
            OutboxMessage.available_at <= now,
            _free(now),
            OutboxMessage.target.not_in(open_targets()),
        )
        .order_by(OutboxMessage.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=OutboxMessage)
    )
    return _lease(engine, due, owner, now + lease)


def claim_probe(engine: Engine, owner: str, target: str, lease: timedelta) -> Claimed | None:
    """Lease one message of an open target to probe it with: the oldest that is due, else the
    oldest at all (its own backoff yields to the breaker's interval, which already spaces probes)."""
    now = utcnow()
    oldest = (
        select(OutboxMessage.id)
        .where(OutboxMessage.status == PENDING, OutboxMessage.target == target, _free(now))
        .order_by(case((OutboxMessage.available_at <= now, 0), else_=1), OutboxMessage.id)
        .limit(1)
        .with_for_update(skip_locked=True, of=OutboxMessage)
    )
    claimed = _lease(engine, oldest, owner, now + lease)
    return claimed[0] if claimed else None


def _lease(engine: Engine, chosen, owner: str, until: datetime) -> list[Claimed]:
    statement = (
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(chosen.scalar_subquery()), _free(utcnow()))
        .values(lease_owner=owner, lease_until=until)
        .returning(*CLAIMED_COLUMNS)
    )
    with engine.begin() as connection:
        rows = connection.execute(statement).all()
    return sorted((_claimed(row) for row in rows), key=lambda message: message.id)


def _claimed(row) -> Claimed:
    *head, created_at, first_failed_at = row
    failing_since = None if first_failed_at is None else as_utc(first_failed_at)
    return Claimed(*head, as_utc(created_at), failing_since)


def _free(now: datetime):
    return or_(OutboxMessage.lease_until.is_(None), OutboxMessage.lease_until < now)


def mark_delivered(engine: Engine, messages: list[Claimed], owner: str) -> None:
    _finish(engine, messages, owner, status=DELIVERED, delivered_at=utcnow(), last_error=None)


def mark_dead(engine: Engine, message: Claimed, owner: str, failure: Failure, since: datetime) -> None:
    """Give up on a message; ``since`` is when its failures began (kept as its first failure)."""
    values = _failed(failure, since)
    _finish(engine, [message], owner, status=DEAD, attempts=message.attempts + 1, **values)


def retry_later(
    engine: Engine, message: Claimed, owner: str, failure: Failure, since: datetime, delay: timedelta
) -> None:
    values = _failed(failure, since) | {"available_at": utcnow() + delay}
    _finish(engine, [message], owner, status=PENDING, attempts=message.attempts + 1, **values)


def release(engine: Engine, messages: list[Claimed], owner: str) -> None:
    """Hand back messages that were claimed but not tried: nothing about them changes."""
    if messages:
        _finish(engine, messages, owner)


def expire_held(engine: Engine, target: str, opened_at: datetime, failure: Failure, window: timedelta) -> int:
    """Dead-letter the pending messages of a target that is still down whose window has ended.

    A message held back by the open breaker was never tried, so its window starts at the later
    of its creation and the breaker's opening: the time from which it could not be delivered.
    """
    now = utcnow()
    cutoff = now - window
    ended = OutboxMessage.first_failed_at <= cutoff
    if opened_at <= cutoff:
        never_tried = and_(OutboxMessage.first_failed_at.is_(None), OutboxMessage.created_at <= cutoff)
        ended = or_(ended, never_tried)
    statement = (
        update(OutboxMessage)
        .where(OutboxMessage.target == target, OutboxMessage.status == PENDING, _free(now), ended)
        .values(
            status=DEAD,
            last_error=failure.outcome,
            last_status=failure.status,
            last_failed_at=now,
            first_failed_at=func.coalesce(OutboxMessage.first_failed_at, _later(opened_at)),
        )
    )
    with engine.begin() as connection:
        return connection.execute(statement).rowcount


def _later(opened_at: datetime):
    return case((OutboxMessage.created_at > opened_at, OutboxMessage.created_at), else_=opened_at)


def _failed(failure: Failure, since: datetime) -> dict:
    return {
        "last_error": failure.outcome,
        "last_status": failure.status,
        "last_failed_at": utcnow(),
        "first_failed_at": func.coalesce(OutboxMessage.first_failed_at, since),
    }


def _finish(engine: Engine, messages: list[Claimed], owner: str, **values: object) -> None:
    """Only the lease holder may settle a message: a worker whose lease lapsed changes nothing."""
    with engine.begin() as connection:
        connection.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_([m.id for m in messages]), OutboxMessage.lease_owner == owner)
            .values(lease_owner=None, lease_until=None, **values)
        )


def requeue(connection: Connection, ids: list[int]) -> list[int]:
    """Put dead letters back in the queue as if new: attempts reset, retry window restarted, due
    now. The last error stays on the message until a delivery clears it. Returns the ids moved."""
    statement = (
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(ids), OutboxMessage.status == DEAD)
        .values(status=PENDING, attempts=0, first_failed_at=None, available_at=utcnow())
        .returning(OutboxMessage.id)
    )
    return sorted(connection.execute(statement).scalars())
