"""Reading the ledger for people: recent entries, filtered by kind and date, newest first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import Connection, select

from app.audit.ledger import LedgerEntry

PAGE_SIZE = 200


@dataclass(frozen=True)
class TrailFilter:
    kind: str | None = None
    since: date | None = None
    until: date | None = None


def kinds(connection: Connection) -> list[str]:
    return list(connection.execute(select(LedgerEntry.kind).distinct().order_by(LedgerEntry.kind)).scalars())


def entries(connection: Connection, trail_filter: TrailFilter, limit: int = PAGE_SIZE) -> list[LedgerEntry]:
    """ISO timestamps sort as text, so date bounds compare on ``recorded_at`` directly."""
    query = select(LedgerEntry).order_by(LedgerEntry.seq.desc()).limit(limit)
    if trail_filter.kind:
        query = query.where(LedgerEntry.kind == trail_filter.kind)
    if trail_filter.since:
        query = query.where(LedgerEntry.recorded_at >= trail_filter.since.isoformat())
    if trail_filter.until:
        query = query.where(LedgerEntry.recorded_at < (trail_filter.until + timedelta(days=1)).isoformat())
    return [LedgerEntry.model_validate(row._mapping) for row in connection.execute(query)]
