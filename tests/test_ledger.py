"""The hash-chained ledger: every governance event appended, every kind of tampering detected."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from app import DATABASE_KEY
from app.audit.ledger import verify_database
from app.cli import main
from tests.builders import medication_request, moment, order_sign_request


@pytest.fixture
def database_url(both_databases: str) -> str:
    """Every test here runs on SQLite and on PostgreSQL."""
    return both_databases


SERVICE = "/cds-services/medication-safety"


@pytest.fixture
def chained_app(app, client, auth):
    """Three hook calls and one decision: four ledger entries."""
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
    """Tamper as someone with database rights would: on PostgreSQL, past the append-only trigger."""
    engine = app.extensions[DATABASE_KEY]
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("ALTER TABLE ledger_entry DISABLE TRIGGER ledger_entry_append_only"))
        for statement in statements.split("; "):
            connection.execute(text(statement))


def verification(app):
    with app.extensions[DATABASE_KEY].connect() as connection:
        return verify_database(connection)


def test_every_response_and_decision_is_an_entry_and_the_chain_verifies(chained_app):
    result = verification(chained_app)
    assert result.intact and result.entries == 4
    with chained_app.extensions[DATABASE_KEY].connect() as connection:
        kinds = [row.kind for row in connection.execute(text("SELECT kind FROM ledger_entry ORDER BY seq"))]
    assert kinds == ["card-set-issued"] * 3 + ["decision-recorded"]


def test_cli_verify_passes_on_a_clean_ledger(chained_app, monkeypatch):
    monkeypatch.setenv("COUNTERSIGN_DATABASE_URL", str(chained_app.extensions[DATABASE_KEY].url))
    result = CliRunner().invoke(main, ["audit", "verify"])
    assert result.exit_code == 0
    assert "ledger intact: 4 entries" in result.output


@pytest.mark.parametrize(
    ("tampering", "broken_at"),
    [
        ("UPDATE ledger_entry SET content = replace(content, 'overridden', 'accepted') WHERE seq = 4", 4),
        ("DELETE FROM ledger_entry WHERE seq = 2", 3),
        (
            "INSERT INTO ledger_entry (seq, kind, recorded_at, content, prev_hash, entry_hash) "
            "SELECT 5, kind, recorded_at, content, prev_hash, 'forged-hash' FROM ledger_entry WHERE seq = 4",
            5,
        ),
        (
            "UPDATE ledger_entry SET seq = -2 WHERE seq = 2; UPDATE ledger_entry SET seq = 2 WHERE seq = 3; "
            "UPDATE ledger_entry SET seq = 3 WHERE seq = -2",
            2,
        ),
    ],
    ids=["edited", "deleted", "inserted", "reordered"],
)
def test_each_kind_of_tampering_is_named(chained_app, monkeypatch, tampering, broken_at):
    run_sql(chained_app, tampering)
    result = verification(chained_app)
    assert not result.intact and result.broken_at == broken_at
    monkeypatch.setenv("COUNTERSIGN_DATABASE_URL", str(chained_app.extensions[DATABASE_KEY].url))
    cli = CliRunner().invoke(main, ["audit", "verify"])
    assert cli.exit_code == 1
    assert f"ledger broken at entry {broken_at}" in cli.output


@pytest.mark.parametrize("both_databases", ["postgresql"], indirect=True)
@pytest.mark.parametrize("statement", ["UPDATE ledger_entry SET kind = 'x'", "DELETE FROM ledger_entry"])
def test_postgres_refuses_update_and_delete_of_the_ledger(chained_app, statement):
    engine = chained_app.extensions[DATABASE_KEY]
    assert engine.dialect.name == "postgresql"
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
        connection.execute(text(statement))
    assert verification(chained_app).intact
