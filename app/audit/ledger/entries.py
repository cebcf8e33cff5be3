"""Ledger entries: one INSERT on the caller's transaction, no lock, no read of the chain head.

An entry is written with its kind, time, canonical content, the record it is about, a random
nonce and a MAC over them, and commits with the records it describes. It has no place in the
chain yet: the sealer (``sealing``) gives it a ``position``, ``prev_hash`` and ``entry_hash`` once
its transaction is visible. Its ``seq`` is the database's insert counter, the entry's name on the
audit page; it orders nothing (transactions commit in any order).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from typing import Any, NamedTuple, TypeVar

import orjson
from sqlalchemy import Column, Connection, Index, Text, insert, text
from sqlmodel import Field, SQLModel

from app.audit.ledger.keys import keys_for
from app.db import utcnow

GENESIS_HASH = "0" * 64
ENTRY_MAC = b"countersign ledger entry"
#: ``Table.info`` flag of a table whose every row has a ledger entry about it (verify checks it).
LEDGERED = "ledgered"
UNSEALED = text("position IS NULL")
Model = TypeVar("Model", bound=type[SQLModel])


class LedgerEntry(SQLModel, table=True):
    __tablename__ = "ledger_entry"
    __table_args__ = (
        Index("ix_ledger_entry_unsealed", "seq", sqlite_where=UNSEALED, postgresql_where=UNSEALED),
        Index("ix_ledger_entry_position", "position", unique=True),
        Index("ix_ledger_entry_mac", "mac", unique=True),
        Index("ix_ledger_entry_record", "record_table", "record_id"),
    )

    seq: int | None = Field(default=None, primary_key=True)
    kind: str = Field(index=True)
    recorded_at: str
    content: str = Field(sa_column=Column(Text, nullable=False))
    record_table: str | None = None
    record_id: int | None = None
    nonce: str | None = None
    key_id: str | None = None
    mac: str | None = None
    position: int | None = None
    prev_hash: str | None = None
    entry_hash: str | None = Field(default=None, unique=True)

    @property
    def sealed(self) -> bool:
        return self.position is not None


class Leaf(NamedTuple):
    """What an entry says. Its hash is what the chain binds; its MAC, what only a key holder makes."""

    kind: str
    recorded_at: str
    content: str
    record_table: str | None
    record_id: int | None
    nonce: str | None

    @classmethod
    def of(cls, row: Any) -> Leaf:
        return cls(*(getattr(row, name) for name in cls._fields))

    def hash(self) -> str:
        return leaf_hash(list(self))


def leaf_hash(fields: Sequence) -> str:
    """RFC 6962 leaf hash of a leaf's fields, in ``Leaf`` order: SHA-256 over 0x00 and the
    leaf, so no leaf can pass for a link. A sequence, not a ``Leaf``: verify hashes rows as read."""
    return hashlib.sha256(b"\x00" + orjson.dumps(fields)).hexdigest()


def chain_hash(position: int, prev_hash: str, leaf: str) -> str:
    """A link of the chain: the leaf at ``position`` after the entry whose hash is ``prev_hash``."""
    return hashlib.sha256(b"\x01" + f"{position}\n{prev_hash}\n{leaf}".encode()).hexdigest()


def legacy_entry_hash(seq: int, kind: str, recorded_at: str, content: str, prev_hash: str) -> str:
    """The hash of entries chained at append time, before migration 0009 (kept: they stay sealed)."""
    material = "\n".join((str(seq), kind, recorded_at, content, prev_hash))
    return hashlib.sha256(material.encode()).hexdigest()


def canonical(content: dict) -> str:
    return orjson.dumps(content, option=orjson.OPT_SORT_KEYS).decode()


def ledgered(model: Model) -> Model:
    """Mark a table whose rows are each recorded in the ledger: a row without its entry is a
    deleted entry (``verification`` looks), even one deleted before it was sealed."""
    model.__table__.info[LEDGERED] = True  # type: ignore[attr-defined]
    return model


INSERT_ENTRY = insert(LedgerEntry)


def append(
    connection: Connection, kind: str, content: dict, about: tuple[type[SQLModel], int] | None = None
) -> int:
    """Add an entry on the caller's transaction, so it commits with the records it describes;
    ``about`` names the record (a ``ledgered`` table's row) it is the entry of. Returns its seq."""
    keys = keys_for(connection.engine)
    model, record_id = about or (None, None)
    leaf = Leaf(
        kind=kind,
        recorded_at=utcnow().isoformat(),
        content=canonical(content),
        record_table=_ledgered_table(model) if model else None,
        record_id=record_id,
        nonce=secrets.token_hex(16),
    )
    row = leaf._asdict() | {"key_id": keys.current, "mac": keys.mac(ENTRY_MAC, leaf.hash().encode())}
    return connection.execute(INSERT_ENTRY, row).inserted_primary_key[0]


def _ledgered_table(model: type[SQLModel]) -> str:
    table = model.__table__  # type: ignore[attr-defined]
    if not table.info.get(LEDGERED):
        raise ValueError(f"{table.name} is not marked @ledgered: verify would not look for its entries")
    return table.name
