"""Secrets sealed at rest (issue #19): SMART tokens and PKCE verifiers never reach the database in
the clear, on SQLite and PostgreSQL; keys rotate without signing anyone out; a value that does not
open (swapped between rows, or sealed with a key no longer configured) ends its session, never a 500.
"""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from pydantic import ValidationError
from sqlalchemy import Engine, inspect, text

from app import DATABASE_KEY
from app.cli import main
from app.security.data_keys import DataKeysMissing
from app.settings import Settings
from sandbox.demo import DATA_KEY_FILE, demo_key
from sandbox.mock_ehr_auth import MockEhr
from smart_launch.sealing import Sealer, Unsealable, decode_key, generate_key
from smart_launch.session import COOKIE_NAME
from tests.conftest import DATA_KEY
from tests.smart_helpers import (
    authorize_at_ehr,
    ehr_launch,
    local,
    smart_settings,
    to_ehr_authorize,
)

SIGNED_OUT = "Sign in through your EHR"


@pytest.fixture
def database_url(both_databases: str) -> str:
    return both_databases


@pytest.fixture
def smart_app(make_app, ehr: MockEhr) -> Flask:
    return make_app(**smart_settings(ehr))


def browser(app: Flask, cookie: str) -> FlaskClient:
    """Another app process (other keys, same database) seeing the same browser."""
    client = app.test_client()
    client.set_cookie(COOKIE_NAME, cookie)
    return client


def issued_secrets(ehr: MockEhr) -> list[str]:
    """Every token the EHR issued and every PKCE verifier the app sent it."""
    tokens = [
        token for issued in ehr.state.tokens.values() for token in (issued.access_token, issued.refresh_token)
    ]
    verifiers = [
        r.form["code_verifier"][0] for r in ehr.state.requests_to("/token") if "code_verifier" in r.form
    ]
    return [secret for secret in tokens + verifiers if secret]


def stored_text(engine: Engine) -> str:
    """What the database holds: SQLite's file and WAL bytes, or every row of every PostgreSQL table."""
    if engine.dialect.name == "sqlite":
        path = Path(engine.url.database or "")
        files = [path, path.with_name(path.name + "-wal")]
        return "".join(file.read_bytes().decode("latin-1") for file in files if file.exists())
    with engine.connect() as connection:
        tables = inspect(connection).get_table_names()
        return "\n".join(
            row
            for table in tables
            for row in connection.execute(text(f'SELECT t::text FROM "{table}" t')).scalars()
        )


def session_rows(app: Flask) -> list[tuple[str, str | None, str | None]]:
    with app.extensions[DATABASE_KEY].connect() as connection:
        query = text("SELECT id, access_token, refresh_token FROM smart_session ORDER BY created_at")
        return [tuple(row) for row in connection.execute(query)]


def rotate(app: Flask) -> str:
    result = app.test_cli_runner().invoke(main, ["keys", "rotate"])
    assert result.exit_code == 0, result.output
    return result.output


def test_no_issued_token_or_verifier_is_stored_in_the_clear(smart_app, ehr):
    ehr.state.knobs.expires_in = 1  # the first page refreshes: a second pair of tokens
    client = smart_app.test_client()
    ehr_launch(client, ehr, "cmio-1", patient="smart-p1")
    ehr.state.knobs.expires_in = 3600
    assert client.get("/app/").status_code == 200
    secrets_issued = issued_secrets(ehr)
    assert len(secrets_issued) >= 5  # two access and two refresh tokens, one verifier
    stored = stored_text(smart_app.extensions[DATABASE_KEY])
    assert "Practitioner/cmio-1" in stored and "v1." in stored  # the rows, sealed tokens included
    for secret in secrets_issued:
        assert secret not in stored


def test_rotation_reseals_everything_and_the_old_key_can_then_go(make_app, ehr):
    ehr.state.knobs.expires_in = 1  # the signed-in session refreshes only after the rotation
    old = make_app(**smart_settings(ehr))
    signed_in, signing_in = old.test_client(), old.test_client()
    ehr_launch(signed_in, ehr, "cmio-1", patient="smart-p1")
    authorize_url = to_ehr_authorize(signing_in, ehr, "clin-1")  # its PKCE verifier waits in the database
    ehr.state.knobs.expires_in = 3600
    new_key = generate_key()
    both = make_app(**smart_settings(ehr), data_keys=[new_key, DATA_KEY])

    assert "3 re-sealed, 0 already under the first key" in rotate(both)
    assert "0 re-sealed, 3 already under the first key" in rotate(both)

    new_only = make_app(**smart_settings(ehr), data_keys=[new_key])
    page = browser(new_only, signed_in.get_cookie(COOKIE_NAME).value).get("/app/")
    assert page.status_code == 200 and "Robin Testpatient" in page.get_data(as_text=True)
    late = browser(new_only, signing_in.get_cookie(COOKIE_NAME).value)
    assert late.get(local(authorize_at_ehr(authorize_url))).status_code == 303
    assert late.get("/app/").status_code == 200
    old_only = make_app(**smart_settings(ehr), data_keys=[DATA_KEY])
    assert browser(old_only, late.get_cookie(COOKIE_NAME).value).get("/app/").status_code == 401


def test_a_ciphertext_copied_into_another_session_ends_that_session(smart_app, ehr, caplog):
    victim, attacker = smart_app.test_client(), smart_app.test_client()
    ehr_launch(victim, ehr, "cmio-1", patient="smart-p1")
    ehr_launch(attacker, ehr, "clin-1", patient="smart-p1")
    (victim_id, access, refresh), (attacker_id, _, _) = session_rows(smart_app)
    with smart_app.extensions[DATABASE_KEY].begin() as connection:
        connection.execute(
            text("UPDATE smart_session SET access_token = :a, refresh_token = :r WHERE id = :id"),
            {"a": access, "r": refresh, "id": attacker_id},
        )
    caplog.set_level(logging.WARNING, logger="smart_launch.store")

    page = attacker.get("/app/")
    assert page.status_code == 401 and SIGNED_OUT in page.get_data(as_text=True)
    assert [row[0] for row in session_rows(smart_app)] == [victim_id]
    assert victim.get("/app/").status_code == 200
    assert [r.getMessage() for r in caplog.records if r.name == "smart_launch.store"] == [
        "SMART session ended: no configured data key opens its stored tokens"
    ]


def test_a_session_sealed_with_a_key_no_longer_configured_ends_without_a_500(make_app, ehr, caplog):
    client = make_app(**smart_settings(ehr)).test_client()
    ehr_launch(client, ehr, "cmio-1", patient="smart-p1")
    rekeyed = make_app(**smart_settings(ehr), data_keys=[generate_key()])
    caplog.set_level(logging.INFO)

    page = browser(rekeyed, client.get_cookie(COOKIE_NAME).value).get("/app/")
    assert page.status_code == 401 and SIGNED_OUT in page.get_data(as_text=True)
    assert session_rows(rekeyed) == []
    ended = [r for r in caplog.records if "data key" in r.getMessage()]
    assert len(ended) == 1 and ended[0].levelno == logging.WARNING
    assert not any(secret in caplog.text for secret in issued_secrets(ehr))


@pytest.mark.parametrize("value", ["not-a-key", "c2hvcnQ", "{key},{key}x", "{key},+/+/"])
def test_a_malformed_data_key_setting_stops_start_up_naming_it(monkeypatch, value):
    value = value.format(key=generate_key())
    monkeypatch.setenv("COUNTERSIGN_DATA_KEYS", value)
    with pytest.raises(ValidationError, match="COUNTERSIGN_DATA_KEYS") as error:
        Settings()
    assert not any(part and part in str(error.value) for part in value.split(","))
    result = CliRunner().invoke(main, ["serve", "--bind", "127.0.0.1:0"])
    assert result.exit_code != 0 and "COUNTERSIGN_DATA_KEYS" in str(result.exception)


def test_without_a_data_key_nothing_starts_and_the_error_says_how_to_make_one(make_app):
    result = CliRunner().invoke(main, ["serve", "--bind", "127.0.0.1:0"], env={"COUNTERSIGN_DATA_KEYS": ""})
    assert result.exit_code != 0
    assert "COUNTERSIGN_DATA_KEYS is not set" in result.output
    assert "countersign keys generate" in result.output
    with pytest.raises(DataKeysMissing):
        make_app(data_keys=[])


def test_keys_generate_prints_a_fresh_32_byte_key():
    first, second = (CliRunner().invoke(main, ["keys", "generate"]).output.strip() for _ in range(2))
    assert len(decode_key(first)) == 32 and first != second
    assert Settings(data_keys=f"{first}, {second}").data_keys[1].get_secret_value() == second


def test_a_sealed_value_names_its_key_and_opens_only_for_its_row():
    old, new = generate_key(), generate_key()
    sealed = Sealer([old]).seal("token-value", "smart_session.access_token.a")
    assert "token-value" not in sealed and sealed.startswith("v1.")
    rotated = Sealer([new, old])
    assert rotated.open(sealed, "smart_session.access_token.a") == "token-value"
    assert not rotated.is_current(sealed) and rotated.is_current(rotated.seal("x", "aad"))
    for value, aad in [
        (sealed, "smart_session.access_token.b"),
        (sealed[:-2], "smart_session.access_token.a"),
    ]:
        with pytest.raises(Unsealable):
            rotated.open(value, aad)
    with pytest.raises(Unsealable):
        Sealer([new]).open(sealed, "smart_session.access_token.a")


def test_the_demo_keeps_its_data_key_private_and_across_restarts(tmp_path):
    first = demo_key(tmp_path / DATA_KEY_FILE)
    assert stat.S_IMODE((tmp_path / "data-key").stat().st_mode) == 0o600
    assert demo_key(tmp_path / DATA_KEY_FILE).get_secret_value() == first.get_secret_value()
    assert len(decode_key(first.get_secret_value())) == 32
