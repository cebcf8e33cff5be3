"""Verifying the ledger: sealed entries by the chain and its seals, every entry by its MAC, and
deletions before sealing by the records that must each have an entry.

Sealed entries are walked in position order, streamed, in constant memory, in chunks that each end
at a seal (``CHUNK_ENTRIES`` or a little more): each entry must follow the one before (position,
``prev_hash``), match its hash and MAC, and every batch must match its seal (bounds, heads, MAC).
With ``jobs`` > 1 the chunks are walked by that many processes side by side, each from the state
the entry before it and the seals up to it give; the chunks are then joined in order, and each
must start where the one before it ended, so the result is the one walk's. Then every unsealed
entry must match its MAC, no entry may be a copy of another (the MAC covers a random nonce), and
every row of a ``ledgered`` table must still have its entry. ``countersign audit verify`` resumes
from a MAC'd checkpoint, the last seal it verified.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from functools import partial

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
    create_engine,
    exists,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.pool import NullPool
from sqlmodel import Field, SQLModel

from app.audit.ledger.entries import (
    ENTRY_MAC,
    GENESIS_HASH,
    LEDGERED,
    Leaf,
    LedgerEntry,
    chain_hash,
    leaf_hash,
    legacy_entry_hash,
)
from app.audit.ledger.keys import UNKEYED, LedgerKeys, keys_for
from app.audit.ledger.sealing import SEAL_MAC, LedgerSeal, seal_material
from app.db import utcnow

CHECKPOINT_MAC = b"countersign ledger checkpoint"
#: The last entry migration 0009 chained the old way: which records predate per-record entries.
SEALING_STARTED = "ledger-sealing-started"
#: Entries a chunk of the walk covers (it ends at the first seal past them): the unit of progress.
CHUNK_ENTRIES = 100_000
YIELD_PER = 1000
LEAF_WIDTH = len(Leaf._fields)
#: What follows the leaf in a row of the walk, in this order (then the seal, if the entry ends one).
LINK_COLUMNS = ("seq", "key_id", "mac", "position", "prev_hash", "entry_hash")
#: A row's link columns and its seal's id, read by index: a ``Row`` attribute costs ten times more.
LINK = slice(LEAF_WIDTH, LEAF_WIDTH + len(LINK_COLUMNS) + 1)
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


@dataclass(frozen=True)
class Border:
    """The walk's state between two entries: all a chunk needs to go on from there."""

    position: int = 0
    head: str = GENESIS_HASH
    batch_from: int = 1
    batch_head: str = GENESIS_HASH
    legacy_done: bool = False
    keyed_seal: bool = False


@dataclass(frozen=True)
class Chunk:
    """Sealed positions ``after`` < p <= ``upto``; the last chunk has no ``upto``: it also takes
    what is sealed while the walk runs. The first chunk carries where the walk stands."""

    after: int
    upto: int | None = None
    start: Border | None = None

    @property
    def bounds(self) -> dict[str, int | None]:
        return {"after": self.after, "upto": self.upto}


@dataclass(frozen=True)
class Walked:
    """A chunk's outcome: the border it started from and the one it reached, the entries it
    verified, and the first break it found (where, why)."""

    start: Border | None
    end: Border
    entries: int
    broken: tuple[str, str] | None = None


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

    @classmethod
    def at(cls, keys: LedgerKeys, border: Border, since: int = 0) -> Walk:
        return cls(keys, since=since, **asdict(border))

    def border(self) -> Border:
        return Border(
            self.position, self.head, self.batch_from, self.batch_head, self.legacy_done, self.keyed_seal
        )

    def join(self, walked: Walked) -> None:
        """Go on with a chunk walked from ``walked.start``, which must be where this walk stands."""
        if walked.start is not None and walked.start != self.border():
            raise Broken(f"position {self.position + 1}", "does not continue the chain verified before it")
        for name, value in asdict(walked.end).items():
            setattr(self, name, value)
        self.entries += walked.entries
        if walked.broken is not None:
            raise Broken(*walked.broken)

    def sealed_entries(self, rows: Iterable[Row]) -> None:
        for row in rows:
            seq, key_id, mac, position, prev_hash, entry_hash, seal_id = row[LINK]
            at = f"entry {seq}"
            if position != self.position + 1:
                raise Broken(at, f"expected position {self.position + 1}, found {position}")
            if prev_hash != self.head:
                raise Broken(at, "does not link to the entry before it")
            if key_id is None:
                self._legacy(row, at)
            else:
                self.legacy_done = True
                leaf = leaf_hash(row[:LEAF_WIDTH])
                if chain_hash(position, prev_hash, leaf) != entry_hash:
                    raise Broken(at, "content does not match its hash")
                self._entry_mac(key_id, mac, leaf, at)
            self.position, self.head, self.entries = position, entry_hash, self.entries + 1
            if seal_id is not None:
                self._seal(row)

    def unsealed_entries(self, rows: Iterable[Row]) -> None:
        for row in rows:
            at = f"entry {row.seq}"
            if row.key_id is None:
                raise Broken(at, "has no MAC and no place in the chain")
            self._entry_mac(row.key_id, row.mac, leaf_hash(row[:LEAF_WIDTH]), at)
            self.entries, self.unsealed = self.entries + 1, self.unsealed + 1

    def _legacy(self, row: Row, at: str) -> None:
        """Entries chained before migration 0009 have no MAC; they can only open the chain."""
        if self.legacy_done:
            raise Broken(at, "has no MAC, yet follows entries that have one")
        legacy = legacy_entry_hash(row.seq, row.kind, row.recorded_at, row.content, row.prev_hash)
        if row.seq != row.position or legacy != row.entry_hash:
            raise Broken(at, "content does not match its hash")

    def _entry_mac(self, key_id: str, mac: str | None, leaf: str, at: str) -> None:
        self._keyed_after_keyed(key_id, at)
        self._authentic(ENTRY_MAC, leaf.encode(), key_id, mac, at)

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
#: The leaf's columns first, in ``Leaf`` order: a row's first ``LEAF_WIDTH`` values are its leaf.
LEAF_COLUMNS = [LedgerEntry.__table__.c[name] for name in Leaf._fields]
_LINKS = [LedgerEntry.__table__.c[name] for name in LINK_COLUMNS]


def _in_chunk(bounded: bool) -> ColumnElement[bool]:
    after = LedgerEntry.position > bindparam("after")
    return and_(after, LedgerEntry.position <= bindparam("upto")) if bounded else after


def _sealed_entries(among: ColumnElement[bool]) -> Select:
    return (
        select(*LEAF_COLUMNS, *_LINKS, *SEAL_COLUMNS)
        .outerjoin(LedgerSeal, LedgerSeal.last_position == LedgerEntry.position)
        .where(among)
        .order_by(LedgerEntry.position)
        .execution_options(yield_per=YIELD_PER)
    )


#: By whether the chunk has an upper bound.
SEALED_IN_CHUNK = {bounded: _sealed_entries(_in_chunk(bounded)) for bounded in (True, False)}
UNSEALED_ENTRIES = (
    select(*LEAF_COLUMNS, *_LINKS)
    .where(LedgerEntry.position.is_(None))
    .order_by(LedgerEntry.seq)
    .execution_options(yield_per=YIELD_PER)
)
SEALED_TAIL = select(func.max(LedgerSeal.last_position))
SEAL_ENDS = (
    select(LedgerSeal.last_position)
    .where(LedgerSeal.last_position > bindparam("after"))
    .order_by(LedgerSeal.last_position)
    .execution_options(yield_per=YIELD_PER)
)
#: Two entries with one MAC: one ordered pass over the MAC's index, every entry, sealed or not.
SHARED_MAC = (
    select(LedgerEntry.mac)
    .where(LedgerEntry.mac.is_not(None))
    .group_by(LedgerEntry.mac)
    .having(func.count() > 1)
    .limit(1)
)
SHARING_MAC = select(LedgerEntry.seq).where(LedgerEntry.mac == bindparam("mac")).order_by(LedgerEntry.seq)
RECORDS_FROM = (
    select(LedgerEntry.content)
    .where(
        LedgerEntry.kind == SEALING_STARTED, LedgerEntry.key_id.is_(None), LedgerEntry.position.is_not(None)
    )
    .order_by(LedgerEntry.position)
    .limit(1)
)


def verify_database(connection: Connection, progress: Progress | None = None) -> Verification:
    """Every entry from the start, read-only, in this process (the audit page)."""
    return _verify(connection, Walk(keys_for(connection.engine)), progress, jobs=1)


def verify_from_checkpoint(
    engine: Engine, full: bool = False, progress: Progress | None = None, jobs: int = 1
) -> Verification:
    """``countersign audit verify``: the entries after the checkpoint (all with ``full``), in
    ``jobs`` processes, plus the checks that cover every entry; an intact ledger moves the
    checkpoint to the last seal."""
    keys = keys_for(engine)
    with engine.connect() as connection:
        try:
            walk = Walk(keys) if full else _resume(connection, keys)
        except Broken as broken:
            return Walk(keys).result(broken)
        result = _verify(connection, walk, progress, jobs)
    if result.intact and result.position > 0:
        _save_checkpoint(engine, keys, result.position, result.head)
    return result


def _verify(connection: Connection, walk: Walk, progress: Progress | None, jobs: int) -> Verification:
    try:
        tail = connection.execute(SEALED_TAIL).scalar() or 0  # read first: seals and entries only grow
        chunks = _chunks(connection, walk)
        for walked in _walk_chunks(connection, walk.keys, chunks, jobs):
            walk.join(walked)
            if progress is not None and walked.entries:
                progress(walk.entries)
        if walk.batch_from <= walk.position:
            raise Broken(f"position {walk.batch_from}", "is chained, but no seal covers it")
        if tail > walk.position:
            raise Broken(f"the seal ending at position {tail}", "seals entries that are gone")
        walk.unsealed_entries(connection.execute(UNSEALED_ENTRIES))
        _no_copies(connection)
        _every_record_has_its_entry(connection)
    except Broken as broken:
        return walk.result(broken)
    return walk.result()


def _chunks(connection: Connection, walk: Walk) -> list[Chunk]:
    """The sealed entries after the walk's position, cut at the first seal past every
    ``CHUNK_ENTRIES``; the last chunk is open-ended."""
    chunks, after = [], walk.position
    for last in connection.execute(SEAL_ENDS, {"after": after}).scalars():
        if last - after >= CHUNK_ENTRIES:
            chunks.append(Chunk(after, last))
            after = last
    chunks.append(Chunk(after))
    chunks[0] = replace(chunks[0], start=walk.border())
    return chunks


def _walk_chunks(
    connection: Connection, keys: LedgerKeys, chunks: list[Chunk], jobs: int
) -> Iterator[Walked]:
    """Each chunk walked, in order: here, or by ``jobs`` processes forked for the walk."""
    if jobs < 2 or len(chunks) < 2 or not _can_fork_walkers(connection.engine):
        return (_walk_chunk(connection, keys, chunk) for chunk in chunks)
    return _walk_in_processes(connection.engine, keys, chunks, jobs)


def _walk_chunk(connection: Connection, keys: LedgerKeys, chunk: Chunk) -> Walked:
    start = chunk.start or _border_at(connection, chunk.after)
    if start is None:
        return Walked(None, Border(), 0, (f"position {chunk.after}", "holds no entry"))
    walk = Walk.at(keys, start)
    try:
        walk.sealed_entries(connection.execute(SEALED_IN_CHUNK[chunk.upto is not None], chunk.bounds))
    except Broken as broken:
        return Walked(start, walk.border(), walk.entries, (broken.at, broken.reason))
    return Walked(start, walk.border(), walk.entries)


def _walk_in_processes(engine: Engine, keys: LedgerKeys, chunks: list[Chunk], jobs: int) -> Iterator[Walked]:
    """Forked, not spawned: a child starts in milliseconds instead of importing the application
    again; it opens connections of its own and never touches the parent's."""
    url = engine.url.render_as_string(hide_password=False)
    pool = ProcessPoolExecutor(min(jobs, len(chunks)), mp_context=multiprocessing.get_context("fork"))
    try:
        yield from pool.map(partial(_walk_chunk_in_child, url, keys), chunks)
    finally:
        pool.shutdown(cancel_futures=True)


def _walk_chunk_in_child(url: str, keys: LedgerKeys, chunk: Chunk) -> Walked:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return _walk_chunk(connection, keys, chunk)
    finally:
        engine.dispose()


def _can_fork_walkers(engine: Engine) -> bool:
    """Where processes fork (not Windows) and the database is one another process can open."""
    in_memory = engine.dialect.name == "sqlite" and engine.url.database in (None, "", ":memory:")
    return "fork" in multiprocessing.get_all_start_methods() and not in_memory


def _border_at(connection: Connection, position: int) -> Border | None:
    """The walk's state just after the sealed entry at ``position``, from the entry and the seals
    before it (position 0: the start of the chain); None if no entry holds that position."""
    if position == 0:
        return Border()
    at = select(LedgerEntry.entry_hash, LedgerEntry.key_id).where(LedgerEntry.position == position)
    entry = connection.execute(at).first()
    if entry is None:
        return None
    keyed = LedgerSeal.last_position <= position, LedgerSeal.key_id != UNKEYED
    return Border(
        position,
        entry.entry_hash,
        position + 1,
        entry.entry_hash,
        legacy_done=entry.key_id is not None,
        keyed_seal=bool(connection.execute(select(exists().where(*keyed))).scalar()),
    )


def _resume(connection: Connection, keys: LedgerKeys) -> Walk:
    """The walk as the checkpoint left it, if its MAC holds and the chain still passes through it."""
    checkpoint = connection.execute(select(LedgerCheckpoint).where(LedgerCheckpoint.id == 1)).first()
    if checkpoint is None:
        return Walk(keys)
    material = checkpoint_material(checkpoint.position, checkpoint.head, checkpoint.verified_at)
    unkeyed = keys.keyed and checkpoint.key_id == UNKEYED
    if unkeyed or not keys.matches(CHECKPOINT_MAC, material, checkpoint.key_id, checkpoint.mac):
        raise Broken("the checkpoint", "its MAC does not match (run with --full)")
    border = _border_at(connection, checkpoint.position)
    if border is None or border.head != checkpoint.head:
        raise Broken(f"position {checkpoint.position}", "no longer holds the entry verified there")
    return Walk.at(keys, border, since=checkpoint.position)


def _no_copies(connection: Connection) -> None:
    """A copied row carries a valid MAC; its nonce, hence its MAC, is another entry's. Grouping the
    MAC index in order costs a tenth of looking each entry's MAC up in it, in constant memory."""
    mac = connection.execute(SHARED_MAC).scalar()
    if mac is not None:
        original, copy, *_ = connection.execute(SHARING_MAC, {"mac": mac}).scalars()
        raise Broken(f"entry {copy}", f"is a copy of entry {original}")


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
