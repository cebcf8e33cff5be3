"""The governance ledger: append-only and hash-chained, so tampering with history is detectable.

Each entry's hash covers its sequence number, kind, time, canonical content and the previous
entry's hash; an edited, deleted, inserted or reordered row breaks the chain at that row. The
code offers no update or delete; on PostgreSQL a trigger refuses them too (migration 0002).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import orjson
from sqlalchemy import Column, Connection, Text, insert, select
from sqlmodel import Field, SQLModel

from app.db import utcnow

GENESIS_HASH = "0" * 64
LEDGER_LOCK_KEY = 7_311_2024  # pg_advisory_xact_lock key that serialises appends on PostgreSQL


class LedgerEntry(SQLModel, table=True):
    __tablename__ = "ledger_entry"

    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    kind: str = Field(index=True)
    recorded_at: str
    content: str = Field(sa_column=Column(Text, nullable=False))
    prev_hash: str
    entry_hash: str = Field(unique=True)


# Statements built once: every hook call appends an entry.
CHAIN_HEAD = select(LedgerEntry.seq, LedgerEntry.entry_hash).order_by(LedgerEntry.seq.desc()).limit(1)
INSERT_ENTRY = insert(LedgerEntry)


def canonical(content: dict) -> str:
    return orjson.dumps(content, option=orjson.OPT_SORT_KEYS).decode()


def entry_hash(seq: int, kind: str, recorded_at: str, content: str, prev_hash: str) -> str:
    material = "\n".join((str(seq), kind, recorded_at, content, prev_hash))
    return hashlib.sha256(material.encode()).hexdigest()


def append(connection: Connection, kind: str, content: dict) -> int:
    """Add an entry on the caller's transaction, so it commits with the records it describes."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({LEDGER_LOCK_KEY})")
    last = connection.execute(CHAIN_HEAD).first()
    seq, prev_hash = (last.seq + 1, last.entry_hash) if last else (1, GENESIS_HASH)
    recorded_at = utcnow().isoformat()
    text = canonical(content)
    row = {
        "seq": seq,
        "kind": kind,
        "recorded_at": recorded_at,
        "content": text,
        "prev_hash": prev_hash,
        "entry_hash": entry_hash(seq, kind, recorded_at, text, prev_hash),
    }
    connection.execute(INSERT_ENTRY, row)
    return seq


@dataclass(frozen=True)
class Verification:
    entries: int
    broken_at: int | None = None
    reason: str = ""

    @property
    def intact(self) -> bool:
        return self.broken_at is None


def verify(rows: Iterable[LedgerEntry]) -> Verification:
    """Walk the chain in sequence order; report the first entry that does not fit."""
    expected_prev, expected_seq, count = GENESIS_HASH, 1, 0
    for row in rows:
        count += 1
        if row.seq != expected_seq:
            return Verification(count, row.seq, f"expected entry {expected_seq}, found {row.seq}")
        if row.prev_hash != expected_prev:
            return Verification(count, row.seq, "does not link to the entry before it")
        if entry_hash(row.seq, row.kind, row.recorded_at, row.content, row.prev_hash) != row.entry_hash:
            return Verification(count, row.seq, "content does not match its hash")
        expected_prev, expected_seq = row.entry_hash, row.seq + 1
    return Verification(count)


def verify_database(connection: Connection) -> Verification:
    return verify(connection.execute(select(LedgerEntry).order_by(LedgerEntry.seq)))
