"""Shared steps of the write-back tests: an EHR session against a real FHIR server."""

from __future__ import annotations

import uuid

import requests
from sqlmodel import Session, select

from app import DATABASE_KEY
from app.audit.outbox import OutboxMessage
from app.settings import WriteBackServer
from tests.builders import (
    USER_ID,
    egfr,
    full_prefetch,
    medication_request,
    moment,
    order_sign_request,
    patient,
    searchset,
)

SERVICE = "/cds-services/medication-safety"
FEEDBACK = f"{SERVICE}/feedback"
WARFARIN = ("855332", "warfarin sodium 5 MG Oral Tablet")
IBUPROFEN = ("197806", "ibuprofen 600 MG Oral Tablet")
NON_ADHERENCE = "http://terminology.hl7.org/CodeSystem/non-adherence-reason-codes"


def writeback_settings(fhir_base: str, **overrides: object) -> dict:
    return {
        "writeback_servers": [WriteBackServer(base_url=fhir_base)],
        "outbox_in_process": False,
    } | overrides


def put(fhir_base: str, resource: dict) -> dict:
    url = f"{fhir_base}/{resource['resourceType']}/{resource['id']}"
    response = requests.put(url, json=resource, headers={"Content-Type": "application/fhir+json"}, timeout=10)
    assert response.status_code in (200, 201), response.text
    return response.json()


def search(fhir_base: str, resource_type: str, **params: str) -> list[dict]:
    bundle = requests.get(
        f"{fhir_base}/{resource_type}", params=params | {"_count": "200"}, timeout=10
    ).json()
    return [entry["resource"] for entry in bundle.get("entry", [])]


def order_sign_session(client, auth, fhir_base: str, user_id: str = USER_ID) -> tuple[str, dict, dict]:
    """A clinician signs metformin 2 g/day at eGFR 38 and ibuprofen while on warfarin: two cards.

    The drafts are never stored on the FHIR server, as CDS Hooks allows."""
    patient_id = f"wb{uuid.uuid4().hex[:12]}"
    put(fhir_base, patient(patient_id))
    drafts = [
        medication_request(f"met-{patient_id}", dose_mg=1000, per_day=2, patient_id=patient_id),
        medication_request(f"ibu-{patient_id}", IBUPROFEN, dose_mg=600, per_day=3, patient_id=patient_id),
    ]
    warfarin = medication_request(
        f"war-{patient_id}", WARFARIN, status="active", dose_mg=5, per_day=1, patient_id=patient_id
    )
    renal = egfr(38, obs_id=f"egfr-{patient_id}", patient_id=patient_id)
    for on_record in (warfarin, renal):  # the chart is on the server; the drafts never are
        put(fhir_base, on_record)
    prefetch = full_prefetch(patient_id=patient_id) | {
        "medications": searchset([warfarin]),
        "renalFunction": searchset([renal]),
    }
    body = order_sign_request(drafts, prefetch, patient_id=patient_id, user_id=user_id, fhirServer=fhir_base)
    cards = client.post(SERVICE, json=body, headers=auth(SERVICE)).get_json()["cards"]
    by_rule = {card["extension"]["health.countersign.ai"]["rule"]: card for card in cards}
    return patient_id, by_rule["metformin-egfr-30-45"], by_rule["warfarin-nsaid"]


def accept_and_apply(client, auth, fhir_base: str, card: dict) -> dict:
    """The EHR applies the update action (as the spec says, to its FHIR server), then sends feedback."""
    suggestion = card["suggestions"][0]
    updated = put(fhir_base, suggestion["actions"][0]["resource"])
    item = {
        "card": card["uuid"],
        "outcome": "accepted",
        "acceptedSuggestions": [{"id": suggestion["uuid"]}],
        "outcomeTimestamp": moment(),
    }
    assert client.post(FEEDBACK, json={"feedback": [item]}, headers=auth(FEEDBACK)).status_code == 200
    return updated


def override_item(card: dict, comment: str) -> dict:
    """The clinician's override of a card: risk-benefit-ratio, with a free-text comment."""
    return {
        "card": card["uuid"],
        "outcome": "overridden",
        "overrideReason": {
            "reason": {"system": NON_ADHERENCE, "code": "risk-benefit-ratio"},
            "userComment": comment,
        },
        "outcomeTimestamp": moment(),
    }


def override(
    client, auth, card: dict, comment: str = "INR stable; short course agreed with haematology"
) -> None:
    item = override_item(card, comment)
    assert client.post(FEEDBACK, json={"feedback": [item]}, headers=auth(FEEDBACK)).status_code == 200


def drain(worker, rounds: int = 50) -> None:
    for _ in range(rounds):
        if worker.run_once() == 0:
            return


def statuses(app, *kinds: str) -> dict[str, int]:
    """Messages per status, of the given kinds only when some are named."""
    query = select(OutboxMessage.status)
    if kinds:
        query = query.where(OutboxMessage.kind.in_(kinds))
    with Session(app.extensions[DATABASE_KEY]) as session:
        rows = session.exec(query).all()
    return {status: rows.count(status) for status in set(rows)}
