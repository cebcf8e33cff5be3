"""Write-back to a real FHIR server: what a CMIO finds there after a hook call, an accept and an override."""

from __future__ import annotations

import uuid

import pytest
from sqlmodel import Session, select

from app import DATABASE_KEY, WORKER_KEY
from app.audit.outbox import DEAD, DELIVERED, OutboxMessage
from tests.builders import medication_request, moment, order_sign_request, patient
from tests.writeback_helpers import (
    NON_ADHERENCE,
    SERVICE,
    accept_and_apply,
    drain,
    order_sign_session,
    override,
    put,
    search,
    writeback_settings,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def database_url(both_databases: str) -> str:
    """Every test here runs on SQLite and on PostgreSQL."""
    return both_databases


@pytest.fixture
def wb_app(make_app, fhir_server):
    return make_app(**writeback_settings(fhir_server))


def messages(app) -> list[OutboxMessage]:
    with Session(app.extensions[DATABASE_KEY]) as session:
        return list(session.exec(select(OutboxMessage).order_by(OutboxMessage.id)))


def test_hook_call_accept_and_override_land_as_the_expected_resources(wb_app, auth, fhir_server):
    client = wb_app.test_client()
    patient_id, capped, interaction = order_sign_session(client, auth, fhir_server)
    updated = accept_and_apply(client, auth, fhir_server, capped)
    override(client, auth, interaction)
    drain(wb_app.extensions[WORKER_KEY])
    assert [m.status for m in messages(wb_app)] == [DELIVERED] * 3

    tasks = search(fhir_server, "Task", patient=patient_id)
    assert len(tasks) == 1
    task = tasks[0]
    assert (task["status"], task["code"]["coding"][0]["code"]) == ("rejected", "approve")
    assert task["statusReason"]["coding"][0] == {"system": NON_ADHERENCE, "code": "risk-benefit-ratio"}
    assert task["note"][0]["text"].startswith("INR stable")
    assert {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{interaction['uuid']}"} in task["identifier"]

    provenances = search(fhir_server, "Provenance", entity=f"Patient/{patient_id}")
    assert sorted(p["activity"]["coding"][0]["code"] for p in provenances) == ["CREATE", "UPDATE", "UPDATE"]
    accepted = next(p for p in provenances if "verifier" in str(p["agent"]))
    assert accepted["target"] == [
        {"reference": f"MedicationRequest/{updated['id']}/_history/{updated['meta']['versionId']}"}
    ]
    agent_types = {a["type"]["coding"][0]["code"]: a for a in accepted["agent"]}
    assert agent_types["verifier"]["who"] == {  # the EHR's user is not on its FHIR server
        "type": "Practitioner",
        "identifier": {"system": "urn:ietf:rfc:3986", "value": f"{fhir_server}/Practitioner/prac-001"},
        "display": "not found on the FHIR server when written",
    }
    assert agent_types["author"]["role"][0]["coding"][0]["code"] == "Artificial-Intelligence"
    assert agent_types["author"]["who"]["reference"].startswith("Device/")
    assert any(r["coding"][0]["code"] == "AIAST" for r in accepted["reason"])
    ai_output = next(p for p in provenances if p["activity"]["coding"][0]["code"] == "CREATE")
    sources = {e["what"].get("reference", "") for e in ai_output["entity"] if e["role"] == "source"}
    assert f"Patient/{patient_id}" in sources and any(s.startswith("Observation/") for s in sources)
    assert any(t["reference"].startswith("RequestGroup/") for t in ai_output["target"])
    overridden = next(p for p in provenances if p["target"][0]["reference"].startswith("Task/"))
    assert overridden["target"][0]["reference"] == f"Task/{task['id']}"

    audits = search(fhir_server, "AuditEvent", patient=patient_id)
    subtypes = sorted(a["subtype"][0]["code"] for a in audits)
    assert subtypes == ["cds-hooks-service-call", "create", "create"]
    assert all("INR stable" not in str(a) and "metformin" not in str(a).lower() for a in audits)

    groups = search(fhir_server, "RequestGroup", subject=f"Patient/{patient_id}")
    assert len(groups) == 1
    assert {a["id"] for a in groups[0]["action"]} == {capped["uuid"], interaction["uuid"]}
    devices = search(
        fhir_server,
        "Device",
        identifier="https://countersign.health/fhir/NamingSystem/model-version|medication-safety-1.0.0",
    )
    assert len(devices) == 1


def test_redelivery_of_every_message_creates_no_duplicate(wb_app, auth, fhir_server):
    client = wb_app.test_client()
    patient_id, capped, interaction = order_sign_session(client, auth, fhir_server)
    accept_and_apply(client, auth, fhir_server, capped)
    override(client, auth, interaction)
    worker = wb_app.extensions[WORKER_KEY]
    drain(worker)
    for message in messages(wb_app):
        writer = worker.writers[message.target]
        bundle = worker.deliverer.build(message.kind, message.record_id, writer)
        worker.deliverer.resolve_references(writer, [bundle])
        worker.sender.send(writer, bundle)
    assert len(search(fhir_server, "Task", patient=patient_id)) == 1
    assert len(search(fhir_server, "Provenance", entity=f"Patient/{patient_id}")) == 3
    assert len(search(fhir_server, "AuditEvent", patient=patient_id)) == 3


def test_accept_before_the_ehr_wrote_the_change_is_retried_not_lost(wb_app, auth, fhir_server):
    client = wb_app.test_client()
    _, capped, _ = order_sign_session(client, auth, fhir_server)
    item = {
        "card": capped["uuid"],
        "outcome": "accepted",
        "acceptedSuggestions": [{"id": capped["suggestions"][0]["uuid"]}],
        "outcomeTimestamp": moment(),
    }
    feedback = "/cds-services/medication-safety/feedback"
    client.post(feedback, json={"feedback": [item]}, headers=auth(feedback))
    worker = wb_app.extensions[WORKER_KEY]
    worker.run_once()
    decision = messages(wb_app)[-1]
    assert (decision.status, decision.attempts) == ("pending", 1)
    assert "not on the server yet" in decision.last_error["issue"][0]["diagnostics"]
    assert decision.status != DEAD


def test_prefetch_the_service_fetched_itself_is_audited_per_query(wb_app, auth, fhir_server):
    patient_id = f"e3{uuid.uuid4().hex[:10]}"
    put(fhir_server, patient(patient_id))
    draft = medication_request("d1", patient_id=patient_id)
    body = order_sign_request([draft], {}, patient_id=patient_id, fhirServer=fhir_server)
    assert wb_app.test_client().post(SERVICE, json=body, headers=auth(SERVICE)).status_code == 200
    drain(wb_app.extensions[WORKER_KEY])
    reads = [
        a
        for a in search(fhir_server, "AuditEvent", patient=patient_id)
        if a["subtype"][0]["code"] == "search-type"
    ]
    described = sorted(e["description"].split()[1] for a in reads for e in a["entity"] if "description" in e)
    assert described == sorted(["patient", "medications", "renalFunction", "allergies", "conditions"])
