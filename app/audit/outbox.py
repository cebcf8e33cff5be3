"""The outbox: FHIR write-backs owed to a server, committed with the records they describe.

Workers claim due messages under a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; one atomic
UPDATE on SQLite), so no two workers hold a message at once, and a killed worker's messages are
taken up again when its lease runs out. Delivery is idempotent, so a retry never duplicates.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import JSON, Column, Connection, DateTime, Engine, insert, or_, select, update
from sqlmodel import Field, SQLModel

from app.db import utcnow

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"


def _timestamp(*, nullable: bool = False, index: bool = False) -> Column:
    return Column(DateTime(timezone=True), nullable=nullable, index=index)


class OutboxMessage(SQLModel, table=True):
    __tablename__ = "outbox_message"

    id: int | None = Field(default=None, primary_key=True)
    kind: str
    record_id: int
    target: str
    status: str = Field(default=PENDING, index=True)
    attempts: int = 0
    available_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp(index=True))
    lease_owner: str | None = None
    lease_until: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))
    last_error: dict | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())
    delivered_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))


@dataclass(frozen=True)
class Claimed:
    id: int
    kind: str
    record_id: int
    target: str
    attempts: int


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
    """Lease up to ``limit`` due messages to ``owner`` in one statement."""
    now = utcnow()
    free = or_(OutboxMessage.lease_until.is_(None), OutboxMessage.lease_until < now)
    due = (
        select(OutboxMessage.id)
        .where(OutboxMessage.status == PENDING, OutboxMessage.available_at <= now, free)
        .order_by(OutboxMessage.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    statement = (
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(due.scalar_subquery()), free)
        .values(lease_owner=owner, lease_until=now + lease)
        .returning(
            OutboxMessage.id,
            OutboxMessage.kind,
            OutboxMessage.record_id,
            OutboxMessage.target,
            OutboxMessage.attempts,
        )
    )
    with engine.begin() as connection:
        return [Claimed(*row) for row in connection.execute(statement)]


def mark_delivered(engine: Engine, messages: list[Claimed], owner: str) -> None:
    _finish(engine, messages, owner, status=DELIVERED, delivered_at=utcnow(), last_error=None)


def mark_dead(engine: Engine, message: Claimed, owner: str, error: dict) -> None:
    _finish(engine, [message], owner, status=DEAD, attempts=message.attempts + 1, last_error=error)


def retry_later(engine: Engine, message: Claimed, owner: str, error: dict, delay: timedelta) -> None:
    _finish(
        engine,
        [message],
        owner,
        status=PENDING,
        attempts=message.attempts + 1,
        available_at=utcnow() + delay,
        last_error=error,
    )


def _finish(engine: Engine, messages: list[Claimed], owner: str, **values: object) -> None:
    """Only the lease holder may settle a message: a worker whose lease lapsed changes nothing."""
    with engine.begin() as connection:
        connection.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_([m.id for m in messages]), OutboxMessage.lease_owner == owner)
            .values(lease_owner=None, lease_until=None, **values)
        )
