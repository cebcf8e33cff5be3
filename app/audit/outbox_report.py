"""What the outbox holds, for operators: ``countersign outbox status`` / ``list`` and ``/metrics``.

Everything here is read from the database, so it is true whichever process asks: a web process
scraped by Prometheus, a separate ``countersign worker``, or an operator's shell. Nothing printed
comes from a record's content; a server's reasons pass through ``outcome_summary`` first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, func, select

from app.audit import target_breaker
from app.audit.outbox import DEAD, DELIVERED, PENDING, OutboxMessage
from app.audit.outcome_summary import IssueSummary, summarize
from app.audit.target_breaker import BreakerState
from app.db import as_utc

STATUSES = (PENDING, DELIVERED, DEAD)


@dataclass(frozen=True)
class Count:
    target: str
    kind: str
    status: str
    messages: int


@dataclass
class TargetReport:
    target: str
    breaker: BreakerState = "closed"
    consecutive_faults: int = 0
    opened_at: datetime | None = None
    next_probe_at: datetime | None = None
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    oldest_pending_at: datetime | None = None

    def oldest_pending_seconds(self, now: datetime) -> float:
        """Delivery lag: age of the oldest message still waiting (0 when none)."""
        if self.oldest_pending_at is None:
            return 0.0
        return max((now - self.oldest_pending_at).total_seconds(), 0.0)


@dataclass(frozen=True)
class MessageReport:
    id: int
    kind: str
    target: str
    status: str
    attempts: int
    created_at: datetime
    first_failed_at: datetime | None
    last_failed_at: datetime | None
    http_status: int | None
    issues: tuple[IssueSummary, ...]


def counts(connection: Connection, statuses: Iterable[str] = STATUSES) -> list[Count]:
    rows = connection.execute(
        select(OutboxMessage.target, OutboxMessage.kind, OutboxMessage.status, func.count())
        .where(OutboxMessage.status.in_(list(statuses)))
        .group_by(OutboxMessage.target, OutboxMessage.kind, OutboxMessage.status)
        .order_by(OutboxMessage.target, OutboxMessage.kind, OutboxMessage.status)
    )
    return [Count(*row) for row in rows]


def targets(
    connection: Connection, configured: Iterable[str], now: datetime, statuses: Iterable[str] = STATUSES
) -> list[TargetReport]:
    """One report per configured target and per target the outbox or the breaker table names."""
    reports = {target: TargetReport(target) for target in configured}
    for count in counts(connection, statuses):
        report = reports.setdefault(count.target, TargetReport(count.target))
        report.counts[count.status] += count.messages
    oldest = connection.execute(
        select(OutboxMessage.target, func.min(OutboxMessage.created_at))
        .where(OutboxMessage.status == PENDING)
        .group_by(OutboxMessage.target)
    )
    for target, created_at in oldest:
        reports.setdefault(target, TargetReport(target)).oldest_pending_at = as_utc(created_at)
    for target, state in target_breaker.states(connection).items():
        report = reports.setdefault(target, TargetReport(target))
        report.breaker, report.consecutive_faults = state.state(now), state.failures
        report.opened_at, report.next_probe_at = state.opened_at, state.probe_at
    return [reports[target] for target in sorted(reports)]


def messages(connection: Connection, status: str, target: str | None, limit: int) -> list[MessageReport]:
    """Messages in one state, oldest first, each with its last failure as a PHI-safe summary."""
    query = select(OutboxMessage).where(OutboxMessage.status == status)
    if target is not None:
        query = query.where(OutboxMessage.target == target)
    rows = connection.execute(query.order_by(OutboxMessage.id).limit(limit)).mappings()
    return [_message(row) for row in rows]


def _message(row) -> MessageReport:
    return MessageReport(
        id=row["id"],
        kind=row["kind"],
        target=row["target"],
        status=row["status"],
        attempts=row["attempts"],
        created_at=as_utc(row["created_at"]),
        first_failed_at=_aware(row["first_failed_at"]),
        last_failed_at=_aware(row["last_failed_at"]),
        http_status=row["last_status"],
        issues=tuple(summarize(row["last_error"])),
    )


def _aware(moment: datetime | None) -> datetime | None:
    return None if moment is None else as_utc(moment)
