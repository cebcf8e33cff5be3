"""Verifying the ledger: sealed entries by the chain and its seals, every entry by its MAC, and
deletions before sealing by the records that must each have an entry.

Sealed entries are walked in position order, streamed, in constant memory: each must follow the
one before (position, ``prev_hash``), match its hash and MAC, and every batch must match its seal
(bounds, heads, MAC). Then every unsealed entry must match its MAC, no entry may be a copy of
another (the MAC covers a random nonce), and every row of a ``ledgered`` table must still have its
entry. ``countersign audit verify`` resumes from a MAC'd checkpoint, the last seal it verified.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import orjson
from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Row,
    Select,
    Table,
    and_,
    bindparam,
    exists,
    func,
    insert,
    select,
    update,
)
from sqlmodel import Field, SQLModel

from app.audit.ledger.entries import (
    ENTRY_MAC,
    GENESIS_HASH,
    LEDGERED,
    Leaf,
    LedgerEntry,
    chain_hash,
    legacy_entry_hash,
)
from app.audit.ledger.keys import UNKEYED, LedgerKeys, keys_for
from app.audit.ledger.sealing import SEAL_MAC, LedgerSeal, seal_material
from app.db import utcnow

CHECKPOINT_MAC = b"countersign ledger checkpoint"
#: The last entry migration 0009 chained the old way: which records predate per-record entries.
SEALING_STARTED = "ledger-sealing-started"
PROGRESS_EVERY = 100_000
YIELD_PER = 1000
Progress = Callable[[int], None]


class LedgerCheckpoint(SQLModel, table=True):
    """One row (id 1): the last seal ``countersign audit verify`` found intact, MAC'd."""

    __tablename__ = "ledger_checkpoint"

    id: int = Field(primary_key=True)
    position: int
    head: str
    verified_at: str
    key_id: str
    mac: str


@dataclass(frozen=True)
class Verification:
    """``entries`` verified by this run (``unsealed`` of them by their MAC alone), from the
    checkpoint at ``since``; ``position`` and ``head`` are the last seal's, to keep elsewhere."""

    entries: int = 0
    unsealed: int = 0
    since: int = 0
    position: int = 0
    head: str = GENESIS_HASH
    broken_at: str | None = None
    reason: str = ""

    @property
    def intact(self) -> bool:
        return self.broken_at is None


class Broken(Exception):
    def __init__(self, at: str, reason: str) -> None:
        super().__init__(f"{at}: {reason}")
        self.at, self.reason = at, reason


def checkpoint_material(position: int, head: str, verified_at: str) -> bytes:
    return orjson.dumps([position, head, verified_at])


@dataclass
class Walk:
    """Where the walk stands: the last entry verified, and the batch its next seal must close."""

    keys: LedgerKeys
    position: int = 0
    head: str = GENESIS_HASH
    batch_from: int = 1
    batch_head: str = GENESIS_HASH
    since: int = 0
    legacy_done: bool = False
    keyed_seal: bool = False
    entries: int = 0
    unsealed: int = 0

    def sealed_entry(self, row: Row) -> None:
        at = f"entry {row.seq}"
        if row.position != self.position + 1:
            raise Broken(at, f"expected position {self.position + 1}, found {row.position}")
        if row.prev_hash != self.head:
            raise Broken(at, "does not link to the entry before it")
        if row.key_id is None:
            self._legacy(row, at)
        else:
            self.legacy_done = True
            leaf = Leaf.of(row).hash()
            if chain_hash(row.position, row.prev_hash, leaf) != row.entry_hash:
                raise Broken(at, "content does not match its hash")
            self._entry_mac(row, leaf, at)
        self.position, self.head, self.entries = row.position, row.entry_hash, self.entries + 1
        if row.seal_id is not None:
            self._seal(row)

    def unsealed_entry(self, row: Row) -> None:
        at = f"entry {row.seq}"
        if row.key_id is None:
            raise Broken(at, "has no MAC and no place in the chain")
        self._entry_mac(row, Leaf.of(row).hash(), at)
        self.entries, self.unsealed = self.entries + 1, self.unsealed + 1

    def _legacy(self, row: Row, at: str) -> None:
        """Entries chained before migration 0009 have no MAC; they can only open the chain."""
        if self.legacy_done:
            raise Broken(at, "has no MAC, yet follows entries that have one")
        legacy = legacy_entry_hash(row.seq, row.kind, row.recorded_at, row.content, row.prev_hash)
        if row.seq != row.position or legacy != row.entry_hash:
            raise Broken(at, "content does not match its hash")

    def _entry_mac(self, row: Row, leaf: str, at: str) -> None:
        self._keyed_after_keyed(row.key_id, at)
        self._authentic(ENTRY_MAC, leaf.encode(), row.key_id, row.mac, at)

    def _seal(self, row: Row) -> None:
        at = f"seal {row.seal_id}"
        bounds = (row.seal_first_position, row.seal_prev_head, row.seal_head)
        if bounds != (self.batch_from, self.batch_head, self.head):
            raise Broken(at, "does not match the entries it seals")
        self._keyed_after_keyed(row.seal_key_id, at)
        if row.seal_key_id is None and self.legacy_done:  # None: the seal 0009 put on the old chain
            raise Broken(at, "has no MAC, yet seals entries that have one")
        if row.seal_key_id is not None:
            material = seal_material(
                self.batch_from, self.position, self.batch_head, self.head, row.seal_sealed_at
            )
            self._authentic(SEAL_MAC, material, row.seal_key_id, row.seal_mac, at)
            self.keyed_seal = self.keyed_seal or row.seal_key_id != UNKEYED
        self.batch_from, self.batch_head = self.position + 1, self.head

    def _keyed_after_keyed(self, key_id: str | None, at: str) -> None:
        """Once a seal is MAC'd under a ledger key, nothing written without one may follow it."""
        if self.keys.keyed and self.keyed_seal and key_id in (None, UNKEYED):
            raise Broken(at, "has no MAC under a ledger key, yet follows seals that have one")

    def _authentic(self, purpose: bytes, data: bytes, key_id: str, mac: str | None, at: str) -> None:
        if key_id not in self.keys.secrets:
            raise Broken(at, f"its MAC key {key_id} is not in COUNTERSIGN_LEDGER_KEYS")
        if not self.keys.matches(purpose, data, key_id, mac):
            raise Broken(at, "its MAC does not match: altered, or forged without the key")

    def result(self, broken: Broken | None = None) -> Verification:
        done = Verification(self.entries, self.unsealed, self.since, self.batch_from - 1, self.batch_head)
        return done if broken is None else replace(done, broken_at=broken.at, reason=broken.reason)


SEAL_COLUMNS = [column.label(f"seal_{column.name}") for column in LedgerSeal.__table__.columns]
SEALED_AFTER = (
    select(LedgerEntry.__table__, *SEAL_COLUMNS)
    .outerjoin(LedgerSeal, LedgerSeal.last_position == LedgerEntry.position)
    .where(LedgerEntry.position > bindparam("after"))
    .order_by(LedgerEntry.position)
    .execution_options(yield_per=YIELD_PER)
)
UNSEALED_ENTRIES = (
    select(LedgerEntry)
    .where(LedgerEntry.position.is_(None))
    .order_by(LedgerEntry.seq)
    .execution_options(yield_per=YIELD_PER)
)
SEALED_TAIL = select(func.max(LedgerSeal.last_position))
_COPY = LedgerEntry.__table__.alias("copy")


def _copies_among(entries: ColumnElement[bool]) -> Select:
    return (
        select(LedgerEntry.seq, _COPY.c.seq.label("original"))
        .join(_COPY, and_(_COPY.c.mac == LedgerEntry.mac, _COPY.c.seq < LedgerEntry.seq))
        .where(entries)
        .limit(1)
    )


# Two statements, not one with OR: SQLite answers an OR of two indexed conditions by collecting
# every matching rowid first (memory that grows with the ledger); each of these streams.
COPIES = (
    _copies_among(LedgerEntry.position > bindparam("after")),
    _copies_among(LedgerEntry.position.is_(None)),
)
RECORDS_FROM = (
    select(LedgerEntry.content)
    .where(
        LedgerEntry.kind == SEALING_STARTED, LedgerEntry.key_id.is_(None), LedgerEntry.position.is_not(None)
    )
    .order_by(LedgerEntry.position)
    .limit(1)
)


def verify_database(connection: Connection, progress: Progress | None = None) -> Verification:
    """Every entry from the start, read-only (the audit page)."""
    return _verify(connection, Walk(keys_for(connection.engine)), progress)


def verify_from_checkpoint(
    engine: Engine, full: bool = False, progress: Progress | None = None
) -> Verification:
    """``countersign audit verify``: the entries after the checkpoint (all with ``full``), plus the
    checks that cover every entry; an intact ledger moves the checkpoint to the last seal."""
    keys = keys_for(engine)
    with engine.connect() as connection:
        try:
            walk = Walk(keys) if full else _resume(connection, keys)
        except Broken as broken:
            return Walk(keys).result(broken)
        result = _verify(connection, walk, progress)
    if result.intact and result.position > 0:
        _save_checkpoint(engine, keys, result.position, result.head)
    return result


def _verify(connection: Connection, walk: Walk, progress: Progress | None) -> Verification:
    try:
        tail = connection.execute(SEALED_TAIL).scalar() or 0  # read first: seals and entries only grow
        _each(connection.execute(SEALED_AFTER, {"after": walk.position}), walk.sealed_entry, walk, progress)
        if walk.batch_from <= walk.position:
            raise Broken(f"position {walk.batch_from}", "is chained, but no seal covers it")
        if tail > walk.position:
            raise Broken(f"the seal ending at position {tail}", "seals entries that are gone")
        _each(connection.execute(UNSEALED_ENTRIES), walk.unsealed_entry, walk, progress)
        _no_copies(connection, walk.since)
        _every_record_has_its_entry(connection)
    except Broken as broken:
        return walk.result(broken)
    return walk.result()


def _each(rows: Iterable[Row], step: Callable[[Row], None], walk: Walk, progress: Progress | None) -> None:
    for row in rows:
        step(row)
        if progress is not None and walk.entries % PROGRESS_EVERY == 0:
            progress(walk.entries)


def _resume(connection: Connection, keys: LedgerKeys) -> Walk:
    """The walk as the checkpoint left it, if its MAC holds and the chain still passes through it."""
    checkpoint = connection.execute(select(LedgerCheckpoint).where(LedgerCheckpoint.id == 1)).first()
    if checkpoint is None:
        return Walk(keys)
    material = checkpoint_material(checkpoint.position, checkpoint.head, checkpoint.verified_at)
    unkeyed = keys.keyed and checkpoint.key_id == UNKEYED
    if unkeyed or not keys.matches(CHECKPOINT_MAC, material, checkpoint.key_id, checkpoint.mac):
        raise Broken("the checkpoint", "its MAC does not match (run with --full)")
    at = select(LedgerEntry.entry_hash, LedgerEntry.key_id).where(LedgerEntry.position == checkpoint.position)
    entry = connection.execute(at).first()
    if entry is None or entry.entry_hash != checkpoint.head:
        raise Broken(f"position {checkpoint.position}", "no longer holds the entry verified there")
    keyed = LedgerSeal.last_position <= checkpoint.position, LedgerSeal.key_id != UNKEYED
    position, head = checkpoint.position, checkpoint.head
    return Walk(
        keys,
        position=position,
        head=head,
        batch_from=position + 1,
        batch_head=head,
        since=position,
        legacy_done=entry.key_id is not None,
        keyed_seal=bool(connection.execute(select(exists().where(*keyed))).scalar()),
    )


def _no_copies(connection: Connection, after: int) -> None:
    """A copied row carries a valid MAC; its nonce, hence its MAC, is another entry's."""
    for copies in COPIES:
        copy = connection.execute(copies, {"after": after}).first()
        if copy is not None:
            raise Broken(f"entry {copy.seq}", f"is a copy of entry {copy.original}")


def _every_record_has_its_entry(connection: Connection) -> None:
    """A row of a ledgered table without its entry: the entry was deleted, sealed or not. Rows up
    to the ids migration 0009 recorded predate per-record entries and are not looked at."""
    content = connection.execute(RECORDS_FROM).scalar()
    records_from = orjson.loads(content)["records_from"] if content else {}
    for table in ledgered_tables():
        missing = connection.execute(
            _without_entry(table), {"after": records_from.get(table.name, 0)}
        ).scalar()
        if missing is not None:
            raise Broken(f"{table.name} {missing}", "has no ledger entry: it was deleted")


def ledgered_tables() -> list[Table]:
    return [table for table in SQLModel.metadata.sorted_tables if table.info.get(LEDGERED)]


def _without_entry(table: Table) -> Select:
    entry = exists().where(LedgerEntry.record_table == table.name, LedgerEntry.record_id == table.c.id)
    return select(table.c.id).where(table.c.id > bindparam("after"), ~entry).order_by(table.c.id).limit(1)


def _save_checkpoint(engine: Engine, keys: LedgerKeys, position: int, head: str) -> None:
    verified_at = utcnow().isoformat()
    mac = keys.mac(CHECKPOINT_MAC, checkpoint_material(position, head, verified_at))
    row = {"position": position, "head": head, "verified_at": verified_at, "key_id": keys.current, "mac": mac}
    with engine.begin() as connection:
        moved = connection.execute(update(LedgerCheckpoint).where(LedgerCheckpoint.id == 1), row)
        if moved.rowcount == 0:
            connection.execute(insert(LedgerCheckpoint), row | {"id": 1})
