"""The FHIR builders on their own: the fixed values of the profiles in reference §1-§2, and no PHI."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

from fhir_profiles.ai_output import CardSetFacts, ai_output_provenance, guidance_response, request_group
from fhir_profiles.audit_events import (
    Authentication,
    hook_call_audit_event,
    service_read_audit_event,
    user_authentication_audit_event,
    write_back_audit_event,
)
from fhir_profiles.change_control import ModelChangeFacts, change_control_audit_event
from fhir_profiles.decisions import DecisionFacts, acceptance_provenance, override_provenance, override_task
from fhir_profiles.device import ai_device
from fhir_profiles.profiles import structure_definitions
from fhir_profiles.safety_report import SafetyReport, adverse_event

WHEN = datetime(2026, 11, 23, 10, 5, 31, tzinfo=UTC)
CARD = {
    "uuid": "4e0a3a1e-3283-4575-ab82-028d55fe2719",
    "summary": "Metformin contraindicated at eGFR 25",
    "detail": "Rationale",
    "indicator": "critical",
    "source": {
        "label": "Countersign Medication Safety 1.0.0",
        "url": "http://localhost/app/models/medication-safety",
    },
    "selectionBehavior": "at-most-one",
    "suggestions": [
        {
            "label": "Reduce dose",
            "uuid": "e56e1945-20b3-4393-8503-a1a20fd73152",
            "actions": [
                {
                    "type": "update",
                    "description": "Reduce metformin",
                    "resource": {
                        "resourceType": "MedicationRequest",
                        "id": "m1",
                        "status": "draft",
                        "intent": "order",
                        "subject": {"reference": "Patient/p1"},
                        "medicationCodeableConcept": {"text": "metformin"},
                        "meta": {
                            "security": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                                    "code": "AIAST",
                                }
                            ]
                        },
                    },
                },
                {"type": "delete", "description": "Cancel", "resourceId": "MedicationRequest/m2"},
            ],
        }
    ],
    "extension": {"health.countersign.ai": {"confidence": 0.91}},
}
FACTS = CardSetFacts(
    key="0b7c1d2e-0000-4000-8000-000000000001",
    hook_instance="d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
    hook="order-sign",
    service_url="http://localhost/cds-services/medication-safety",
    patient_id="p1",
    encounter_id="e1",
    user_id="Practitioner/prac-001",
    device_ref="Device/medication-safety-1.0.0",
    service_ref="Device/countersign-cds-service",
    model_version="medication-safety-1.0.0",
    issued_at=WHEN,
    input_refs=("Observation/egfr-1", "MedicationRequest/m1"),
    cards=(CARD,),
    fetched_prefetch_keys=("renalFunction",),
)
DECISION = DecisionFacts(
    card_uuid=CARD["uuid"],
    outcome="overridden",
    decided_at=WHEN,
    reason={
        "system": "http://terminology.hl7.org/CodeSystem/non-adherence-reason-codes",
        "code": "patient-ineligible",
    },
    comment="Chronic baseline, not acute.",
)
CHANGE = ModelChangeFacts(
    model_label="Countersign Medication Safety 1.0.0",
    device_ref="Device/medication-safety-1.0.0",
    service_ref="Device/countersign-governance",
    previous_status="active",
    status="paused",
    approver="Practitioner/cmio-1",
    role="cmio",
    reason="Review",
    changed_at=WHEN,
)
AI_ROLE = {
    "system": "http://hl7.org/fhir/uv/aitransparency/CodeSystem/AIdeviceTypeCS",
    "code": "Artificial-Intelligence",
}


def local_profile_examples() -> list[dict]:
    """One resource per local profile, made by the project's own builders."""
    return [
        hook_call_audit_event(FACTS, "GuidanceResponse/g"),
        service_read_audit_event(FACTS, "renalFunction"),
        write_back_audit_event("p1", "Provenance/x", FACTS.user_id, WHEN, FACTS.service_ref),
        override_task(FACTS, DECISION, "RequestGroup/r"),
        change_control_audit_event(CHANGE),
        user_authentication_audit_event(
            Authentication(
                action="login",
                occurred_at=WHEN,
                app_ref="Device/app",
                user_ref="Practitioner/cmio-1",
                role="cmio",
                ehr="https://ehr.example/fhir",
                session="0123456789ab",
            )
        ),
    ]


def test_every_local_profile_we_claim_has_a_structure_definition():
    definitions = structure_definitions()
    built = local_profile_examples()
    for resource in built:
        (profile,) = resource["meta"]["profile"]
        assert profile in definitions
        assert definitions[profile]["type"] == resource["resourceType"]


def test_request_group_maps_cards_per_the_clinical_reasoning_ig():
    group = request_group(FACTS)
    assert group["intent"] == "proposal" and group["priority"] == "stat"
    assert group["identifier"] == [{"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{FACTS.key}"}]
    (action,) = group["action"]
    assert action["id"] == CARD["uuid"] and action["title"] == CARD["summary"]
    assert action["extension"] == [
        {
            "url": "http://hl7.org/fhir/uv/aitransparency/StructureDefinition/AIconfidence",
            "valueDecimal": 0.91,
        }
    ]
    steps = action["action"][0]["action"]
    assert [s["type"]["coding"][0]["code"] for s in steps] == ["update", "remove"]
    assert steps[1]["resource"] == {"reference": "MedicationRequest/m2"}
    assert all("meta" not in contained for contained in group["contained"])
    assert group["meta"]["security"][0]["code"] == "AIAST"


def test_guidance_response_names_the_hook_call():
    guidance = guidance_response(FACTS, "RequestGroup/r")
    assert guidance["requestIdentifier"]["value"] == f"urn:uuid:{FACTS.hook_instance}"
    assert guidance["performer"] == {"reference": FACTS.device_ref}
    assert guidance["result"] == {"reference": "RequestGroup/r"}


def test_ai_output_provenance_has_the_ai_author_and_the_inputs_as_sources():
    provenance = ai_output_provenance(FACTS, "RequestGroup/r", "GuidanceResponse/g")
    (author,) = provenance["agent"]
    assert author["type"]["coding"][0]["code"] == "author" and author["role"][0]["coding"][0] == AI_ROLE
    assert {e["what"]["reference"] for e in provenance["entity"]} == {"Patient/p1", *FACTS.input_refs}
    assert {r["coding"][0]["code"] for r in provenance["reason"]} == {"AIAST", "TREAT"}


def test_acceptance_provenance_has_clinician_verifier_and_ai_author():
    accepted = DecisionFacts(
        CARD["uuid"], "accepted", WHEN, accepted_suggestions=(CARD["suggestions"][0]["uuid"],)
    )
    provenance = acceptance_provenance(
        FACTS, accepted, "MedicationRequest/m1/_history/2", "update", "RequestGroup/r"
    )
    types = [a["type"]["coding"][0]["code"] for a in provenance["agent"]]
    assert types == ["verifier", "author"]
    assert provenance["activity"]["coding"][0]["code"] == "UPDATE"
    assert {"role": "derivation", "what": {"reference": "RequestGroup/r"}} in provenance["entity"]


def test_override_is_a_rejected_approve_task_with_its_reason_and_provenance():
    task = override_task(FACTS, DECISION, "RequestGroup/r")
    assert (task["status"], task["intent"], task["code"]["coding"][0]["code"]) == (
        "rejected",
        "proposal",
        "approve",
    )
    assert task["statusReason"]["coding"][0]["code"] == "patient-ineligible"
    assert task["note"][0]["text"] == "Chronic baseline, not acute."
    provenance = override_provenance(FACTS, DECISION, "Task/t", "RequestGroup/r")
    assert provenance["agent"][0]["type"]["coding"][0]["code"] == "author"
    assert provenance["reason"][0]["coding"][0]["code"] == "patient-ineligible"


def test_audit_events_carry_references_and_ids_only():
    event = hook_call_audit_event(FACTS, "GuidanceResponse/g")
    assert (event["type"]["code"], event["action"]) == ("110112", "E")
    query = json.loads(base64.b64decode(next(e["query"] for e in event["entity"] if "query" in e)))
    assert query == {"hook": "order-sign", "hookInstance": FACTS.hook_instance, "patientId": "p1"}
    text = json.dumps([event, service_read_audit_event(FACTS, "renalFunction")])
    assert "metformin" not in text.lower() and "Rationale" not in text
    assert {"reference": "Patient/p1"} in [e.get("what") for e in event["entity"]]


def test_ai_device_type_is_fixed_without_display():
    device = ai_device(
        "medication-safety-1.0.0", "Countersign Medication Safety", "1.0.0", "http://localhost/m"
    )
    assert device["type"]["coding"] == [AI_ROLE]
    assert device["meta"]["profile"] == [
        "http://hl7.org/fhir/uv/aitransparency/StructureDefinition/AI-Device"
    ]


def test_safety_report_names_the_ai_device_as_suspect():
    report = SafetyReport(
        patient_id="p1",
        device_ref=FACTS.device_ref,
        description="Sub-therapeutic anticoagulation",
        category="wrong-dose",
        severity="moderate",
        occurred_at=WHEN,
        detected_at=WHEN,
        recorded_at=WHEN,
        recorder_ref="Practitioner/prac-002",
    )
    event = adverse_event(report)
    assert event["suspectEntity"][0]["instance"] == {"reference": FACTS.device_ref}
    assert event["actuality"] == "actual" and event["detected"] == "2026-11-23T10:05:31Z"
