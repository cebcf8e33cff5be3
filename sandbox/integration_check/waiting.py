"""Draining the outbox until the journey's messages are settled (delivered or dead-lettered), or
until the check's timeout: a message still pending then is reported as not written back."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select

from app.audit.outbox import PENDING, OutboxMessage
from sandbox.integration_check.service import RunningCountersign

POLL_SECONDS = 0.2


@dataclass(frozen=True)
class Message:
    id: int
    kind: str
    record_id: int
    target: str
    status: str
    last_status: int | None
    last_error: dict | None


def wait_for_write_back(
    countersign: RunningCountersign, ids: list[int], timeout: float, on_progress: Callable[[int], None]
) -> dict[int, Message]:
    """Run the worker until every message of ``ids`` is settled or ``timeout`` seconds pass;
    ``on_progress`` gets the number settled so far after each round."""
    deadline = time.monotonic() + timeout
    while True:
        tried = countersign.worker.run_once()
        messages = _messages(countersign, ids)
        settled = sum(message.status != PENDING for message in messages.values())
        on_progress(settled)
        if settled == len(ids) or time.monotonic() >= deadline:
            return messages
        if not tried:
            time.sleep(POLL_SECONDS)


def _messages(countersign: RunningCountersign, ids: list[int]) -> dict[int, Message]:
    columns = (
        OutboxMessage.id,
        OutboxMessage.kind,
        OutboxMessage.record_id,
        OutboxMessage.target,
        OutboxMessage.status,
        OutboxMessage.last_status,
        OutboxMessage.last_error,
    )
    with countersign.engine.connect() as connection:
        rows = connection.execute(select(*columns).where(OutboxMessage.id.in_(ids))).all()
    return {row.id: Message(*row) for row in rows}
