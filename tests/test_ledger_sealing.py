"""Ledger sealing: appends take no global lock, the sealer chains what commits in the order it
becomes visible, and verify still catches tampering, before and after sealing."""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import timedelta
from typing import ClassVar

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, insert, select, text, update

from app import DATABASE_KEY, create_app
from app.audit import ledger
from app.audit.ledger import (
    GENESIS_HASH,
    LedgerEntry,
    LedgerKeys,
    LedgerSeal,
    Sealer,
    seal_now,
    unsealed_backlog,
)
from app.audit.ledger import entries as ledger_entries
from app.audit.ledger import verification as verification_module
from app.audit.ledger.entries import ENTRY_MAC, Leaf, canonical, chain_hash, legacy_entry_hash
from app.audit.ledger.sealing import seal_batch
from app.cli import main
from app.db import utcnow
from app.migrate import upgrade
from app.security.sign_in_audit import SignInEvent
from tests.test_metrics import scrape, value


@pytest.fixture
def database_url(both_databases: str) -> str:
    """Every test here runs on SQLite and on PostgreSQL."""
    return both_databases


def engine_of(app):
    return app.extensions[DATABASE_KEY]


def append(engine, count: int = 1) -> list[int]:
    seqs = []
    for n in range(count):
        with engine.begin() as connection:
            seqs.append(ledger.append(connection, "test-event", {"n": n}))
    return seqs


def positions(engine) -> dict[int, int | None]:
    with engine.connect() as connection:
        return dict(connection.execute(select(LedgerEntry.seq, LedgerEntry.position)).all())


def verification(engine):
    with engine.connect() as connection:
        return ledger.verify_database(connection)


def tamper(engine, *statements) -> None:
    """As someone with database rights: on PostgreSQL, past the append-only triggers."""
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            for table in ("ledger_entry", "ledger_seal"):
                connection.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER {table}_append_only"))
        for statement in statements:
            connection.execute(statement)


def cli_verify(engine, monkeypatch, *arguments: str):
    monkeypatch.setenv("COUNTERSIGN_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    return CliRunner().invoke(main, ["audit", "verify", *arguments])


@pytest.mark.parametrize("both_databases", ["postgresql"], indirect=True)
@pytest.mark.parametrize("first", ["a", "b"])
def test_two_open_transactions_append_without_waiting_and_are_sealed_in_commit_order(app, first):
    """The second append would time out if appends queued behind a lock; SQLite's one writer
    cannot hold two write transactions at all, hence PostgreSQL only."""
    engine = engine_of(app)
    with engine.connect() as a, engine.connect() as b:
        transactions = {"a": a, "b": b}
        seqs = {}
        for name, connection in transactions.items():
            connection.begin()
            connection.exec_driver_sql("SET LOCAL lock_timeout = '1s'")
            seqs[name] = ledger.append(connection, "test-event", {"by": name})
        order = [first, *(name for name in transactions if name != first)]
        for name in order:
            transactions[name].commit()
            assert seal_now(engine) == 1
    placed = positions(engine)
    assert [placed[seqs[name]] for name in order] == [1, 2]
    assert verification(engine).intact


def test_concurrent_appends_are_all_sealed_in_one_chain_within_the_window(app):
    """Eight threads append while two sealers (as two workers would) race to seal."""
    engine, interval = engine_of(app), app.config["COUNTERSIGN"].ledger_seal_interval_seconds
    stops = [Sealer(engine, interval).start_in_background() for _ in range(2)]
    ages: list[float] = []

    def appender(_worker: int) -> None:
        for _ in range(25):
            append(engine)
            with engine.connect() as connection:
                ages.append(unsealed_backlog(connection).age(utcnow()))

    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(appender, range(8)))
        deadline = time.monotonic() + 5
        while any(position is None for position in positions(engine).values()):
            assert time.monotonic() < deadline, "the sealers did not catch up"
            time.sleep(interval)
    finally:
        for stop in stops:
            stop.set()
    assert max(ages) < 1.0  # the unsealed window the defaults promise
    assert sorted(positions(engine).values()) == list(range(1, 201))
    result = verification(engine)
    assert result.intact and (result.entries, result.unsealed, result.position) == (200, 0, 200)


def test_each_round_seals_one_batch_and_the_batches_chain(app):
    engine = engine_of(app)
    append(engine, 7)
    assert [seal_batch(engine, limit=3) for _ in range(4)] == [3, 3, 1, 0]
    with engine.connect() as connection:
        seals = connection.execute(select(LedgerSeal).order_by(LedgerSeal.id)).all()
    assert [(seal.first_position, seal.last_position) for seal in seals] == [(1, 3), (4, 6), (7, 7)]
    assert [seal.prev_head for seal in seals[1:]] == [seal.head for seal in seals[:-1]]
    assert verification(engine).intact


def test_a_rechained_history_fails_at_the_seal_it_cannot_mac(app):
    """Someone deletes a sealed entry and recomputes every hash after it: the chain holds again,
    but the seal over it needs the ledger key."""
    engine = engine_of(app)
    for _ in range(3):
        append(engine)
        seal_now(engine)
    with engine.connect() as connection:
        first, third = (
            connection.execute(select(LedgerEntry).where(LedgerEntry.seq == n)).one() for n in (1, 3)
        )
        old = connection.execute(select(LedgerSeal).where(LedgerSeal.last_position == 3)).one()
    rehashed = chain_hash(2, first.entry_hash, Leaf.of(third).hash())
    forged_seal = {
        "first_position": 2,
        "last_position": 2,
        "prev_head": first.entry_hash,
        "head": rehashed,
        "sealed_at": old.sealed_at,
        "key_id": old.key_id,
        "mac": old.mac,
    }
    tamper(
        engine,
        text("DELETE FROM ledger_entry WHERE seq = 2"),
        text("DELETE FROM ledger_seal WHERE last_position >= 2"),
        update(LedgerEntry)
        .where(LedgerEntry.seq == 3)
        .values(position=2, prev_hash=first.entry_hash, entry_hash=rehashed),
        insert(LedgerSeal).values(forged_seal),
    )
    result = verification(engine)
    assert result.broken_at.startswith("seal ") and "MAC does not match" in result.reason


def test_a_copied_entry_is_found_though_its_mac_is_valid(app):
    engine = engine_of(app)
    append(engine, 2)
    columns = "kind, recorded_at, content, record_table, record_id, nonce, key_id, mac"
    tamper(
        engine,
        text("DROP INDEX ix_ledger_entry_mac"),
        text(f"INSERT INTO ledger_entry ({columns}) SELECT {columns} FROM ledger_entry WHERE seq = 2"),
    )
    result = verification(engine)
    assert (result.broken_at, result.reason) == ("entry 3", "is a copy of entry 2")


def test_an_entry_made_without_the_key_cannot_follow_keyed_seals(app):
    engine = engine_of(app)
    append(engine)
    seal_now(engine)
    leaf = Leaf("test-event", utcnow().isoformat(), canonical({}), None, None, "00")
    public_mac = LedgerKeys.of([]).mac(ENTRY_MAC, leaf.hash().encode())
    tamper(engine, insert(LedgerEntry).values(leaf._asdict() | {"key_id": "none", "mac": public_mac}))
    result = verification(engine)
    assert result.broken_at == "entry 2" and "no MAC under a ledger key" in result.reason


def test_without_a_ledger_key_entries_are_hashed_and_verify(make_app):
    engine = engine_of(make_app(ledger_keys=[]))
    append(engine, 2)
    seal_now(engine)
    append(engine)
    result = verification(engine)
    assert result.intact and (result.entries, result.unsealed) == (3, 1)


def test_verify_resumes_from_its_checkpoint_and_full_checks_everything_again(app, monkeypatch):
    engine = engine_of(app)
    append(engine, 4)
    seal_now(engine)
    assert "ledger intact: 4 entries (0 not sealed yet)" in cli_verify(engine, monkeypatch).output
    append(engine, 2)
    seal_now(engine)
    append(engine)
    resumed = cli_verify(engine, monkeypatch)
    assert resumed.exit_code == 0
    assert "ledger intact: 3 entries after the checkpoint at position 4 (1 not sealed yet)" in resumed.output
    assert "sealed head: position 6" in resumed.output
    tamper(engine, text("UPDATE ledger_entry SET content = '{}' WHERE seq = 1"))
    assert cli_verify(engine, monkeypatch).exit_code == 0  # verified before: only --full looks again
    full = cli_verify(engine, monkeypatch, "--full")
    assert full.exit_code == 1 and "ledger broken at entry 1" in full.output


def test_a_long_verify_reports_progress_on_stderr(app, monkeypatch):
    engine = engine_of(app)
    for _ in range(2):
        append(engine, 2)
        seal_now(engine)
    append(engine)
    monkeypatch.setattr(verification_module, "CHUNK_ENTRIES", 2)
    result = cli_verify(engine, monkeypatch, "--full")
    assert result.exit_code == 0
    assert [line for line in result.stderr.splitlines() if line.startswith("...")] == [
        "... 2 entries verified",
        "... 4 entries verified",
    ]
    assert "verified in" in result.stderr.splitlines()[-1]


NOT_ITS_HASH = "content does not match its hash"


def outcome(result) -> tuple[int, list[str]]:
    """What a verify run said, but for how long it took."""
    said = result.output.splitlines()
    return result.exit_code, [line for line in said if not line.startswith("verified in")]


class CountedPool(ProcessPoolExecutor):
    started: ClassVar[list[int]] = []

    def __init__(self, workers: int, **options) -> None:
        CountedPool.started.append(workers)
        super().__init__(workers, **options)


@pytest.mark.parametrize(
    ("tampering", "broken_at"),
    [
        (None, None),
        ("UPDATE ledger_entry SET content = '{}' WHERE position = 5", f"entry 5: {NOT_ITS_HASH}"),
        ("UPDATE ledger_entry SET entry_hash = 'cut' WHERE position = 4", f"entry 4: {NOT_ITS_HASH}"),
    ],
    ids=["intact", "inside-a-chunk", "at-a-chunk-border"],
)
def test_a_verify_in_several_processes_finds_what_one_finds(app, monkeypatch, tampering, broken_at):
    """Chunks of two entries, walked by two forked processes and joined in order: the same count,
    and the same first break, where a chunk starts from a rewritten border too."""
    engine = engine_of(app)
    for _ in range(4):
        append(engine, 2)
        seal_now(engine)
    append(engine)
    if tampering:
        tamper(engine, text(tampering))
    monkeypatch.setattr(verification_module, "CHUNK_ENTRIES", 2)
    monkeypatch.setattr(verification_module, "ProcessPoolExecutor", CountedPool)
    CountedPool.started.clear()
    one, two = (cli_verify(engine, monkeypatch, "--full", "--jobs", jobs) for jobs in ("1", "2"))
    assert CountedPool.started == [2], "the second run walked its five chunks in two processes"
    assert outcome(one) == outcome(two)
    if broken_at is None:
        assert two.exit_code == 0 and "ledger intact: 9 entries (1 not sealed yet)" in two.output
    else:
        assert two.exit_code == 1 and f"ledger broken at {broken_at}" in two.output


def test_countersign_worker_once_seals_what_is_waiting(app, monkeypatch):
    engine = engine_of(app)
    append(engine, 3)
    monkeypatch.setenv("COUNTERSIGN_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    result = CliRunner().invoke(main, ["worker", "--once"])
    assert result.exit_code == 0 and "sealed 3 ledger entries" in result.output
    assert sorted(positions(engine).values()) == [1, 2, 3]


@pytest.mark.parametrize(
    ("tampering", "broken_at"),
    [
        ("UPDATE ledger_checkpoint SET position = 4, head = ({})", "the checkpoint"),
        ("UPDATE ledger_entry SET entry_hash = 'rewritten' WHERE position = 2", "position 2"),
    ],
    ids=["checkpoint-moved", "history-rewritten"],
)
def test_incremental_verify_refuses_a_checkpoint_that_no_longer_holds(app, monkeypatch, tampering, broken_at):
    engine = engine_of(app)
    append(engine, 2)
    seal_now(engine)
    assert cli_verify(engine, monkeypatch).exit_code == 0
    append(engine, 2)
    seal_now(engine)
    tamper(engine, text(tampering.format("SELECT entry_hash FROM ledger_entry WHERE position = 4")))
    result = cli_verify(engine, monkeypatch)
    assert result.exit_code == 1 and f"ledger broken at {broken_at}" in result.output


def test_readyz_and_the_gauge_report_the_unsealed_window(app, client, monkeypatch):
    engine = engine_of(app)
    past = utcnow() - timedelta(seconds=30)
    monkeypatch.setattr(ledger_entries, "utcnow", lambda: past)
    append(engine)
    monkeypatch.undo()
    waiting = client.get("/readyz")
    assert waiting.status_code == 503 and waiting.get_json()["checks"]["ledger"] == "failed"
    report = waiting.get_json()["ledger"]
    assert report["unsealed_entries"] == 1 and 30 <= report["oldest_unsealed_seconds"] < 60
    assert "sealer" in report["reason"] and report["limit_seconds"] == 10
    assert 30 <= value(scrape(client), "countersign_ledger_oldest_unsealed_seconds") < 60
    assert value(scrape(client), "countersign_ledger_unsealed_entries") == 1
    seal_now(engine)
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["ledger"]["oldest_unsealed_seconds"] == 0
    assert value(scrape(client), "countersign_ledger_oldest_unsealed_seconds") == 0


def test_migration_0009_seals_the_old_chain_and_verify_still_passes(database_url, make_settings):
    upgrade(database_url, "0008")
    old = create_engine(database_url)
    with old.begin() as connection:
        _old_chain(connection, 3)
        connection.execute(text(_OLD_SIGN_IN), [{"at": utcnow()}] * 2)
    old.dispose()
    upgrade(database_url)
    engine = engine_of(create_app(make_settings()))
    migrated = verification(engine)
    assert migrated.intact and (migrated.entries, migrated.unsealed, migrated.position) == (4, 0, 4)
    with engine.begin() as connection:  # a sign-in after the upgrade: its row has its entry
        event = connection.execute(insert(SignInEvent).returning(SignInEvent.id), _sign_in()).scalar_one()
        ledger.append(connection, "sign-in", {"sign_in_event": event}, about=(SignInEvent, event))
    assert seal_now(engine) == 1
    assert verification(engine).intact and verification(engine).position == 5
    tamper(engine, insert(SignInEvent).values(_sign_in()))
    assert verification(engine).broken_at == "sign_in_event 4"  # 1 and 2 predate the upgrade
    tamper(engine, text("UPDATE ledger_entry SET kind = 'edited' WHERE seq = 2"))
    assert verification(engine).broken_at == "entry 2"


_OLD_SIGN_IN = "INSERT INTO sign_in_event (action, refused, occurred_at) VALUES ('login', false, :at)"


def _sign_in() -> dict:
    return {"action": "login", "refused": False, "occurred_at": utcnow()}


def _old_chain(connection, count: int) -> None:
    """Entries as revision 0008 wrote them: each hashed with its seq and the previous hash."""
    prev_hash = GENESIS_HASH
    for seq in range(1, count + 1):
        entry = {"seq": seq, "kind": "card-set-issued", "recorded_at": utcnow().isoformat(), "content": "{}"}
        entry_hash = legacy_entry_hash(**entry, prev_hash=prev_hash)
        connection.execute(
            text(
                "INSERT INTO ledger_entry (seq, kind, recorded_at, content, prev_hash, entry_hash) "
                "VALUES (:seq, :kind, :recorded_at, :content, :prev_hash, :entry_hash)"
            ),
            entry | {"prev_hash": prev_hash, "entry_hash": entry_hash},
        )
        prev_hash = entry_hash
