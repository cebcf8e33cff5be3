"""Putting dead letters back in the queue once their cause is fixed (``countersign outbox retry``).

A retried message is as if new: attempts reset, retry window restarted, due at once. This is
safe to do at any time, even for a message whose write in fact landed (an answer lost on the
way back): every resource in a Bundle is a conditional create keyed by its delivery tag, so a
replay finds what is there and creates nothing twice. The retry is recorded in the ledger, in
the same transaction, so the audit trail says who put which messages back and when.
"""

from __future__ import annotations

import getpass
import socket
from collections.abc import Sequence

from sqlalchemy import Engine, select

from app.audit import ledger, outbox
from app.audit.outbox import DEAD, OutboxMessage

LEDGER_KIND = "outbox-retried"


class RetryRefused(Exception):
    """Nothing was put back: the request named no dead letter, or one that is not dead."""


def retry_dead_letters(engine: Engine, ids: Sequence[int], every: bool) -> list[int]:
    """Requeue the dead letters ``ids`` (all or none), or every dead letter; returns their ids."""
    if every == bool(ids):
        raise RetryRefused("name dead letters with --id, or pass --all-dead (not both)")
    with engine.begin() as connection:
        found = dict(
            connection.execute(
                select(OutboxMessage.id, OutboxMessage.status).where(
                    OutboxMessage.status == DEAD if every else OutboxMessage.id.in_(list(ids))
                )
            ).all()
        )
        _check(ids, found)
        requeued = outbox.requeue(connection, sorted(found))
        if requeued:
            ledger.append(connection, LEDGER_KIND, {"messages": requeued, "operator": _operator()})
    return requeued


def _check(ids: Sequence[int], found: dict[int, str]) -> None:
    missing = sorted(set(ids) - set(found))
    if missing:
        raise RetryRefused(f"no outbox message {', '.join(map(str, missing))}")
    alive = sorted(message_id for message_id, status in found.items() if status != DEAD)
    if alive:
        listed = ", ".join(f"{message_id} ({found[message_id]})" for message_id in alive)
        raise RetryRefused(f"not dead letters: {listed}")


def _operator() -> str:
    """Who ran the command, as the operating system knows them (no one else is asked)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"
