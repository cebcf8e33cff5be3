"""Model lifecycle and change control: pause stops cards at once, shadow records silently."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import text
from sqlmodel import Session, select

from app import DATABASE_KEY, WORKER_KEY
from app.audit.tables import CardSet, IssuedCard
from app.cli import main
from app.governance.change_control import ChangeRefused, Governor
from tests import governance_helpers
from tests.builders import medication_request, order_sign_request
from tests.governance_helpers import CMIO
from tests.writeback_helpers import SERVICE, drain, put, search, writeback_settings


def change(app, action: str, approver: str | None = None, role: str | None = None, **options):
    governor = Governor(approver or CMIO.reference, role or CMIO.role, CMIO.name)
    return governance_helpers.change(app, action, governor=governor, **options)


def sign(client, auth) -> dict:
    body = order_sign_request([medication_request("d1")])
    response = client.post(SERVICE, json=body, headers=auth(SERVICE))
    assert response.status_code == 200
    return response.get_json()


def card_sets(app) -> list[CardSet]:
    with Session(app.extensions[DATABASE_KEY]) as session:
        return list(session.exec(select(CardSet).order_by(CardSet.id)))


def ledger_kinds(app) -> list[str]:
    with app.extensions[DATABASE_KEY].connect() as connection:
        return [row[0] for row in connection.execute(text("SELECT kind FROM ledger_entry ORDER BY seq"))]


def test_a_paused_model_gives_no_card_and_the_call_is_recorded_as_suppressed(app, client, auth):
    assert sign(client, auth)["cards"]
    change(app, "pause")
    assert sign(client, auth) == {"cards": []}
    assert [s.disposition for s in card_sets(app)] == ["issued", "paused"]
    assert ledger_kinds(app) == ["card-set-issued", "model-status-changed", "invocation-suppressed"]
    change(app, "resume", reason="Cluster explained by a lab interface fault")
    assert sign(client, auth)["cards"]


def test_with_its_only_version_in_shadow_the_service_answers_nothing_and_records_the_shadow(make_app, auth):
    app = make_app()
    client = app.test_client()
    change(app, "shadow", reason="Silent validation before go-live")
    assert sign(client, auth) == {"cards": []}
    app.extensions["cds_hooks"].backend.shadow.drain()
    recorded = card_sets(app)
    assert [(s.disposition, s.model_version) for s in recorded] == [
        ("no-active-version", "1.0.0"),
        ("shadow", "1.0.0"),
    ]
    assert recorded[0].hook_instance == recorded[1].hook_instance
    with Session(app.extensions[DATABASE_KEY]) as session:
        assert len(session.exec(select(IssuedCard)).all()) == 1


@pytest.mark.parametrize(
    ("action", "overrides", "message"),
    [
        ("pause", {"role": "clinician"}, "may not change a model"),
        ("pause", {"approver": "Dr Smith"}, "Practitioner or PractitionerRole"),
        ("pause", {"reason": "   "}, "reason is required"),
        ("resume", {}, "already active"),
        ("reboot", {}, "unknown action"),
    ],
)
def test_changes_without_authority_approver_or_reason_are_refused(app, action, overrides, message):
    with pytest.raises(ChangeRefused, match=message):
        change(app, action, **overrides)
    assert ledger_kinds(app) == []


def test_a_retired_model_cannot_come_back(app):
    change(app, "retire", reason="Superseded")
    with pytest.raises(ChangeRefused, match="retired"):
        change(app, "resume")


def test_cli_pause_is_written_back_as_change_control_audit_and_provenance(
    make_app, auth, fhir_server, monkeypatch
):
    app = make_app(**writeback_settings(fhir_server), writeback_default_server=fhir_server)
    put(fhir_server, {"resourceType": "Practitioner", "id": "cmio-1", "name": [{"family": "Okafor"}]})
    settings = app.config["COUNTERSIGN"]
    monkeypatch.setenv("COUNTERSIGN_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("COUNTERSIGN_WRITEBACK_SERVERS", json.dumps([{"base_url": fhir_server}]))
    monkeypatch.setenv("COUNTERSIGN_WRITEBACK_DEFAULT_SERVER", fhir_server)
    monkeypatch.setenv("COUNTERSIGN_OUTBOX_IN_PROCESS", "false")
    reason = f"Pause for review {id(app)}"
    result = CliRunner().invoke(
        main,
        [
            "model",
            "pause",
            "medication-safety",
            "--approver",
            "Practitioner/cmio-1",
            "--role",
            "cmio",
            "--reason",
            reason,
        ],
    )
    assert result.exit_code == 0, result.output
    assert "active -> paused" in result.output
    listed = CliRunner().invoke(main, ["model", "list"]).output
    assert "medication-safety  1.0.0  paused" in listed
    drain(app.extensions[WORKER_KEY])
    audits = [
        a
        for a in search(fhir_server, "AuditEvent", type="http://dicom.nema.org/resources/ontology/DCM|110113")
        if reason in a.get("outcomeDesc", "")
    ]
    assert len(audits) == 1
    assert audits[0]["subtype"][1]["code"] == "model-version-paused"
    assert audits[0]["agent"][0]["who"] == {"reference": "Practitioner/cmio-1"}
    device_ref = audits[0]["entity"][0]["what"]["reference"]
    provenances = search(fhir_server, "Provenance", target=device_ref)
    assert any(p["reason"][0]["text"] == reason for p in provenances)
