"""The sealer: chains entries in the order their transactions become visible to it, in batches.

Each round takes the entries it can see unsealed (oldest insert first), gives them the next
consecutive positions, links each to the one before (``prev_hash``, ``entry_hash``) and writes a
``ledger_seal`` row, the batch head, MAC'd like a signed tree head. Rounds run one at a time
across every process and host: the round's first statement updates the single ``ledger_sealer``
row, which on PostgreSQL locks it until commit and on SQLite takes the one writer's lock. Appends
never touch that row, so the hook path never waits for a sealer or for another append.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime

import orjson
from sqlalchemy import Connection, Engine, Index, bindparam, func, insert, select, update
from sqlmodel import Field, SQLModel

from app.audit.ledger.entries import GENESIS_HASH, Leaf, LedgerEntry, chain_hash
from app.audit.ledger.keys import LedgerKeys, keys_for
from app.db import as_utc, utcnow

SEAL_MAC = b"countersign ledger seal"
BATCH_SIZE = 1000
log = logging.getLogger(__name__)


class LedgerSeal(SQLModel, table=True):
    """A batch head: the chain from ``first_position`` to ``last_position`` ends at ``head``."""

    __tablename__ = "ledger_seal"
    __table_args__ = (Index("ix_ledger_seal_last_position", "last_position", unique=True),)

    id: int | None = Field(default=None, primary_key=True)
    first_position: int
    last_position: int
    prev_head: str
    head: str
    sealed_at: str
    key_id: str | None = None
    mac: str | None = None


class SealerLock(SQLModel, table=True):
    """One row (id 1), updated first by every sealing round so that rounds run one at a time."""

    __tablename__ = "ledger_sealer"

    id: int = Field(primary_key=True)
    sealed_by: str | None = None
    sealed_at: str | None = None


def seal_material(first: int, last: int, prev_head: str, head: str, sealed_at: str) -> bytes:
    return orjson.dumps([first, last, prev_head, head, sealed_at])


ANY_UNSEALED = select(LedgerEntry.seq).where(LedgerEntry.position.is_(None)).limit(1)
CLAIM = update(SealerLock).where(SealerLock.id == 1)
LAST_SEAL = (
    select(LedgerSeal.last_position, LedgerSeal.head).order_by(LedgerSeal.last_position.desc()).limit(1)
)
UNSEALED_LEAVES = (
    select(LedgerEntry.seq, *(getattr(LedgerEntry, name) for name in Leaf._fields))
    .where(LedgerEntry.position.is_(None))
    .order_by(LedgerEntry.seq)
    .limit(bindparam("limit"))
)
CHAIN_ENTRY = (
    update(LedgerEntry)
    .where(LedgerEntry.seq == bindparam("b_seq"), LedgerEntry.position.is_(None))
    .values(position=bindparam("b_position"), prev_hash=bindparam("b_prev"), entry_hash=bindparam("b_hash"))
)


def seal_batch(engine: Engine, owner: str = "", limit: int = BATCH_SIZE) -> int:
    """One round: at most ``limit`` visible unsealed entries chained and sealed; returns how many."""
    with engine.connect() as connection:
        if connection.execute(ANY_UNSEALED).first() is None:
            return 0  # nothing to do: the writer's lock is not taken
    keys = keys_for(engine)
    with engine.begin() as connection:
        now = utcnow().isoformat()
        connection.execute(CLAIM, {"sealed_by": owner, "sealed_at": now})
        rows = connection.execute(UNSEALED_LEAVES, {"limit": limit}).all()
        if rows:
            _chain(connection, rows, keys, now)
        return len(rows)


def _chain(connection: Connection, rows: list, keys: LedgerKeys, sealed_at: str) -> None:
    last = connection.execute(LAST_SEAL).first()
    position, head = (last.last_position, last.head) if last else (0, GENESIS_HASH)
    first, prev_head, links = position + 1, head, []
    for row in rows:
        position += 1
        entry_hash = chain_hash(position, head, Leaf.of(row).hash())
        links.append({"b_seq": row.seq, "b_position": position, "b_prev": head, "b_hash": entry_hash})
        head = entry_hash
    connection.execute(CHAIN_ENTRY, links)
    material = seal_material(first, position, prev_head, head, sealed_at)
    seal = {
        "first_position": first,
        "last_position": position,
        "prev_head": prev_head,
        "head": head,
        "sealed_at": sealed_at,
        "key_id": keys.current,
        "mac": keys.mac(SEAL_MAC, material),
    }
    connection.execute(insert(LedgerSeal), seal)


def seal_now(engine: Engine) -> int:
    """Seal everything visible now, batch after batch (tests, ``countersign worker --once``)."""
    total = 0
    while sealed := seal_batch(engine):
        total += sealed
    return total


@dataclass(frozen=True)
class Backlog:
    """The entries still waiting for their seal, and when the oldest of them was recorded."""

    entries: int
    oldest_at: datetime | None

    def age(self, now: datetime) -> float:
        """Seconds the oldest unsealed entry has waited (0 when none): the unsealed window."""
        if self.oldest_at is None:
            return 0.0
        return max((now - self.oldest_at).total_seconds(), 0.0)


BACKLOG = select(func.count(), func.min(LedgerEntry.recorded_at)).where(LedgerEntry.position.is_(None))


def unsealed_backlog(connection: Connection) -> Backlog:
    count, oldest = connection.execute(BACKLOG).one()
    return Backlog(count, as_utc(datetime.fromisoformat(oldest)) if oldest else None)


class Sealer:
    """Seals every ``interval`` seconds, at once again after a full batch: in a thread of each web
    process by default, and in ``countersign worker``."""

    def __init__(self, engine: Engine, interval: float, batch_size: int = BATCH_SIZE) -> None:
        self.engine = engine
        self.interval = interval
        self.batch_size = batch_size
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop: threading.Event | None = None
        self._lock = threading.Lock()

    def run_forever(self, stop: threading.Event) -> None:
        failing = False
        while not stop.is_set():
            try:
                sealed = seal_batch(self.engine, self.owner, self.batch_size)
                failing = False
            except Exception:
                if not failing:  # once per outage, not at every round
                    log.exception("ledger sealing failed; retrying every round")
                sealed, failing = 0, True
            if sealed < self.batch_size:
                stop.wait(self.interval)

    def start_in_background(self) -> threading.Event:
        """Idempotent: one sealing thread per process, whoever asks for it."""
        with self._lock:
            if self._stop is None:
                self._stop = threading.Event()
                thread = threading.Thread(
                    target=self.run_forever, args=(self._stop,), name="ledger-sealer", daemon=True
                )
                thread.start()
            return self._stop
