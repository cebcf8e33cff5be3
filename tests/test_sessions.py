"""Ending SMART sessions: sign-out, expiry and ``countersign sessions end`` revoke the refresh token at
the mock EHR (RFC 7009), which then refuses it; ``countersign sessions list`` shows no token."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pytest
import requests
from sqlalchemy import text, update

from app import DATABASE_KEY
from app.cli import main
from sandbox.mock_ehr_auth import MockEhr
from smart_launch import sign_out as sign_out_module
from smart_launch.oauth import TokenError
from smart_launch.store import SmartSession
from tests.smart_helpers import (
    CLIENT_ID,
    CLIENT_SECRET,
    ehr_launch,
    refresh_tokens,
    sign_out,
    smart_settings,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def database_url(both_databases: str) -> str:
    """Every test here runs on SQLite and on PostgreSQL."""
    return both_databases


@pytest.fixture
def smart_app(make_app, ehr):
    return make_app(**smart_settings(ehr))


def refresh_at_ehr(ehr: MockEhr, refresh_token: str) -> requests.Response:
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return requests.post(
        f"{ehr.state.public_url}/token", data=data, auth=(CLIENT_ID, CLIENT_SECRET), timeout=5
    )


def sessions_command(app, *args: str, ok: bool = True) -> str:
    result = app.test_cli_runner().invoke(main, ["sessions", *args])
    assert (result.exit_code == 0) is ok, result.output
    return result.output


def expire_sessions(app, *conditions: object) -> None:
    """Move the sessions' lifetime into the past, as if the user had left them for days."""
    past = datetime(2000, 1, 1, tzinfo=UTC)
    with app.extensions[DATABASE_KEY].begin() as connection:
        connection.execute(update(SmartSession).where(*conditions).values(expires_at=past))


def session_count(app) -> int:
    with app.extensions[DATABASE_KEY].connect() as connection:
        return connection.execute(text("SELECT count(*) FROM smart_session")).scalar_one()


def test_sign_out_revokes_the_refresh_token_and_a_later_refresh_with_it_fails(smart_app, ehr):
    client = smart_app.test_client()
    ehr_launch(client, ehr, "cmio-1")
    [issued] = refresh_tokens(ehr, "cmio-1")
    assert sign_out(client).status_code == 200
    assert ehr.state.revoked == [issued]
    [revocation] = ehr.state.requests_to("/revoke")
    assert revocation.form["token_type_hint"] == ["refresh_token"]
    assert revocation.headers["Authorization"].startswith("Basic ")  # the client's own authentication
    refused = refresh_at_ehr(ehr, issued)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    assert client.get("/app/").status_code == 401
    assert session_count(smart_app) == 0


def test_without_a_revocation_endpoint_the_token_is_just_dropped(smart_app, ehr):
    ehr.state.knobs.advertise_revocation = False
    client = smart_app.test_client()
    ehr_launch(client, ehr, "cmio-1")
    assert sign_out(client).status_code == 200
    assert ehr.state.requests_to("/revoke") == [] and session_count(smart_app) == 0


def test_a_failed_revocation_never_blocks_sign_out_and_logs_no_token(smart_app, ehr, monkeypatch, caplog):
    def unreachable(*args: object, **kwargs: object) -> None:
        raise TokenError("revocation endpoint unreachable (ConnectionError)")

    monkeypatch.setattr(sign_out_module, "revoke", unreachable)
    client = smart_app.test_client()
    ehr_launch(client, ehr, "cmio-1")
    with caplog.at_level(logging.WARNING, logger="smart_launch.sign_out"):
        assert sign_out(client).status_code == 200
    [line] = [record.getMessage() for record in caplog.records if record.name == "smart_launch.sign_out"]
    assert "not revoked" in line
    assert all(token not in caplog.text for token in refresh_tokens(ehr, "cmio-1"))
    assert session_count(smart_app) == 0


def test_an_expired_session_is_revoked_when_its_browser_comes_back(smart_app, ehr):
    client = smart_app.test_client()
    ehr_launch(client, ehr, "cmio-1")
    expire_sessions(smart_app)
    assert client.get("/app/").status_code == 401
    assert ehr.state.revoked == refresh_tokens(ehr, "cmio-1")
    assert session_count(smart_app) == 0


def test_sessions_list_names_each_session_without_a_token(smart_app, ehr):
    ehr_launch(smart_app.test_client(), ehr, "cmio-1")
    ehr_launch(smart_app.test_client(), ehr, "clin-1")
    listed = sessions_command(smart_app, "list")
    assert "Practitioner/cmio-1  cmio" in listed and "Practitioner/clin-1  clinician" in listed
    assert listed.count(ehr.iss) == 2
    as_json = json.loads(sessions_command(smart_app, "list", "--json"))
    assert {entry["user"] for entry in as_json} == {"Practitioner/cmio-1", "Practitioner/clin-1"}
    assert all(len(entry["label"]) == 12 and entry["expires_at"] > entry["created_at"] for entry in as_json)
    issued = [token.access_token for token in ehr.state.tokens.values()]
    issued += refresh_tokens(ehr, "cmio-1") + refresh_tokens(ehr, "clin-1")
    assert not any(token in listed + json.dumps(as_json) for token in issued)


def test_sessions_end_by_user_then_all_revokes_each_ended_session(smart_app, ehr):
    cmio, clinician = smart_app.test_client(), smart_app.test_client()
    ehr_launch(cmio, ehr, "cmio-1")
    ehr_launch(clinician, ehr, "clin-1")
    assert sessions_command(smart_app, "end", "--user", "Practitioner/cmio-1") == "ended 1 session(s)\n"
    assert ehr.state.revoked == refresh_tokens(ehr, "cmio-1")
    assert cmio.get("/app/").status_code == 401 and clinician.get("/app/").status_code == 200
    assert sessions_command(smart_app, "end", "--all") == "ended 1 session(s)\n"
    assert sorted(ehr.state.revoked) == sorted(refresh_tokens(ehr, "cmio-1") + refresh_tokens(ehr, "clin-1"))
    assert clinician.get("/app/").status_code == 401
    assert sessions_command(smart_app, "list") == "no signed-in sessions\n"


def test_sessions_end_expired_ends_only_sessions_past_their_lifetime(smart_app, ehr):
    stale, fresh = smart_app.test_client(), smart_app.test_client()
    ehr_launch(stale, ehr, "clin-1")
    ehr_launch(fresh, ehr, "cmio-1")
    expire_sessions(smart_app, SmartSession.fhir_user == "Practitioner/clin-1")
    assert sessions_command(smart_app, "end", "--expired") == "ended 1 session(s)\n"
    assert ehr.state.revoked == refresh_tokens(ehr, "clin-1")
    assert fresh.get("/app/").status_code == 200


@pytest.mark.parametrize(
    "args", [[], ["--all", "--expired"], ["--user", "Patient/p1"], ["--user", "Practitioner/x", "--all"]]
)
def test_sessions_end_needs_exactly_one_valid_choice(smart_app, args):
    output = sessions_command(smart_app, "end", *args, ok=False)
    assert "--user" in output
