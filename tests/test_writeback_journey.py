"""A clinician's day over all four services, written back to a FHIR server that checks references,
invariants and our profiles (our strict Node server, and the real HAPI FHIR server) and holds
neither the draft orders nor the user: afterwards the server holds exactly the expected record,
every resource passes the server's own ``$validate`` where it has one, and nothing is dead-lettered."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
import requests
from sqlmodel import Session, select

from app import DATABASE_KEY, WORKER_KEY
from app.audit.outbox import DELIVERED, OutboxMessage
from app.audit.tables import CardDecision
from app.review.checkpoint import sign
from fhir_profiles.device import CDS_SERVICE, MODEL_VERSION_SYSTEM, SERVICE_SYSTEM
from tests.builders import lab, moment, patient, patient_view_request, searchset
from tests.discharge_builders import PATIENT_ID as DISCHARGED
from tests.discharge_builders import discharge_request
from tests.writeback_helpers import (
    FEEDBACK,
    accept_and_apply,
    drain,
    order_sign_session,
    override,
    put,
    search,
    writeback_settings,
)

pytestmark = pytest.mark.integration
URI = "urn:ietf:rfc:3986"
MODELS = ("medication-safety", "problem-list-gaps", "readmission-risk", "discharge-summary-draft")
DEVICES = [*((MODEL_VERSION_SYSTEM, f"{model}-1.0.0") for model in MODELS), (SERVICE_SYSTEM, CDS_SERVICE)]


@pytest.fixture
def database_url(both_databases: str) -> str:
    return both_databases


@pytest.fixture(params=["node", pytest.param("hapi", marks=pytest.mark.hapi)])
def strict_fhir(request: pytest.FixtureRequest) -> str:
    """Shared servers: every count below is scoped to this test's own patients and identifiers."""
    return request.getfixturevalue("fhir_server" if request.param == "node" else "hapi_server")


def total(base: str, resource_type: str, **params: str) -> int:
    found = requests.get(f"{base}/{resource_type}", params=params | {"_count": "1"}, timeout=10)
    return found.json()["total"]


def targets_of(base: str, patient_id: str) -> list[str]:
    """What the patient's Provenances target, versions dropped (servers differ in whether
    ``Provenance?target=`` matches a versioned reference)."""
    provenances = search(base, "Provenance", entity=f"Patient/{patient_id}")
    targets = [t["reference"] for p in provenances for t in p["target"] if "reference" in t]
    return [target.split("/_history/")[0] for target in targets]


def refusals(app) -> list[tuple[str, dict | None]]:
    """Each outbox message that did not land, with the server's OperationOutcome (for a failing test)."""
    with Session(app.extensions[DATABASE_KEY]) as session:
        messages = session.exec(select(OutboxMessage).where(OutboxMessage.status != DELIVERED))
        return [(m.kind, m.last_error) for m in messages]


def patient_view(client, auth, base: str, user: str) -> dict:
    """An HbA1c of 8.1 % on record, no diabetes on the problem list: one card; the EHR applies the
    proposed Condition (a create) and reports the acceptance."""
    patient_id = f"pv{uuid.uuid4().hex[:10]}"
    a1c = lab("4548-4", 8.1, "%", 20, f"a1c-{patient_id}", patient_id=patient_id)
    for resource in (patient(patient_id), a1c):
        put(base, resource)
    prefetch = {
        "patient": patient(patient_id),
        "problems": searchset([]),
        "medications": searchset([]),
        "labs": searchset([a1c]),
    }
    path = "/cds-services/problem-list-gaps"
    body = patient_view_request(prefetch, patient_id=patient_id, user_id=user) | {"fhirServer": base}
    (card,) = client.post(path, json=body, headers=auth(path)).get_json()["cards"]
    suggestion = card["suggestions"][0]
    created = requests.post(f"{base}/Condition", json=suggestion["actions"][0]["resource"], timeout=10)
    assert created.status_code == 201, created.text
    item = {
        "card": card["uuid"],
        "outcome": "accepted",
        "acceptedSuggestions": [{"id": suggestion["uuid"]}],
        "outcomeTimestamp": moment(),
    }
    feedback = f"{path}/feedback"
    assert client.post(feedback, json={"feedback": [item]}, headers=auth(feedback)).status_code == 200
    return {"patient": patient_id, "card": card}


def discharge(client, auth, base: str, user: str) -> tuple[str, dict[str, list[dict]]]:
    """A discharge of a fresh inpatient: the readmission-risk card and the summary draft held for
    review, by service. The patient and encounter are on the server; the rest of the chart is not."""
    patient_id = f"dc{uuid.uuid4().hex[:10]}"
    request = json.loads(json.dumps(discharge_request()).replace(DISCHARGED, patient_id))
    request["context"]["userId"] = user
    for key in ("patient", "encounter"):
        put(base, request["prefetch"][key])
    cards = {}
    for service in ("readmission-risk", "discharge-summary-draft"):
        path = f"/cds-services/{service}"
        body = request | {"hookInstance": str(uuid.uuid4()), "fhirServer": base}
        response = client.post(path, json=body, headers=auth(path))
        assert response.status_code == 200, response.get_json()
        cards[service] = response.get_json()["cards"]
    return patient_id, cards


def validation_errors(base: str, resource: dict) -> list[str]:
    """What the server's ``$validate`` finds wrong with a resource it holds; [] without ``$validate``."""
    answer = requests.post(f"{base}/{resource['resourceType']}/$validate", json=resource, timeout=60)
    if answer.status_code in (404, 405, 501):
        return []
    issues = answer.json().get("issue", [])
    return [i.get("diagnostics", "") for i in issues if i.get("severity") in ("error", "fatal")]


def everything_about(base: str, patient_id: str) -> list[dict]:
    """The patient's record as a CMIO reads it: AuditEvents, Tasks, documents, and the Provenance
    of each, found by the patient and by ``_revinclude``."""
    found = [
        *search(base, "AuditEvent", patient=patient_id),
        *search(base, "Provenance", entity=f"Patient/{patient_id}"),
        *search(base, "GuidanceResponse", patient=patient_id, _revinclude="Provenance:target"),
        *search(base, "Task", patient=patient_id),
        *search(base, "DocumentReference", patient=patient_id, _revinclude="Provenance:target"),
    ]
    return list({(r["resourceType"], r["id"]): r for r in found}.values())


def test_a_clinician_journey_over_all_four_services_lands_completely(make_app, auth, strict_fhir):
    app = make_app(**writeback_settings(strict_fhir))
    client = app.test_client()
    user = f"Practitioner/never-stored-{uuid.uuid4().hex[:8]}"

    ordered, capped, interaction = order_sign_session(client, auth, strict_fhir, user)
    assert requests.get(f"{strict_fhir}/MedicationRequest/met-{ordered}", timeout=10).status_code == 404
    accept_and_apply(client, auth, strict_fhir, capped)
    override(client, auth, interaction)
    viewed = patient_view(client, auth, strict_fhir, user)
    discharged, discharge_cards = discharge(client, auth, strict_fhir, user)
    (summary,) = discharge_cards["discharge-summary-draft"]
    settings = app.config["COUNTERSIGN"]
    sign(
        app.extensions[DATABASE_KEY],
        summary["uuid"],
        "Admitted with community-acquired pneumonia; treated and improved. Follow up with the GP in 7 days.",
        reviewer=user,
        writeback_target=settings.writeback_target,
    )
    drain(app.extensions[WORKER_KEY])

    assert refusals(app) == []
    assert requests.get(f"{strict_fhir}/{user}", timeout=10).status_code == 404
    # order-sign: the AI output (1 Provenance), the accepted update and the override (1 each)
    assert total(strict_fhir, "Provenance", entity=f"Patient/{ordered}") == 3
    assert total(strict_fhir, "AuditEvent", patient=ordered) == 3
    assert total(strict_fhir, "Task", patient=ordered) == 1
    # patient-view: the AI output and the accepted Condition
    assert total(strict_fhir, "Provenance", entity=f"Patient/{viewed['patient']}") == 2
    assert total(strict_fhir, "AuditEvent", patient=viewed["patient"]) == 2
    suggestion = viewed["card"]["suggestions"][0]["uuid"]
    (condition,) = search(strict_fhir, "Condition", identifier=f"{URI}|urn:uuid:{suggestion}")
    assert targets_of(strict_fhir, viewed["patient"]).count(f"Condition/{condition['id']}") == 1
    # discharge: two AI outputs (two services), the signed summary with its Provenance
    signed = search(strict_fhir, "DocumentReference", patient=discharged)
    assert [d["docStatus"] for d in signed] == ["final"]
    assert total(strict_fhir, "Provenance", target=f"DocumentReference/{signed[0]['id']}") == 1
    audits = search(strict_fhir, "AuditEvent", patient=discharged)
    # two calls, the read of the prior encounters the EHR did not prefetch, the signed summary
    assert sorted(a["subtype"][0]["code"] for a in audits) == [
        "cds-hooks-service-call",
        "cds-hooks-service-call",
        "create",
        "search-type",
    ]
    assert total(strict_fhir, "GuidanceResponse", patient=discharged) == 2
    # Countersign's own Devices exist once each, however many records name them
    for system, value in DEVICES:
        assert total(strict_fhir, "Device", identifier=f"{system}|{value}") == 1
    for patient_id in (ordered, viewed["patient"], discharged):
        for resource in everything_about(strict_fhir, patient_id):
            assert validation_errors(strict_fhir, resource) == [], resource["resourceType"]


def test_a_decision_dated_before_its_card_by_the_ehr_clock_is_dated_by_ours(make_app, auth, strict_fhir):
    app = make_app(**writeback_settings(strict_fhir))
    client = app.test_client()
    patient_id, _, interaction = order_sign_session(client, auth, strict_fhir)
    skewed = moment(-timedelta(minutes=10).total_seconds())
    item = {"card": interaction["uuid"], "outcome": "overridden", "outcomeTimestamp": skewed}
    assert client.post(FEEDBACK, json={"feedback": [item]}, headers=auth(FEEDBACK)).status_code == 200
    drain(app.extensions[WORKER_KEY])

    (task,) = search(strict_fhir, "Task", patient=patient_id)
    assert task["lastModified"] >= task["authoredOn"]
    with Session(app.extensions[DATABASE_KEY]) as session:
        stored = session.exec(select(CardDecision)).one()
    assert stored.outcome_timestamp.isoformat().startswith(skewed[:19])  # the EHR's claim, as given
