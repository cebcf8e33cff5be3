"""Sign-in audit: SMART sign-ins, refused sign-ins, sign-outs and ended sessions are in the ledger and,
once the outbox drains, on the strict FHIR server as login / logout AuditEvents; no token, code or
state is ever kept, and the user (not on that server) is a logical reference."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from app import DATABASE_KEY, WORKER_KEY
from app.audit.ledger import LedgerEntry, verify_database
from app.audit.outbox import DELIVERED
from app.cli import main
from fhir_profiles.audit_events import SESSION_SYSTEM
from fhir_profiles.common import DCM
from sandbox.mock_ehr_auth import MockEhr
from tests.smart_helpers import (
    authorize_at_ehr,
    ehr_launch,
    local,
    refresh_tokens,
    sign_out,
    smart_settings,
    to_ehr_authorize,
)
from tests.writeback_helpers import drain, search, statuses, writeback_settings

pytestmark = pytest.mark.integration
SIGN_IN_KINDS = ("sign-in", "sign-in-refused", "sign-out", "session-ended")
LOGIN, LOGOUT = "110122", "110123"


@pytest.fixture
def database_url(both_databases: str) -> str:
    """Every test here runs on SQLite and on PostgreSQL."""
    return both_databases


@pytest.fixture
def audited_app(make_app, ehr, fhir_server):
    """The EHR's FHIR base (the mock's proxy) is not a write-back server: events go to the default."""
    return make_app(
        **smart_settings(ehr), **writeback_settings(fhir_server, writeback_default_server=fhir_server)
    )


@pytest.fixture
def since() -> str:
    """Now, to the millisecond: the FHIR server is shared by the whole test session."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ledgered(app) -> list[tuple[str, dict]]:
    query = select(LedgerEntry).where(LedgerEntry.kind.in_(SIGN_IN_KINDS)).order_by(LedgerEntry.seq)
    with app.extensions[DATABASE_KEY].connect() as connection:
        assert verify_database(connection).intact
        return [(row.kind, json.loads(row.content)) for row in connection.execute(query)]


def audit_events(fhir_server: str, since: str, subtype: str, session: str | None = None) -> list[dict]:
    """This test's user-authentication AuditEvents: by subtype and time, then by session when given."""
    found = search(fhir_server, "AuditEvent", subtype=f"{DCM}|{subtype}", _lastUpdated=f"ge{since}")
    return [event for event in found if session is None or _session_of(event) == session]


def _session_of(event: dict) -> str | None:
    identifiers = [entity["what"]["identifier"] for entity in event.get("entity", [])]
    return next((i["value"] for i in identifiers if i["system"] == SESSION_SYSTEM), None)


def issued_secrets(ehr: MockEhr) -> list[str]:
    with ehr.state.lock:
        tokens = list(ehr.state.tokens.values())
    return [token.access_token for token in tokens] + [t.refresh_token for t in tokens if t.refresh_token]


def test_sign_in_and_sign_out_land_as_login_and_logout_audit_events(audited_app, ehr, fhir_server, since):
    client = audited_app.test_client()
    ehr_launch(client, ehr, "cmio-1", patient="smart-p1")
    assert sign_out(client).status_code == 200
    (signed_in_kind, signed_in), (signed_out_kind, signed_out) = ledgered(audited_app)
    assert (signed_in_kind, signed_out_kind) == ("sign-in", "sign-out")
    assert signed_in | {"sign_in_event": 0, "occurred_at": ""} == {
        "sign_in_event": 0,
        "action": "login",
        "refused": False,
        "reason": None,
        "fhir_user": "Practitioner/cmio-1",
        "role": "cmio",
        "ehr": ehr.iss,
        "session": signed_in["session"],
        "occurred_at": "",
    }
    assert (signed_out["action"], signed_out["reason"]) == ("logout", "sign-out")
    assert signed_out["session"] == signed_in["session"]

    drain(audited_app.extensions[WORKER_KEY])
    assert statuses(audited_app) == {DELIVERED: 2}
    [login] = audit_events(fhir_server, since, LOGIN, signed_in["session"])
    [logout] = audit_events(fhir_server, since, LOGOUT, signed_in["session"])
    for event in (login, logout):
        assert event["type"] == {"system": DCM, "code": "110114", "display": "User Authentication"}
        assert (event["action"], event["outcome"]) == ("E", "0")
        user = event["agent"][0]
        assert user["requestor"] is True and user["role"] == [{"text": "cmio"}]
        assert "reference" not in user["who"] and user["who"]["type"] == "Practitioner"
        assert user["who"]["identifier"]["value"] == f"{ehr.iss}/Practitioner/cmio-1"
    assert logout["entity"][0]["detail"] == [{"type": "reason", "valueString": "sign-out"}]
    written = json.dumps([login, logout, ledgered(audited_app)])
    assert "smart-p1" not in written
    assert not any(secret in written for secret in issued_secrets(ehr))


def test_a_refused_sign_in_is_ledgered_with_its_reason_and_no_secret(audited_app, ehr, fhir_server, since):
    ehr.state.knobs.tamper_id_token = True
    client = audited_app.test_client()
    callback = authorize_at_ehr(to_ehr_authorize(client, ehr, "cmio-1"))
    assert client.get(local(callback)).status_code == 403
    [(kind, refused)] = ledgered(audited_app)
    assert kind == "sign-in-refused"
    assert (refused["reason"], refused["ehr"], refused["fhir_user"]) == ("id-token-invalid", ehr.iss, None)
    sent = parse_qs(urlsplit(callback).query)
    secrets = [sent["code"][0], sent["state"][0], *issued_secrets(ehr)]
    assert secrets[2:] and not any(secret in json.dumps(refused) for secret in secrets)

    drain(audited_app.extensions[WORKER_KEY])
    [event] = audit_events(fhir_server, since, LOGIN)
    assert (event["outcome"], event["outcomeDesc"]) == ("4", "id-token-invalid") and "entity" not in event
    assert [agent["type"]["coding"][0]["code"] for agent in event["agent"]] == ["110150", "AuthzOauthService"]
    assert not any(secret in json.dumps(event) for secret in secrets)


def test_a_forged_state_is_ledgered_as_state_mismatch_and_not_written_back(audited_app, ehr):
    client = audited_app.test_client()
    callback = authorize_at_ehr(to_ehr_authorize(client, ehr, "cmio-1"))
    forged = re.sub(r"state=[^&]+", "state=forged-state-value", callback)
    assert client.get(local(forged)).status_code == 400
    [(kind, refused)] = ledgered(audited_app)
    assert (kind, refused["reason"], refused["ehr"]) == ("sign-in-refused", "state-mismatch", None)
    assert "forged-state-value" not in json.dumps(refused)
    assert statuses(audited_app) == {}


def test_a_session_ended_by_an_operator_is_a_logout_with_its_reason(audited_app, ehr, fhir_server, since):
    client = audited_app.test_client()
    ehr_launch(client, ehr, "clin-1")
    result = audited_app.test_cli_runner().invoke(main, ["sessions", "end", "--user", "Practitioner/clin-1"])
    assert result.exit_code == 0, result.output
    (_, signed_in), (kind, ended) = ledgered(audited_app)
    assert (kind, ended["reason"]) == ("session-ended", "ended-by-operator")
    assert ended["fhir_user"] == "Practitioner/clin-1"
    assert ehr.state.revoked == refresh_tokens(ehr, "clin-1")
    drain(audited_app.extensions[WORKER_KEY])
    [logout] = audit_events(fhir_server, since, LOGOUT, signed_in["session"])
    assert logout["entity"][0]["detail"] == [{"type": "reason", "valueString": "ended-by-operator"}]
