"""The ledger: every governance event appended, every kind of tampering detected, sealed or not."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from app import DATABASE_KEY
from app.audit.ledger import seal_now, verify_database
from app.cli import main
from tests.builders import medication_request, moment, order_sign_request


@pytest.fixture
def database_url(both_databases: str) -> str:
    """Every test here runs on SQLite and on PostgreSQL."""
    return both_databases


SERVICE = "/cds-services/medication-safety"


@pytest.fixture
def chained_app(app, client, auth):
    """Three hook calls and one decision: four ledger entries (card sets 1-3, decision 1)."""
    cards = []
    for draft in ("d1", "d2", "d3"):
        body = order_sign_request([medication_request(draft)])
        cards += client.post(SERVICE, json=body, headers=auth(SERVICE)).get_json()["cards"]
    item = {"card": cards[0]["uuid"], "outcome": "overridden", "outcomeTimestamp": moment()}
    assert (
        client.post(
            f"{SERVICE}/feedback", json={"feedback": [item]}, headers=auth(f"{SERVICE}/feedback")
        ).status_code
        == 200
    )
    return app


def run_sql(app, statements: str) -> None:
    """Tamper as someone with database rights would: on PostgreSQL, past the append-only triggers."""
    engine = app.extensions[DATABASE_KEY]
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("ALTER TABLE ledger_entry DISABLE TRIGGER ledger_entry_append_only"))
        for statement in statements.split("; "):
            connection.execute(text(statement))


def verification(app):
    with app.extensions[DATABASE_KEY].connect() as connection:
        return verify_database(connection)


def cli_verify(app, monkeypatch, *arguments: str):
    monkeypatch.setenv("COUNTERSIGN_DATABASE_URL", str(app.extensions[DATABASE_KEY].url))
    return CliRunner().invoke(main, ["audit", "verify", *arguments])


def test_every_response_and_decision_is_an_entry_about_its_record(chained_app):
    result = verification(chained_app)
    assert result.intact and (result.entries, result.unsealed) == (4, 4)
    query = "SELECT kind, record_table, record_id FROM ledger_entry ORDER BY seq"
    with chained_app.extensions[DATABASE_KEY].connect() as connection:
        rows = [tuple(row) for row in connection.execute(text(query))]
    assert rows == [("card-set-issued", "card_set", n) for n in (1, 2, 3)] + [
        ("decision-recorded", "card_decision", 1)
    ]


def test_sealing_chains_the_entries_and_the_chain_verifies(chained_app):
    assert seal_now(chained_app.extensions[DATABASE_KEY]) == 4
    result = verification(chained_app)
    assert result.intact and (result.entries, result.unsealed, result.position) == (4, 0, 4)


@pytest.mark.parametrize("sealed", [False, True], ids=["unsealed", "sealed"])
def test_cli_verify_passes_on_a_clean_ledger(chained_app, monkeypatch, sealed):
    if sealed:
        seal_now(chained_app.extensions[DATABASE_KEY])
    result = cli_verify(chained_app, monkeypatch)
    assert result.exit_code == 0
    assert f"ledger intact: 4 entries ({0 if sealed else 4} not sealed yet)" in result.output
    assert f"sealed head: position {4 if sealed else 0}" in result.output


FORGED = (
    "INSERT INTO ledger_entry (kind, recorded_at, content, record_table, record_id, nonce, key_id, mac) "
    "SELECT kind, recorded_at, content, record_table, record_id, 'f0f0', key_id, 'forged' FROM ledger_entry "
    "WHERE seq = 4"
)


@pytest.mark.parametrize(
    ("tampering", "sealed", "broken_at"),
    [
        (
            "UPDATE ledger_entry SET content = replace(content, 'overridden', 'accepted') WHERE seq = 4",
            True,
            "entry 4",
        ),
        (
            "UPDATE ledger_entry SET content = replace(content, 'overridden', 'accepted') WHERE seq = 4",
            False,
            "entry 4",
        ),
        ("DELETE FROM ledger_entry WHERE seq = 2", True, "entry 3"),
        ("DELETE FROM ledger_entry WHERE seq = 2", False, "card_set 2"),
        (FORGED, True, "entry 5"),
        (FORGED, False, "entry 5"),
        (
            "UPDATE ledger_entry SET position = -2 WHERE seq = 2; UPDATE ledger_entry SET position = 2 "
            "WHERE seq = 3; UPDATE ledger_entry SET position = 3 WHERE seq = -2",
            True,
            "entry 3",
        ),
        (
            "UPDATE ledger_entry SET recorded_at = (SELECT recorded_at FROM ledger_entry WHERE seq = 3) "
            "WHERE seq = 2",
            False,
            "entry 2",
        ),
    ],
    ids=[
        "edited-sealed",
        "edited-unsealed",
        "deleted-sealed",
        "deleted-unsealed",
        "inserted-sealed",
        "inserted-unsealed",
        "reordered-sealed",
        "reordered-unsealed",
    ],
)
def test_each_kind_of_tampering_is_named(chained_app, monkeypatch, tampering, sealed, broken_at):
    if sealed:
        seal_now(chained_app.extensions[DATABASE_KEY])
    run_sql(chained_app, tampering)
    result = verification(chained_app)
    assert not result.intact and result.broken_at == broken_at
    cli = cli_verify(chained_app, monkeypatch, "--full")
    assert cli.exit_code == 1
    assert f"ledger broken at {broken_at}" in cli.output


@pytest.mark.parametrize("both_databases", ["postgresql"], indirect=True)
@pytest.mark.parametrize("sealed", [False, True], ids=["unsealed", "sealed"])
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger_entry SET kind = 'x'",
        "DELETE FROM ledger_entry",
        "UPDATE ledger_entry SET position = seq + 100, prev_hash = 'p', entry_hash = seq || 'e', kind = 'x'",
    ],
    ids=["update", "delete", "place-and-edit"],
)
def test_postgres_refuses_update_and_delete_of_the_ledger(chained_app, statement, sealed):
    engine = chained_app.extensions[DATABASE_KEY]
    assert engine.dialect.name == "postgresql"
    if sealed:
        seal_now(engine)
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
        connection.execute(text(statement))
    assert verification(chained_app).intact


@pytest.mark.parametrize("both_databases", ["postgresql"], indirect=True)
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger_entry SET position = position + 100 WHERE seq = 1",
        "UPDATE ledger_seal SET head = 'x'",
        "DELETE FROM ledger_seal",
    ],
    ids=["move-a-sealed-entry", "edit-a-seal", "delete-a-seal"],
)
def test_postgres_lets_the_sealer_place_an_entry_once_and_nothing_else(chained_app, statement):
    engine = chained_app.extensions[DATABASE_KEY]
    assert seal_now(engine) == 4  # the sealer's own update passed the trigger
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
        connection.execute(text(statement))
    assert verification(chained_app).intact
