"""Roles from fhirUser: who may read the catalogue and the audit trail, who may change a model."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient
from sqlalchemy import text

from app import DATABASE_KEY, WORKER_KEY
from sandbox.mock_ehr_auth import MockEhr
from tests.smart_helpers import CALLBACK, ehr_launch, mock_ehr, smart_settings, standalone_launch
from tests.writeback_helpers import drain, put, search, writeback_settings

STATUS = "/api/models/medication-safety/status"


@pytest.fixture
def ehr(fhir_server: str) -> Iterator[MockEhr]:
    with mock_ehr(fhir_server, CALLBACK) as running:
        yield running


@pytest.fixture
def smart_app(make_app, ehr, fhir_server):
    return make_app(
        **smart_settings(ehr), **writeback_settings(fhir_server), writeback_default_server=fhir_server
    )


def signed_in(smart_app, ehr, user: str) -> tuple[FlaskClient, str]:
    client = smart_app.test_client()
    assert ehr_launch(client, ehr, user).status_code == 303
    page = client.get("/app/models/medication-safety").get_data(as_text=True)
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
    return client, csrf


def ledger(smart_app) -> list[str]:
    with smart_app.extensions[DATABASE_KEY].connect() as connection:
        return list(
            connection.execute(
                text("SELECT content FROM ledger_entry WHERE kind='model-status-changed'")
            ).scalars()
        )


def test_unauthenticated_pages_get_the_launch_page_and_the_api_a_401(smart_app):
    client = smart_app.test_client()
    for path in ("/app/", "/app/audit"):
        page = client.get(path)
        assert page.status_code == 401 and "Sign in with your EHR account" in page.get_data(as_text=True)
    response = client.post(STATUS, json={"status": "paused", "reason": "x"})
    assert response.status_code == 401
    assert response.get_json()["resourceType"] == "OperationOutcome"
    assert ledger(smart_app) == []


def test_a_clinician_sees_the_catalogue_but_cannot_change_a_model(smart_app, ehr):
    client, csrf = signed_in(smart_app, ehr, "clin-1")
    assert client.get("/app/").status_code == 200
    assert 'id="change-control"' not in client.get("/app/models/medication-safety").get_data(as_text=True)
    assert client.get("/app/audit").status_code == 403
    response = client.post(STATUS, json={"status": "paused", "reason": "x"}, headers={"X-CSRF-Token": csrf})
    assert response.status_code == 403 and response.get_json()["issue"][0]["code"] == "forbidden"
    assert ledger(smart_app) == []


def test_an_auditor_reads_the_audit_trail_but_changes_nothing(smart_app, ehr):
    governor, governor_csrf = signed_in(smart_app, ehr, "cmio-1")
    governor.post(
        STATUS, json={"status": "paused", "reason": "Audit fixture"}, headers={"X-CSRF-Token": governor_csrf}
    )
    client, csrf = signed_in(smart_app, ehr, "aud-1")
    page = client.get("/app/audit?kind=model-status-changed").get_data(as_text=True)
    assert "Ledger chain verified: 3 entries, intact." in page  # two sign-ins and the change
    assert "Audit fixture" in page
    assert 'id="change-control"' not in client.get("/app/models/medication-safety").get_data(as_text=True)
    response = client.post(STATUS, json={"status": "active", "reason": "x"}, headers={"X-CSRF-Token": csrf})
    assert response.status_code == 403
    assert len(ledger(smart_app)) == 1


def test_a_user_whose_fhir_user_is_not_a_mapped_practitioner_gets_no_page(smart_app, ehr):
    client = smart_app.test_client()
    standalone_launch(client, "pat-1")
    assert client.get("/app/").status_code == 403


def test_a_cmio_change_goes_through_change_control_with_the_session_as_approver(smart_app, ehr, fhir_server):
    put(fhir_server, {"resourceType": "Practitioner", "id": "cmio-1", "name": [{"family": "Okafor"}]})
    client, csrf = signed_in(smart_app, ehr, "cmio-1")
    reason = f"Override cluster under review {id(client)}"
    response = client.post(
        STATUS, json={"status": "paused", "reason": reason}, headers={"X-CSRF-Token": csrf}
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json() | {"at": None} == {
        "id": "medication-safety", "version": "1.0.0", "from": "active", "to": "paused",
        "approver": "Practitioner/cmio-1", "role": "cmio", "reason": reason, "at": None,
    }  # fmt: skip
    assert ">paused</span>" in client.get("/app/").get_data(as_text=True)
    drain(smart_app.extensions[WORKER_KEY])
    audits = [
        a
        for a in search(fhir_server, "AuditEvent", type="http://dicom.nema.org/resources/ontology/DCM|110113")
        if reason in a.get("outcomeDesc", "")
    ]
    assert len(audits) == 1 and audits[0]["agent"][0]["who"] == {"reference": "Practitioner/cmio-1"}
    device = audits[0]["entity"][0]["what"]["reference"]
    assert any(p["reason"][0]["text"] == reason for p in search(fhir_server, "Provenance", target=device))


def test_a_safety_officer_practitioner_role_may_resume_a_paused_model(smart_app, ehr):
    client, csrf = signed_in(smart_app, ehr, "so-1")
    headers = {"X-CSRF-Token": csrf}
    assert (
        client.post(STATUS, json={"status": "paused", "reason": "Lab fault"}, headers=headers).status_code
        == 200
    )
    resumed = client.post(
        STATUS, json={"status": "active", "reason": "Lab fixed"}, headers=headers
    ).get_json()
    assert (resumed["from"], resumed["to"], resumed["approver"]) == (
        "paused",
        "active",
        "PractitionerRole/so-1",
    )
    assert '"action":"resume"' in ledger(smart_app)[-1]


@pytest.mark.parametrize(
    ("body", "status", "expression"),
    [
        ("not json", 400, "$"),
        ({"status": "rebooted", "reason": "x"}, 400, "status"),
        ({"status": "paused"}, 400, "reason"),
        ({"status": "paused", "reason": "   "}, 400, "reason"),
        ({"status": "active", "reason": "already"}, 409, None),
    ],
)
def test_bad_change_requests_get_an_operation_outcome_and_change_nothing(
    smart_app, ehr, body, status, expression
):
    client, csrf = signed_in(smart_app, ehr, "cmio-1")
    headers = {"X-CSRF-Token": csrf}
    response = (
        client.post(STATUS, data=body, headers=headers, content_type="application/json")
        if isinstance(body, str)
        else client.post(STATUS, json=body, headers=headers)
    )
    assert response.status_code == status
    issue = response.get_json()["issue"][0]
    assert issue.get("expression", [None])[0] == expression
    assert ledger(smart_app) == []


def test_a_change_without_the_csrf_token_is_refused(smart_app, ehr):
    client, _ = signed_in(smart_app, ehr, "cmio-1")
    assert client.post(STATUS, json={"status": "paused", "reason": "x"}).status_code == 403
    assert client.post("/api/models/nope/status", json={}, headers={"X-CSRF-Token": _}).status_code == 404
    assert ledger(smart_app) == []
